/**
 * oclif's help, with lcsync's answer to an unknown command: `lcsync idnex --help` and
 * `lcsync help idnex` print the same one line (with its suggestion) and exit 2 as `lcsync idnex`,
 * where oclif's own help class would say "Command idnex not found" in its own format.
 */
import { Help } from '@oclif/core';
import { unknownCommandMessage } from './suggest.js';

export default class LcsyncHelp extends Help {
  override async showHelp(argv: string[]): Promise<void> {
    // No topics: the first word that is not a flag is the command; later words are its arguments.
    const first = argv.find((w) => !w.startsWith('-'));
    if (first !== undefined && !this.config.findCommand(first)) {
      process.stderr.write(`lcsync: ${unknownCommandMessage(first, this.config.commandIDs)}\n`);
      process.exit(2);
    }
    // oclif's subject finder skips the word "help", so `lcsync help help` would print the root help.
    const help = first === 'help' ? this.config.findCommand('help') : undefined;
    if (help) return this.showCommandHelp(help);
    await super.showHelp(first === undefined ? argv : [first, ...argv.filter((w) => w.startsWith('-'))]);
  }
}
