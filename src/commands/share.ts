import { Args, Flags } from '@oclif/core';
import { LcsyncCommand } from '../cli/base.js';
import { displayName, jsonNames } from '../core/base/names.js';
import { chooseInterfaces } from '../cli/interfaces.js';
import { chooseCipher, keyFlags } from '../cli/keys.js';
import { count } from '../cli/plural.js';

export default class ShareCommand extends LcsyncCommand {
  static override description = `Serve files and directories to lcsync receivers over IPv6 multicast.

Indexes each PATH, prints its root hash and share name, then serves until SIGINT or SIGTERM. An object is sent only while MLD shows that some host has joined its group, RaptorQ-coded so receivers recover from loss without asking again. Needs CAP_NET_RAW (root) to watch MLD.

The share follows its files: when they change, appear or vanish (file-system events, a rescan every --rescan seconds, or SIGHUP) it re-indexes, hashing only files whose size, mtime or inode changed, serves the new index and prints the new root hash lines (with --json, one JSON line {"event":"reindex",...} per change). A chunk whose file changed is never sent under its old hash. Trees of hashed files are kept in an on-disk cache, so a restarted share does not hash unchanged files again. A status socket in the run directory answers \`lcsync status\`.`;

  static override examples = [
    '<%= config.bin %> share /srv/mirror',
    '<%= config.bin %> share -i eth1 --bwlimit 500M /srv/images /srv/iso',
    '<%= config.bin %> share --json /srv/mirror',
    '<%= config.bin %> share --gather 3s /srv/images   # receivers started from cron within 3 s share one pass',
    '<%= config.bin %> share --no-follow --rescan 0 /srv/mirror   # re-index only on SIGHUP',
  ];

  static override strict = false;
  static override args = {
    path: Args.string({ description: 'file or directory to share (several may be given)', required: true }),
  };

  static override flags = {
    interface: Flags.string({ char: 'i', description: 'Interface to serve on (repeat or comma-separate for several). Default: every multicast-capable interface with an IPv6 address, except loopback; lo serves this host alone once it has a multicast route (ip -6 route add local ff00::/8 dev lo).', multiple: true, multipleNonGreedy: true }),
    loopback: Flags.boolean({ description: 'Also deliver to receivers on this host that joined on the same interface (multicast loopback); not needed on lo, where everything stays on this host anyway.', default: false }),
    hops: Flags.integer({ description: 'IPv6 hop limit of the data sent (1..255). Default 255, as the C lcsync: routers that forward multicast (kernel routes, smcroute) carry it on; 1 keeps it on the link.', default: 255, min: 1, max: 255 }),
    bwlimit: Flags.string({ description: 'Total send rate in bits per second, with K, M, G suffixes (x1000); 0 means unlimited. auto: start at 100M, raise the rate while receivers keep up (they leave the group of each round within its hold) and back off when more of them are late, or re-ask, than the loss of the link itself explains (10M..10G).', default: 'auto' }),
    'symbol-size': Flags.string({ description: 'RaptorQ symbol size in bytes. 1024 (the default) is the C lcsync\'s, which every receiver takes. 1368 carries a 32 KiB chunk in 24 datagrams of 1,404 bytes instead of 32 of 1,060, about a quarter fewer datagrams for the same data (less CPU at both ends where the kernel\'s UDP offloads, GSO and GRO, are missing): lcsync receivers learn it from the share; C lcsync receivers cannot, and the path must carry 1,464-byte IPv6 packets (a 1500-byte MTU does).', options: ['1024', '1368'], default: '1024' }),
    gather: Flags.string({ description: 'Hold the chunks of each new cohort of receivers this long (e.g. 3s, 500ms; at most 60s) after the first one reaches them, so receivers that start within that time (cron jitter, a fleet tool) share one pass of the data: the first receiver waits up to this long. Default 0: no hold (receivers that start later join where the share is sending and wrap around).', default: '0' }),
    querier: Flags.boolean({ description: 'Act as MLD querier when no better querier is on the link (--no-querier: rely on the routers\' queries and our own timers).', default: true, allowNo: true }),
    'query-interval': Flags.integer({ description: 'Seconds between MLD general queries while we are querier.', default: 20, min: 1, max: 3600 }),
    follow: Flags.boolean({ description: 'Watch the shared files (file-system events) and serve a new index when they change, appear or vanish; prints the new root hash. --no-follow: only rescans and SIGHUP re-index.', default: true, allowNo: true }),
    rescan: Flags.integer({ description: 'Seconds between full rescans for changes the file-system events miss (network file systems); 0 turns rescans off. SIGHUP always re-indexes at once.', default: 60, min: 0, max: 86400 }),
    cache: Flags.string({ description: 'Directory of the tree cache, which lets a restarted share skip re-hashing unchanged files. Default: /var/cache/lcsync as root, else $XDG_CACHE_HOME/lcsync or ~/.cache/lcsync.' }),
    'no-cache': Flags.boolean({ description: 'Neither read nor write the on-disk tree cache.', default: false }),
    push: Flags.boolean({ description: 'Push mode, for when the share cannot watch MLD (no CAP_NET_RAW, or reports never reach it): send every object a round every --push-interval seconds, whether anyone listens or not.', default: false }),
    'push-interval': Flags.integer({ description: 'Seconds between rounds in push mode.', default: 10, min: 1, max: 3600 }),
    cooperate: Flags.boolean({ description: 'Cooperate with other lcsync shares of the same content (same roots, key and signer) on the link: each sends only the groups it owns, and a share takes over the groups of one that stops or dies within about a second. A lone share sends nothing extra. --no-cooperate: ignore other shares (each answers every join).', default: true, allowNo: true }),
    bundles: Flags.boolean({ description: 'Publish a bundle per directory (its entries\' trees and the bytes of files of up to 32 KiB, an lcsync extension that C clients never ask for), so lcsync receivers fetch a directory of small files in one round trip. --no-bundles: serve exactly what the C lcshare serves.', default: true, allowNo: true }),
    ...keyFlags,
    sign: Flags.string({
      description:
        'Publish, next to each root, a signature made with this private key (from `lcsync keygen`) and the signed manifest (symlink targets and the top directory\'s mode, owner and times, which no hash covers), so that `lcsync sync --trust PUBKEY` can check who published the root and all of it.',
    }),
    rundir: Flags.string({ description: 'Directory of the status socket that `lcsync status` reads. Default: $LCSYNC_RUNDIR, else /run/lcsync as root, else $XDG_RUNTIME_DIR/lcsync, else /tmp/lcsync-UID.' }),
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(ShareCommand);
    const log = this.setupOutput(flags);
    const { parseRate } = await import('../core/net/pacer.js');
    const autoRate = flags.bwlimit.trim().toLowerCase() === 'auto';
    const rateBps = autoRate ? undefined : parseRate(flags.bwlimit);
    const { parseDurationMs } = await import('../cli/duration.js');
    const { GATHER_WINDOW_MAX_MS } = await import('../core/share/scheduler.js');
    const gatherMs = parseDurationMs(flags.gather, '--gather', GATHER_WINDOW_MAX_MS);
    const ifnames = await chooseInterfaces(flags.interface);
    const cipher = await chooseCipher(flags, log, 'share');
    const signKey = flags.sign ? await (await import('../core/wire/signature.js')).loadPrivateKey(flags.sign) : undefined;
    const { ShareService } = await import('../core/ops/service.js');
    const { defaultCacheDir } = await import('../core/index/cache.js');
    const { resolveRunDir } = await import('../core/ops/ipc.js');
    const service = await ShareService.start(
      {
        paths: argv as string[],
        ifnames,
        loopback: flags.loopback,
        hopLimit: flags.hops,
        symbolSize: Number(flags['symbol-size']),
        rateBps,
        autoRate,
        gatherMs,
        querier: flags.querier,
        queryIntervalSec: flags['query-interval'],
        cipher,
        signKey,
        push: flags.push,
        pushPeriodSec: flags['push-interval'],
        bundles: flags.bundles,
        cooperate: flags.cooperate && !flags.push,
        cacheDir: flags['no-cache'] ? undefined : (flags.cache ?? defaultCacheDir()),
        follow: flags.follow,
        rescanSec: flags.rescan,
        runDir: resolveRunDir(flags.rundir).dir,
        logger: log,
      },
      (ev) => {
        if (!ev.changed) return;
        if (this.jsonOutput) process.stdout.write(JSON.stringify(jsonNames({ event: 'reindex', ...ev })) + '\n');
        else {
          for (const r of ev.roots) process.stdout.write(`${r.hash}  ${displayName(r.shareName)}\n`);
          log.info(`serving a new index (${ev.reason}): ${count(ev.rehashed, 'file')} re-hashed, ${count(ev.objects, 'object')}`);
        }
      },
    );
    const roots = service.roots;
    if (this.jsonOutput) this.printJson({ ok: true, roots, interfaces: ifnames, objects: service.share.index.objectCount });
    else for (const r of roots) process.stdout.write(`${r.hash}  ${displayName(r.shareName)}\n`);
    const onHup = () => service.reindex();
    process.on('SIGHUP', onHup);
    log.info(`sharing ${count(service.share.index.records.length, 'entry', 'entries')} (${count(service.share.index.objectCount, 'object')}) on ${ifnames.join(', ')}; stop with Ctrl-C`);
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    log.verbose(`${signal}: stopping`);
    process.off('SIGHUP', onHup);
    const st = await service.stop();
    log.info(`stopped: sent ${count(st.datagrams, 'datagram')}, ${count(st.bytes, 'byte')} in ${st.uptimeSec.toFixed(1)} s`);
  }
}
