import { Args, Flags } from '@oclif/core';
import { LcsyncCommand } from '../cli/base.js';
import { chooseInterfaces } from '../cli/interfaces.js';

export default class ShareCommand extends LcsyncCommand {
  static override description = `Serve files and directories to lcsync receivers over IPv6 multicast.

Indexes each PATH, prints its root hash and share name, then serves until SIGINT or SIGTERM. An object is sent only while MLD shows that some host has joined its group, RaptorQ-coded so receivers recover from loss without asking again. Needs CAP_NET_RAW (root) to watch MLD.`;

  static override examples = [
    '<%= config.bin %> share /srv/mirror',
    '<%= config.bin %> share -i eth1 --bwlimit 500M /srv/images /srv/iso',
    '<%= config.bin %> share --json /srv/mirror',
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
    const { toHex } = await import('../core/hash.js');
    const index = await ShareIndex.build(paths, { onWarning: (m) => log.warn(m), onRecord: (r) => log.verbose(`indexed ${r.sharePath}`) });
    const roots = index.roots.map((r) => ({ hash: toHex(r.hash), shareName: r.shareName, type: r.type, path: r.localPath }));
    if (this.jsonOutput) this.printJson({ ok: true, roots, interfaces: ifnames, objects: index.objectCount });
    else for (const r of roots) process.stdout.write(`${r.hash}  ${r.shareName}\n`);
    const share = await Share.start(index, {
      ifnames,
      loopback: flags.loopback,
      rateBps,
      querier: flags.querier,
      queryIntervalSec: flags['query-interval'],
      logger: log,
    });
    log.info(`sharing ${index.records.length} entries (${index.objectCount} objects) on ${ifnames.join(', ')}; stop with Ctrl-C`);
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    log.verbose(`${signal}: stopping`);
    const st = share.status();
    await share.stop();
    log.info(`stopped: sent ${st.datagrams} datagrams, ${st.bytes} bytes in ${st.uptimeSec.toFixed(1)} s`);
  }
}
