import type { Hook } from '@oclif/core';
import { unknownCommandMessage } from '../cli/suggest.js';

/** An unknown command is a usage error: one line, exit 2, a suggestion when one is close, and the commands there are. */
const hook: Hook<'command_not_found'> = async function (opts) {
  // With topicSeparator ' ', oclif joins the words it could not place into one id with ':'
  // ("idnex /tmp" arrives as "idnex:/tmp"): only the first word is the command typed.
  const typed = opts.id.split(':')[0] ?? opts.id;
  process.stderr.write(`lcsync: ${unknownCommandMessage(typed, opts.config.commandIDs)}\n`);
  process.exit(2);
};

export default hook;
