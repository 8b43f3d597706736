import { Args, Flags } from '@oclif/core';
import { LcsyncCommand } from '../cli/base.js';
import { chooseInterfaces } from '../cli/interfaces.js';
import { chooseCipher, keyFlags } from '../cli/keys.js';

export default class ShareCommand extends LcsyncCommand {
  static override description = `Serve files and directories to lcsync receivers over IPv6 multicast.

Indexes each PATH, prints its root hash and share name, then serves until SIGINT or SIGTERM. An object is sent only while MLD shows that some host has joined its group, RaptorQ-coded so receivers recover from loss without asking again. Needs CAP_NET_RAW (root) to watch MLD.

The share follows its files: when they change, appear or vanish (file-system events, a rescan every --rescan seconds, or SIGHUP) it re-indexes, hashing only files whose size, mtime or inode changed, serves the new index and prints the new root hash lines (with --json, one JSON line {"event":"reindex",...} per change). A chunk whose file changed is never sent under its old hash. Trees of hashed files are kept in an on-disk cache, so a restarted share does not hash unchanged files again. A status socket in the run directory answers \`lcsync status\`.`;

  static override examples = [
    '<%= config.bin %> share /srv/mirror',
    '<%= config.bin %> share -i eth1 --bwlimit 500M /srv/images /srv/iso',
    '<%= config.bin %> share --json /srv/mirror',
    '<%= config.bin %> share --no-follow --rescan 0 /srv/mirror   # re-index only on SIGHUP',
  ];

  static override strict = false;
  static override args = {
    path: Args.string({ description: 'file or directory to share (several may be given)', required: true }),
  };

  static override flags = {
    interface: Flags.string({ char: 'i', description: 'Interface to serve on (repeat or comma-separate for several). Default: every multicast-capable interface with an IPv6 address, except loopback.', multiple: true, multipleNonGreedy: true }),
    loopback: Flags.boolean({ description: 'Also deliver to receivers on this host (multicast loopback).', default: false }),
    bwlimit: Flags.string({ description: 'Total send rate in bits per second, with K, M, G suffixes (x1000); 0 means unlimited.', default: '200M' }),
    querier: Flags.boolean({ description: 'Act as MLD querier when no better querier is on the link (--no-querier: rely on the routers\' queries and our own timers).', default: true, allowNo: true }),
    'query-interval': Flags.integer({ description: 'Seconds between MLD general queries while we are querier.', default: 20, min: 1, max: 3600 }),
    follow: Flags.boolean({ description: 'Watch the shared files (file-system events) and serve a new index when they change, appear or vanish; prints the new root hash. --no-follow: only rescans and SIGHUP re-index.', default: true, allowNo: true }),
    rescan: Flags.integer({ description: 'Seconds between full rescans for changes the file-system events miss (network file systems); 0 turns rescans off. SIGHUP always re-indexes at once.', default: 60, min: 0, max: 86400 }),
    cache: Flags.string({ description: 'Directory of the tree cache, which lets a restarted share skip re-hashing unchanged files. Default: /var/cache/lcsync as root, else $XDG_CACHE_HOME/lcsync or ~/.cache/lcsync.' }),
    'no-cache': Flags.boolean({ description: 'Neither read nor write the on-disk tree cache.', default: false }),
    ...keyFlags,
    sign: Flags.string({ description: 'Publish, next to each root, a signature made with this private key (from `lcsync keygen`), so that `lcsync sync --trust PUBKEY` can check who published the root.' }),
    rundir: Flags.string({ description: 'Directory of the status socket that `lcsync status` reads. Default: $LCSYNC_RUNDIR, else /run/lcsync as root, else $XDG_RUNTIME_DIR/lcsync, else /tmp/lcsync-UID.' }),
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(ShareCommand);
    const log = this.setupOutput(flags);
    const paths = argv as string[];
    const { parseRate } = await import('../core/pacer.js');
    const rateBps = parseRate(flags.bwlimit);
    const ifnames = await chooseInterfaces(flags.interface);
    const { ShareIndex } = await import('../core/mdex.js');
    const { Share } = await import('../core/share.js');
    const { HashPool } = await import('../core/hashpool.js');
    const { TreeStore, defaultCacheDir } = await import('../core/cache.js');
    const { Follower, rootLines } = await import('../core/follow.js');
    const { resolveRunDir, serveStatus } = await import('../core/ipc.js');

    const cipher = await chooseCipher(flags, log);
    let sign: ((index: InstanceType<typeof ShareIndex>) => void) | undefined;
    if (flags.sign) {
      const sig = await import('../core/signature.js');
      const privateKey = await sig.loadPrivateKey(flags.sign);
      sign = (index) => {
        for (const r of index.roots) {
          const bytes = sig.encodeSignature({ root: r.hash, name: r.shareName, timestamp: Date.now(), privateKey });
          index.publish(sig.signatureKey(r.hash), bytes, `${r.shareName} (signature)`);
        }
      };
    }
    const store = openStore(TreeStore, flags['no-cache'] ? undefined : (flags.cache ?? defaultCacheDir()), log);
    // The pool stays up while sharing: re-indexing a changed big file uses it again.
    const pool = new HashPool();
    let rehashed = 0;
    let flushing: Promise<void> = Promise.resolve();
    const build = async (verbose: boolean) => {
      const misses = store.stats.misses;
      const index = await ShareIndex.build(paths, {
        onWarning: (m) => log.warn(m),
        onRecord: verbose ? (r) => log.verbose(`indexed ${r.sharePath}`) : undefined,
        treeCache: store,
        leafHasher: pool,
      });
      sign?.(index);
      store.sweep();
      rehashed = store.stats.misses - misses;
      // Entries reach the disk in the background: serving starts without waiting for them.
      flushing = flushing.then(() => store.flush()).catch(() => undefined);
      return index;
    };
    let index;
    try {
      index = await build(true);
    } catch (e) {
      await pool.close();
      throw e;
    }
    flushing = flushing.then(() => store.prune()).then(() => undefined, () => undefined);
    const roots = rootLines(index);
    if (this.jsonOutput) this.printJson({ ok: true, roots, interfaces: ifnames, objects: index.objectCount });
    else for (const r of roots) process.stdout.write(`${r.hash}  ${r.shareName}\n`);
    log.verbose(`hashed ${rehashed} files, ${store.stats.hits} from the tree cache${store.treesDir ? ` (${store.treesDir})` : ''}`);
    let share;
    try {
      share = await Share.start(index, {
        ifnames,
        loopback: flags.loopback,
        rateBps,
        querier: flags.querier,
        queryIntervalSec: flags['query-interval'],
        logger: log,
        cipher,
      });
    } catch (e) {
      await pool.close();
      throw e;
    }
    const follower = await Follower.start(share, {
      paths,
      build: () => build(false),
      events: flags.follow,
      rescanSec: flags.rescan,
      forget: (p) => store.forget(p),
      onWarning: (m) => log.warn(m),
      onVerbose: (m) => log.verbose(m),
      onReindex: (ev) => {
        log.verbose(`re-indexed (${ev.reason}) in ${ev.seconds.toFixed(2)} s: ${rehashed} files hashed, ${ev.objects} objects${ev.changed ? '' : ', nothing changed'}`);
        if (!ev.changed) return;
        if (this.jsonOutput) process.stdout.write(JSON.stringify({ event: 'reindex', ...ev, rehashed }) + '\n');
        else {
          for (const r of ev.roots) process.stdout.write(`${r.hash}  ${r.shareName}\n`);
          log.info(`serving a new index (${ev.reason}): ${rehashed} files re-hashed, ${ev.objects} objects`);
        }
      },
    });
    const rundir = resolveRunDir(flags.rundir);
    const ipc = await serveStatus(rundir.dir, () => ({
      ...share.status(),
      follow: { events: flags.follow, rescanSec: flags.rescan, reindexes: follower.reindexes, last: follower.last },
      cache: { dir: store.treesDir ?? null, ...store.stats },
    })).catch((e: Error) => {
      log.warn(`no status socket, \`lcsync status\` will not list this share: ${e.message}`);
      return undefined;
    });
    const onHup = () => follower.trigger('signal', 0);
    process.on('SIGHUP', onHup);
    log.info(`sharing ${index.records.length} entries (${index.objectCount} objects) on ${ifnames.join(', ')}; stop with Ctrl-C`);
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    log.verbose(`${signal}: stopping`);
    process.off('SIGHUP', onHup);
    await follower.close();
    await ipc?.close();
    const st = share.status();
    await share.stop();
    await pool.close();
    await flushing;
    log.info(`stopped: sent ${st.datagrams} datagrams, ${st.bytes} bytes in ${st.uptimeSec.toFixed(1)} s`);
  }
}

/** The tree cache at `dir`, or in memory only when disabled or unusable (a share must not fail for want of a cache). */
function openStore<T>(Store: new (o: { dir?: string; onWarning?: (m: string) => void }) => T, dir: string | undefined, log: { warn(m: string): void }): T {
  if (dir === undefined) return new Store({});
  try {
    return new Store({ dir, onWarning: (m) => log.warn(m) });
  } catch (e) {
    log.warn(`${(e as Error).message}; hashing every file at start`);
    return new Store({});
  }
}
