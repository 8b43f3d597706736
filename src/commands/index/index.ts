import { stat } from 'node:fs/promises';
import { Args, Flags } from '@oclif/core';
import { LcsyncCommand } from '../../cli/base.js';
import { LcsyncError } from '../../core/base/errors.js';

export default class IndexCommand extends LcsyncCommand {
  static override description = `Hash a file or directory the way a share will, without serving it.

Prints the entry hash of PATH and its share name: for a directory this is the root hash that \`lcsync sync\` takes, the same for any copy of the directory under another name. Directories are always indexed recursively; sockets, fifos and device files are skipped with a warning, as a share skips them.

--hex prints what \`lcsync --hex\` of the C lcsync prints: for a file every node of its Merkle tree as \`index: hex\`, root first (heap order); for a directory one line with its root hash. For an empty file it prints the one-node tree of zeros (\`00000000: 000...0\`), where the C tool refuses.

--json prints one document: the root (hash, share name, type, path) and every entry with its share path, type, size (bytes for files; object bytes for directories and symlinks), mode (octal), uid, gid, mtime ("seconds.nanoseconds"), entry hash, content root (files with data, else null) and chunk count.

Names are bytes and need not be UTF-8: they are hashed as they are, printed with \\xHH for each byte that is not UTF-8, and in JSON hold U+FFFD there plus a field of the same name ending in Base64 (sharePathBase64, targetBase64, ...) with the exact bytes.`;

  static override examples = [
    '<%= config.bin %> index /srv/mirror',
    '<%= config.bin %> index --hex disk.img',
    '<%= config.bin %> index --json /srv/mirror > index.json',
  ];

  static override args = {
    path: Args.string({ description: 'file or directory to index', required: true }),
  };

  static override flags = {
    hex: Flags.boolean({ description: 'Print tree nodes (file) or the root hash (directory) as the C lcsync --hex does.', default: false }),
    recursive: Flags.boolean({ char: 'r', description: 'Accepted for compatibility; directories are always indexed recursively.', default: false }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(IndexCommand);
    // Checked here rather than with oclif's `exclusive`, whose message is several lines long.
    if (flags.hex && flags.json) throw new LcsyncError('USAGE', '--hex and --json cannot be used together');
    const log = this.setupOutput(flags);
    // Core modules load lazily: start-up time matters when this runs from cron.
    const { HashPool } = await import('../../core/index/hashpool.js');
    const pool = new HashPool();
    // Workers take tens of ms to start: start them while the rest loads when the
    // path is a large file. In a directory the pool starts at the first large file
    // (this thread hashes until a worker is ready), so a tree of small files never
    // pays for workers it does not use. A missing path is reported by the index below.
    const st = await stat(args.path).catch(() => undefined);
    if (st?.isFile() && st.size >= pool.threshold) pool.warm();
    const { ShareIndex } = await import('../../core/index/mdex.js');
    const { toHex } = await import('../../core/model/hash.js');
    const { displayName } = await import('../../core/base/names.js');
    let index;
    try {
      index = await ShareIndex.build([args.path], {
        onWarning: (m) => log.warn(m),
        onRecord: (r) => log.verbose(`indexed ${r.sharePath}`),
        leafHasher: pool,
      });
    } finally {
      await pool.close();
    }
    const root = index.roots[0]!;
    const top = index.records[index.records.length - 1]!;

    if (flags.hex) {
      if (top.type === 'file') process.stdout.write(top.tree!.hexDump());
      else process.stdout.write(`${toHex(root.hash)}\n`);
      return;
    }
    if (this.jsonOutput) {
      this.printJson({
        root: { hash: toHex(root.hash), shareName: root.shareName, type: root.type, path: root.localPath },
        // The walk records children before their directory; list entries top-down instead.
        entries: [...index.records]
          .sort((a, b) => (a.sharePath < b.sharePath ? -1 : a.sharePath > b.sharePath ? 1 : 0))
          .map((r) => ({
            sharePath: r.sharePath,
            type: r.type,
            size: r.size,
            mode: r.meta.mode.toString(8).padStart(6, '0'),
            uid: r.meta.uid,
            gid: r.meta.gid,
            mtime: `${r.meta.mtimeSec}.${String(r.meta.mtimeNsec).padStart(9, '0')}`,
            hash: toHex(r.hash),
            root: r.type === 'file' && r.size > 0 ? toHex(r.tree!.root) : null,
            chunks: r.type === 'file' ? (r.size > 0 ? r.tree!.chunks : 0) : null,
            ...(r.type === 'symlink' ? { target: r.target } : {}),
          })),
      });
      return;
    }
    process.stdout.write(`${toHex(root.hash)}  ${displayName(root.shareName)}\n`);
  }
}
