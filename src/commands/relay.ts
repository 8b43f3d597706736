import { Flags } from '@oclif/core';
import { LcsyncCommand } from '../cli/base.js';
import { count } from '../cli/plural.js';

export default class RelayCommand extends LcsyncCommand {
  static override description = `Carry lcsync shares from one link to others (an application-level MLD proxy).

Watches MLD on each --downstream interface, as a share does (querier included). For every lcsync group (transient, wider than link scope, such as ff1e::/16) that a host there joins, the relay joins it on the --upstream interface, so the share or the relay one tier up sends it, and sends every datagram that arrives there on to the downstream interfaces with a listener, bytes unchanged and at once (a file is carried while it is still in transit; encrypted shares too, the relay needs no key). It leaves upstream when the last downstream listener has left. Nothing is ever sent upstream and nothing this host sent is forwarded, so relays can be chained (a relay on the next link down is a listener like any other) and each link carries each datagram once.

Runs until SIGINT or SIGTERM, then prints what it forwarded (with --json, one JSON document). While it runs, \`lcsync status\` (with the same --rundir) lists it beside the shares: interfaces, groups relayed now with their listeners and counts, totals. Needs CAP_NET_RAW (root) to watch MLD. Where routers forward multicast themselves (kernel routes, smcroute), no relay is needed: give the share --hops 2 or more, and make sure MLD reports reach it (see the README, "Beyond one subnet").`;

  static override examples = [
    '<%= config.bin %> relay --upstream eth0 --downstream eth1',
    '<%= config.bin %> relay --upstream eth0 --downstream eth1 --downstream eth2 --hops 1 -v',
  ];

  static override flags = {
    upstream: Flags.string({ description: 'Interface towards the share (the groups are joined there).', required: true }),
    downstream: Flags.string({ description: 'Interface towards receivers (repeat or comma-separate for several); never the upstream one.', required: true, multiple: true, multipleNonGreedy: true }),
    hops: Flags.integer({ description: 'IPv6 hop limit of the datagrams sent downstream (1..255). Default 255, as the C lcsync share.', default: 255, min: 1, max: 255 }),
    querier: Flags.boolean({ description: 'Act as MLD querier on the downstream links when no better querier is there (--no-querier: rely on the routers\' queries).', default: true, allowNo: true }),
    'query-interval': Flags.integer({ description: 'Seconds between MLD general queries while we are querier.', default: 20, min: 1, max: 3600 }),
    'kernel-forwarding': Flags.boolean({ description: 'Be the MLD proxy only: join upstream what downstream listens to and copy nothing, for a router whose kernel forwards multicast by its own routes (smcroute (*,G) routes from upstream to downstream); the share then needs --hops 2 or more.', default: false }),
    rundir: Flags.string({ description: 'Directory of the status socket, as for `lcsync share`. Default: $LCSYNC_RUNDIR, else /run/lcsync as root, else $XDG_RUNTIME_DIR/lcsync, else /tmp/lcsync-UID.' }),
    'max-groups': Flags.integer({ description: 'Groups relayed at once, at most (each is a socket and an upstream membership).', default: 1024, min: 1, max: 65536 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(RelayCommand);
    const log = this.setupOutput(flags);
    const split = (v: string[]) => v.flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
    const { Relay } = await import('../core/ops/relay.js');
    const relay = await Relay.start({
      upstream: flags.upstream,
      downstreams: split(flags.downstream),
      hopLimit: flags.hops,
      querier: flags.querier,
      queryIntervalSec: flags['query-interval'],
      maxGroups: flags['max-groups'],
      kernelForwarding: flags['kernel-forwarding'],
      logger: { info: (m) => log.info(m), verbose: (m) => log.verbose(m), warn: (m) => log.warn(m) },
    });
    // `lcsync status` asks the relay here, as it asks shares; a relay without the socket still relays.
    const { resolveRunDir, serveStatus } = await import('../core/ops/ipc.js');
    const ipc = await serveStatus(resolveRunDir(flags.rundir).dir, () => ({ kind: 'relay', pid: process.pid, startedAt: relay.startedAt, ...relay.status() }), 'relay').catch((e: Error) => {
      log.warn(`no status socket, \`lcsync status\` will not list this relay: ${e.message}`);
      return undefined;
    });
    log.info(flags['kernel-forwarding']
      ? `MLD proxy ${split(flags.downstream).join(', ')} -> ${flags.upstream} (the kernel forwards); stop with Ctrl-C`
      : `relaying ${flags.upstream} -> ${split(flags.downstream).join(', ')} (hop limit ${flags.hops}); stop with Ctrl-C`);
    const signal = await new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    log.verbose(`${signal}: stopping`);
    await ipc?.close();
    const st = await relay.stop();
    if (this.jsonOutput) this.printJson({ ok: true, ...st });
    else {
      log.info(`stopped: forwarded ${count(st.forwarded.datagrams, 'datagram')} (${count(st.forwarded.bytes, 'byte')}) of ${count(st.received.datagrams, 'datagram')} received, ` +
        `${st.joins} upstream ${st.joins === 1 ? 'join' : 'joins'}, ${count(st.dropped, 'datagram')} dropped, in ${st.uptimeSec.toFixed(1)} s`);
    }
  }
}
