import { Args, Command, loadHelpClass } from '@oclif/core';

/**
 * `lcsync help [COMMAND]`: the same text as `lcsync [COMMAND] --help`, rendered by the help class
 * (src/cli/help.ts) from the manifest, so no other command module loads and it starts as fast.
 */
export default class HelpCommand extends Command {
  static override description = `Show help for lcsync or one of its commands.

The same text as "lcsync COMMAND --help"; without COMMAND, the list of commands.`;

  static override examples = ['<%= config.bin %> help', '<%= config.bin %> help sync'];

  static override strict = false;
  static override args = {
    command: Args.string({ description: 'command to explain', required: false }),
  };

  async run(): Promise<void> {
    const { argv } = await this.parse(HelpCommand);
    const Help = await loadHelpClass(this.config);
    await new Help(this.config, this.config.pjson.oclif.helpOptions).showHelp(argv as string[]);
  }
}
