import type { Hook } from '@oclif/core';

/** An unknown command is a usage error: one line, exit 2, and the commands there are. */
const hook: Hook<'command_not_found'> = async function (opts) {
  const commands = opts.config.commandIDs.filter((c) => !c.includes(':')).sort();
  process.stderr.write(`lcsync: unknown command "${opts.id}" (commands: ${commands.join(', ')}; see 'lcsync --help')\n`);
  process.exit(2);
};

export default hook;
