import { Args, Flags } from '@oclif/core';
import { LcsyncCommand } from '../cli/base.js';
import { displayName } from '../core/base/names.js';
import { chooseInterfaces } from '../cli/interfaces.js';
import { Progress } from '../cli/progress.js';
import { chooseCipher, keyFlags } from '../cli/keys.js';
import { count } from '../cli/plural.js';
import { LcsyncError } from '../core/base/errors.js';
import type { SyncOptions } from '../core/sync/types.js';
import type { Logger } from '../cli/logger.js';

export default class SyncCommand extends LcsyncCommand {
  static override description = `Fetch a shared file or directory over IPv6 multicast into DEST.

SOURCE is the 64-hex-digit root hash a share printed, or a share name ("music", "music/", "music/a/b.ogg"). A SOURCE of 16 or more hex digits but not 64 is refused as a mis-copied hash; a share whose name is such a run of hex digits is named with the prefix "name:" ("name:0123456789abcdef"). As with rsync, "music" syncs into DEST/music and "music/" syncs the contents into DEST; a hash syncs a directory's contents into DEST. Only chunks that differ from the local copy travel; every chunk is verified before it is written (chunks copied from the local file too), and files are replaced atomically. A share name is not a hash: when two roots answer for one name the sync stops with exit 4 naming both (--expect-root pins one, --trust takes the signed one).

An empty directory, file or symlink where the source has another type is replaced; a non-empty directory where the source has a file or symlink is left alone and reported, and the run exits 7 after syncing everything else. If the source changes during the sync (the share re-indexed), it stops with exit 8, or with a share name moves on to the new version.

With --follow it keeps running as a live mirror: each new root the share announces for the name is synced as soon as the share re-indexes, until SIGINT or SIGTERM (exit 0).

Two runs into one DEST at once both succeed (no lock): each renames complete files into place. Names are bytes: names that are not UTF-8 are created byte for byte, printed with \\xHH for each such byte, and in JSON carry a field ending in Base64 with the exact bytes.`;

  static override examples = [
    '<%= config.bin %> sync -a music/ /srv/music',
    '<%= config.bin %> sync -i eth1 --timeout 30 e22fa1910ac46d055cb69f71cba59ef99c23d5d80e765cf6b73cec8fd7b785f1 /srv/mirror',
    '<%= config.bin %> sync -n -v -a music/ /srv/music   # dry run: list what would change',
    '<%= config.bin %> sync --follow -a --delete -i eth1 music/ /srv/music   # live mirror until SIGTERM',
  ];

  static override args = {
    source: Args.string({ description: 'root hash (64 hex digits), or share name ("name:" prefix for a name made of hex digits)', required: true }),
    dest: Args.string({ description: 'destination file or directory', required: true }),
  };

  static override flags = {
    interface: Flags.string({ char: 'i', description: 'Interface to receive on (repeat or comma-separate). Default: every multicast-capable interface with an IPv6 address, except loopback; lo reaches a share on this host once it has a multicast route (ip -6 route add local ff00::/8 dev lo).', multiple: true, multipleNonGreedy: true }),
    archive: Flags.boolean({ char: 'a', description: 'Archive mode: same as -rpogt.', default: false }),
    recursive: Flags.boolean({ char: 'r', description: 'Recurse into directories.', default: false }),
    perms: Flags.boolean({ char: 'p', description: 'Set permissions from the source.', default: false }),
    owner: Flags.boolean({ char: 'o', description: 'Set owner from the source (needs root).', default: false }),
    group: Flags.boolean({ char: 'g', description: 'Set group from the source.', default: false }),
    times: Flags.boolean({ char: 't', description: 'Set modification and access times from the source (nanoseconds).', default: false }),
    timeout: Flags.integer({ description: 'Give up with exit status 3 when no sender answers for this many seconds (default: wait forever).', min: 1 }),
    'dry-run': Flags.boolean({ char: 'n', description: 'Fetch only metadata and list what would change; write nothing.', default: false }),
    inplace: Flags.boolean({ description: 'Write changed chunks straight into the destination file instead of a temporary copy renamed over it (not atomic).', default: false }),
    ...keyFlags,
    trust: Flags.string({
      description:
        'Refuse a root that is not signed by this public key (a file written by `lcsync keygen`, or the `lcsync-ed25519 ...` line itself); the share must run with --sign. Also checks the signed manifest (symlink targets, the top directory\'s mode, owner and times) before anything is written, picks the signed root when two answer for one name, and works for a path inside a share.',
    }),
    'expect-root': Flags.string({ description: 'With a share name: accept only this root (64 hex digits); other roots answering for the name are refused.' }),
    parallel: Flags.integer({ description: 'Chunk groups joined at once.', default: 128, min: 1, max: 512 }),
    bundles: Flags.boolean({ description: 'Take directories\' bundles from a share that publishes them (default; an lcsync extension: a directory of small files in one round trip, every entry checked against the directory\'s hash). --no-bundles: fetch exactly as the C client does.', default: true, allowNo: true }),
    checksum: Flags.boolean({ char: 'c', description: 'Hash every local file to compare it, trusting no cached tree (as rsync -c).', default: false }),
    cache: Flags.string({ description: 'Directory of the local tree cache, which lets a re-sync skip hashing local files whose size, mtime, ctime, inode and device are unchanged. Default: /var/cache/lcsync as root, else $XDG_CACHE_HOME/lcsync or ~/.cache/lcsync.' }),
    'no-cache': Flags.boolean({ description: 'Neither read nor write the local tree cache (every local file is hashed).', default: false }),
    include: Flags.string({ description: 'With -r: do not exclude paths matching PATTERN (rsync\'s rules: the first --include/--exclude that matches decides, in command-line order; repeatable).', multiple: true, multipleNonGreedy: true, helpValue: 'PATTERN' }),
    exclude: Flags.string({
      description:
        'With -r: skip paths matching PATTERN, as rsync: a leading / anchors to the transfer root, a trailing / matches only directories, * stops at /, ** does not, ? and [...] as in sh; an excluded directory is not descended into. An excluded file\'s groups are never joined (only its first tree part, which names it, when the share has no bundles). Repeatable.',
      multiple: true,
      multipleNonGreedy: true,
      helpValue: 'PATTERN',
    }),
    delete: Flags.boolean({ description: 'With -r: remove destination entries the source does not have, after everything else is in place (excluded paths are kept, as rsync without --delete-excluded).', default: false }),
    exec: Flags.string({
      description:
        'After a sync that changed something, run CMD with sh -c in DEST (when a directory), the changed and deleted paths relative to DEST on its standard input, one a line. Its exit status is logged; a failing hook changes neither the mirror nor lcsync\'s exit status.',
      helpValue: 'CMD',
    }),
    null: Flags.boolean({ description: 'With --exec: end each path with a NUL byte instead of a newline (also -0, as rsync and xargs).', default: false }),
    follow: Flags.boolean({
      description:
        'Live mirror: after the first sync keep running, take each new root the share announces for the name as soon as it re-indexes, and sync the difference (atomically per file; with -r --delete what left the source goes), until SIGINT or SIGTERM (exit 0). SOURCE must be a share name. A failed sync (no share, a restart, the network down) is retried with backoff up to 60 s; --timeout bounds each attempt (default 30 s) and never ends the mirror. One log line per sync: root, entries changed, bytes, seconds. --exec runs after each sync that changed something.',
      default: false,
    }),
  };

  override async init(): Promise<void> {
    await super.init();
    // oclif takes only letters as short flags: -0 is spelled out before it parses.
    const end = this.argv.indexOf('--');
    this.argv = this.argv.map((a, i) => (a === '-0' && (end < 0 || i < end) ? '--null' : a));
  }

  async run(): Promise<void> {
    const { args, flags } = await this.parse(SyncCommand);
    const log = this.setupOutput(flags);
    // Checked before anything touches the network.
    let expectRoot: Uint8Array | undefined;
    if (flags['expect-root'] !== undefined) {
      const { parseHex } = await import('../core/model/hash.js');
      expectRoot = parseHex(flags['expect-root']);
      if (!expectRoot) throw new LcsyncError('USAGE', `--expect-root must be a root hash of 64 hex digits, got "${flags['expect-root']}"`);
    }
    const { PathFilter, rulesFromArgv } = await import('../core/sync/filter.js');
    const filter = rulesFromArgv(this.argv);
    new PathFilter(filter); // a pattern that cannot be a rule is refused before the network is touched
    const recursive = flags.archive || flags.recursive;
    if (!recursive && (filter.length > 0 || flags.delete)) throw new LcsyncError('USAGE', `${filter.length > 0 ? '--include/--exclude' : '--delete'} needs -r or -a`);
    if (flags.null && flags.exec === undefined) throw new LcsyncError('USAGE', '-0/--null needs --exec');
    if (flags.follow) {
      const { parseSource } = await import('../core/sync/source.js');
      if (parseSource(args.source).name === undefined) throw new LcsyncError('USAGE', `--follow needs a share name, not a root hash (a hash names one version, which never changes)`);
      if (flags['dry-run'] || expectRoot) throw new LcsyncError('USAGE', `--follow cannot be combined with ${flags['dry-run'] ? '--dry-run' : '--expect-root'}`);
    }
    const ifnames = await chooseInterfaces(flags.interface);
    const cipher = await chooseCipher(flags, log, 'sync');
    let trust: Uint8Array | undefined;
    if (flags.trust) {
      const sig = await import('../core/wire/signature.js');
      trust = flags.trust.startsWith('lcsync-ed25519 ') ? sig.parsePublicKey(flags.trust, '--trust') : await sig.loadPublicKey(flags.trust);
    }
    const { syncRemote } = await import('../core/sync/sync.js');
    const { defaultCacheDir } = await import('../core/index/cache.js');
    const a = flags.archive;
    const progress = new Progress({ enabled: Progress.wanted(flags) && !flags.follow });
    const ctl = new AbortController();
    const onSignal = () => ctl.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    await progress.start(`waiting for ${displayName(args.source)}`);
    try {
      const options: SyncOptions = {
        ifnames,
        flags: {
          recursive: a || flags.recursive,
          perms: a || flags.perms,
          owner: a || flags.owner,
          group: a || flags.group,
          times: a || flags.times,
        },
        timeoutSec: flags.timeout,
        cipher,
        trust,
        expectRoot,
        onBug: (e) => log.verbose(`bug: a check of a received object threw ${e.stack ?? String(e)}`, { event: 'bug' }),
        dryRun: flags['dry-run'],
        inplace: flags.inplace,
        parallel: flags.parallel,
        bundles: flags.bundles,
        cacheDir: flags['no-cache'] ? undefined : (flags.cache ?? defaultCacheDir()),
        checksum: flags.checksum,
        filter,
        delete: flags.delete,
        exec: flags.exec,
        execNul: flags.null,
        onHook: (h) => {
          const how = h.error ? `could not run: ${h.error}` : h.signal ? `was killed by ${h.signal}` : `exited with status ${h.exitCode}`;
          const line = `--exec hook ${how} (${count(h.paths, 'changed path')})`;
          if (h.exitCode === 0) log.info(line, { event: 'hook', ...h });
          else log.warn(`${line}; the mirror is complete`, { event: 'hook', ...h });
        },
        onWarning: (message) => progress.pause(() => log.warn(message)),
        signal: ctl.signal,
        onProgress: (p) => progress.update(p),
        onSourceChanged: () => progress.pause(() => log.info(`source changed during sync; syncing the new version of ${args.source}`, { event: 'source-changed' })),
        onConflict: (c) => progress.pause(() => log.error(c.message, { event: 'conflict', ...c })),
        onItem: (it) => {
          if (it.type === 'file' || it.change !== 'unchanged') {
            const detail = it.type === 'file' && (it.change === 'created' || it.change === 'updated') ? ` (${count(it.chunksFetched ?? 0, 'chunk')} fetched, ${it.chunksReused ?? 0} reused)` : '';
            progress.pause(() => log.verbose(`${flags['dry-run'] ? 'would be ' : ''}${it.change} ${it.type} ${it.path}${detail}`, { event: 'item', ...it }));
          }
        },
      };
      if (flags.follow) {
        await this.follow(args.source, args.dest, options, log, ctl.signal);
        return;
      }
      const summary = await syncRemote(args.source, args.dest, options);
      progress.stop();
      const n = summary.conflicts.length;
      // Everything else is done; the conflicts (each already on its own line) make the run partial.
      const partial = n > 0 ? new LcsyncError('PARTIAL', `sync incomplete: ${n} ${n === 1 ? 'path was' : 'paths were'} left as they are (conflicts above)`) : undefined;
      if (this.jsonOutput) {
        this.printJson(partial ? { ok: false, ...summary, error: { code: partial.code, exitCode: partial.exitCode, message: partial.message } } : { ok: true, ...summary });
      } else {
        const mb = (n: number) => (n / 1e6).toFixed(2);
        log.info(
          `${summary.dryRun ? 'dry run: ' : ''}${summary.dest}: ${summary.files.created} created, ${summary.files.updated} updated, ${summary.files.metadata} metadata only, ${summary.files.unchanged} unchanged${flags.delete ? `, ${summary.deleted} deleted` : ''}`,
        );
        log.info(
          `received ${mb(summary.bytesReceived)} MB, wrote ${mb(summary.bytesWritten)} MB, ${count(summary.chunksFetched, 'chunk')} fetched, ${summary.chunksReused} reused, ${summary.seconds.toFixed(2)} s, ${mb(summary.rate)} MB/s`,
        );
      }
      if (partial) {
        log.error(partial.message);
        this.exit(partial.exitCode);
      }
    } finally {
      progress.stop();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }

  /** --follow: sync, then keep DEST current until a signal; one log line per sync, exit 0 when stopped. */
  private async follow(source: string, dest: string, options: SyncOptions, log: Logger, signal: AbortSignal): Promise<void> {
    const { followRemote } = await import('../core/sync/live.js');
    const mb = (n: number) => (n / 1e6).toFixed(2);
    log.info(`following ${displayName(source)} into ${displayName(dest)} (SIGTERM or SIGINT stops)`, { event: 'follow' });
    const result = await followRemote(source, dest, options, {
      onCycle: (c) => {
        const s = c.summary;
        const conflicts = s.conflicts.length > 0 ? `, ${count(s.conflicts.length, 'conflict')} left alone` : '';
        log.info(`sync ${c.cycle} (${c.reason}): root ${s.rootHash}, ${count(c.changed, 'entry', 'entries')} changed (${s.files.created} created, ${s.files.updated} updated, ${s.deleted} deleted), received ${mb(s.bytesReceived)} MB, wrote ${mb(s.bytesWritten)} MB, ${s.seconds.toFixed(2)} s${conflicts}`, {
          event: 'cycle',
          cycle: c.cycle,
          reason: c.reason,
          rootHash: s.rootHash,
          changed: c.changed,
          files: s.files,
          deleted: s.deleted,
          bytesReceived: s.bytesReceived,
          bytesWritten: s.bytesWritten,
          seconds: s.seconds,
        });
      },
      onRetry: (r) => log.warn(`sync failed: ${displayName(r.error.message)}; trying again in ${r.delaySec} s or when the share announces a root`, { event: 'retry', failures: r.failures, delaySec: r.delaySec }),
      onAnnounce: (a) => log.verbose(`the share announced root ${a.root.toString('hex')} for ${displayName(a.name)}`, { event: 'announce' }),
      onRewatch: (w) =>
        log.warn(w.error ? `cannot watch for announces now (${w.error}); trying again later` : `no announce from the share for ${w.silentSec} s; watching again`, { event: 'rewatch', ...w }),
    });
    log.info(`stopped after ${count(result.cycles, 'sync')}${result.rootHash ? `; ${displayName(dest)} holds root ${result.rootHash}` : ''}`, { event: 'stopped' });
    if (this.jsonOutput) this.printJson({ ok: true, follow: true, ...result });
  }
}
