import { Flags } from '@oclif/core';
import { LcsyncCommand } from '../cli/base.js';

export default class KeygenCommand extends LcsyncCommand {
  static override description = `Make an Ed25519 key pair for signed roots.

Writes the private key to BASE (PKCS#8 PEM, mode 0600) and the public key to BASE.pub (one line, "lcsync-ed25519 <base64>"). Serve with "lcsync share --sign BASE"; receivers pass BASE.pub to "lcsync sync --trust". If BASE is an existing directory or ends with "/", the files are DIR/lcsync-key and DIR/lcsync-key.pub; a directory given with "/" is created (mode 0700) when missing, any other missing directory is an error (exit 6). Existing files are never replaced without --force.`;

  static override examples = [
    '<%= config.bin %> keygen',
    '<%= config.bin %> keygen --output /etc/lcsync/signing-key',
    '<%= config.bin %> keygen --json --output ~/.config/lcsync/',
  ];

  static override flags = {
    output: Flags.string({ char: 'f', description: 'Base path of the key files (private key; the public key gets ".pub"), or a directory ending in "/".', default: './lcsync-key' }),
    force: Flags.boolean({ description: 'Overwrite existing key files.', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(KeygenCommand);
    const log = this.setupOutput(flags);
    const { generateKeyPair } = await import('../core/wire/signature.js');
    const kp = await generateKeyPair(flags.output, { force: flags.force });
    if (this.jsonOutput) {
      this.printJson({ ok: true, privateKey: kp.privatePath, publicKey: kp.publicPath, public: kp.publicLine });
      return;
    }
    process.stdout.write(`${kp.publicLine}\n`);
    log.info(`private key: ${kp.privatePath} (keep it secret)`);
    log.info(`public key:  ${kp.publicPath}`);
  }
}
