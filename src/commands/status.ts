import { Flags } from '@oclif/core';
import { LcsyncCommand, jsonReplacer } from '../cli/base.js';
import { displayName, jsonNames } from '../core/base/names.js';
import type { RelayStatusDocument, ShareAnswer } from '../core/ops/ipc.js';
import type { ShareStatus } from '../core/share/status.js';
import { count } from '../cli/plural.js';

export default class StatusCommand extends LcsyncCommand {
  static override description = `Show the lcsync shares and relays running on this host.

Asks every share through its status socket in the run directory and prints, for each: pid, uptime, shared paths with their root hashes, number of objects, interfaces (and the symbol size when --symbol-size is not 1024), groups with listeners now, active send streams, mirrors following each name (sync --follow: hosts listening for its changes, as far as MLD shows them), bytes and datagrams sent, current and average send rate, and re-index count. Running relays (\`lcsync relay\`) answer too and are listed beside the shares: upstream and downstream interfaces, the groups relayed now with, for each, its listeners downstream and the datagrams and bytes carried, and totals received, forwarded and dropped. A share that does not answer within a second is listed as unresponsive; sockets left behind by shares that died are removed. No share running is not an error: the command says so and exits 0.

The run directory is --rundir, else $LCSYNC_RUNDIR, else /run/lcsync as root, else $XDG_RUNTIME_DIR/lcsync, else /tmp/lcsync-UID. A share only shows up for a status run that looks in the same directory, and (its socket being owner-only) by the same user or root.`;

  static override examples = [
    '<%= config.bin %> status',
    '<%= config.bin %> status --json',
    '<%= config.bin %> status --watch --interval 1 -v',
  ];

  static override flags = {
    rundir: Flags.string({ description: 'Directory of the share sockets. Default: $LCSYNC_RUNDIR, else /run/lcsync as root, else $XDG_RUNTIME_DIR/lcsync, else /tmp/lcsync-UID (as for `lcsync share`).' }),
    watch: Flags.boolean({ char: 'w', description: 'Refresh until interrupted (Ctrl-C); with --json, one JSON document per line per refresh.', default: false }),
    interval: Flags.integer({ description: 'Seconds between refreshes with --watch.', default: 2, min: 1, max: 3600 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(StatusCommand);
    const log = this.setupOutput(flags);
    const { queryAll, resolveRunDir } = await import('../core/ops/ipc.js');
    const { dir } = resolveRunDir(flags.rundir);
    const once = async (): Promise<string> => {
      const answers = await queryAll(dir, 1000);
      for (const a of answers) if (a.error === 'stale') log.verbose(`removed stale socket ${a.path}`);
      const doc = statusDocument(dir, answers);
      if (this.jsonOutput) return JSON.stringify(jsonNames(doc), jsonReplacer, flags.watch ? undefined : 2) + '\n';
      return renderHuman(dir, answers, flags.verbose);
    };
    if (!flags.watch) {
      process.stdout.write(await once());
      return;
    }
    let stop = false;
    let wake: (() => void) | undefined;
    const onSignal = () => {
      stop = true;
      wake?.();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      while (!stop) {
        const out = await once();
        // Clear the screen between refreshes on a terminal; append when piped, so a log keeps every refresh.
        if (process.stdout.isTTY && !this.jsonOutput) process.stdout.write('\x1b[H\x1b[2J');
        process.stdout.write(out);
        await new Promise<void>((r) => {
          const t = setTimeout(r, flags.interval * 1000);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}

/** The --json document: live shares with their status, live relays with theirs, and the sockets that did not answer. */
export function statusDocument(dir: string, answers: ShareAnswer[]): Record<string, unknown> {
  return {
    ok: true,
    rundir: dir,
    shares: answers.filter((a) => a.status).map((a) => ({ socket: a.path, ...a.status })),
    relays: answers.filter((a) => a.relay).map((a) => ({ socket: a.path, ...a.relay })),
    unresponsive: answers.filter((a) => a.error === 'unresponsive' || a.error === 'error').map((a) => ({ pid: a.pid, socket: a.path, reason: a.detail ?? 'no answer within 1 s', kind: a.kind ?? 'share' })),
    staleRemoved: answers.filter((a) => a.error === 'stale').map((a) => ({ pid: a.pid, socket: a.path, kind: a.kind ?? 'share' })),
  };
}

/** What a person reads: a block per share, and per relay. */
export function renderHuman(dir: string, answers: ShareAnswer[], verbose: boolean): string {
  const live = answers.filter((a) => a.status || a.relay);
  const lines: string[] = [];
  if (live.length === 0 && !answers.some((a) => a.error === 'unresponsive' || a.error === 'error')) {
    lines.push(`no lcsync share is running (looked in ${dir})`);
  }
  for (const a of answers) {
    const who = a.kind === 'relay' ? `relay pid ${a.pid}` : `pid ${a.pid}`;
    if (a.error === 'unresponsive') lines.push(`${who}: unresponsive (no answer within 1 s on ${a.path})`);
    else if (a.error === 'error') lines.push(`${who}: bad answer on ${a.path}: ${a.detail ?? 'unknown'}`);
    else if (a.error === 'stale') lines.push(`${who}: not running; removed its stale socket ${a.path}`);
    if (a.relay) lines.push(...renderRelay(a.pid, a.relay, verbose));
    if (!a.status) continue;
    const s: Partial<ShareStatus> = a.status;
    lines.push(`pid ${s.pid ?? a.pid}  up ${duration(s.uptimeSec ?? 0)}`);
    for (const r of s.roots ?? []) lines.push(`  ${r.hash}  ${displayName(r.shareName)}  (${r.type}, ${displayName(r.path)})`);
    // The symbol size only when it is not the C protocol's: such a share serves lcsync receivers alone.
    const symbols = s.symbolSize !== undefined && s.symbolSize !== 1024 ? `, symbols of ${s.symbolSize} bytes (lcsync receivers only)` : '';
    lines.push(`  objects ${s.objects ?? 0}, interfaces ${(s.interfaces ?? []).join(', ') || '-'}${symbols}`);
    lines.push(`  groups with listeners ${s.listeners?.length ?? 0}, send streams ${s.streams?.length ?? 0} active (${s.streamsStarted ?? 0} started)`);
    lines.push(`  sent ${bytes(s.bytes ?? 0)} in ${count(s.datagrams ?? 0, 'datagram')}; rate ${bytes(s.rateNow ?? 0)}/s now, ${bytes(s.rateAvg ?? 0)}/s average`);
    for (const f of s.followers ?? []) lines.push(`  followers of ${displayName(f.shareName)} on ${f.ifname}: ${count(f.hosts, 'host')}`);
    if (s.follow) {
      const last = s.follow.last ? `, last ${duration((Date.now() - s.follow.last.at) / 1000)} ago (${s.follow.last.reason})` : '';
      lines.push(`  re-indexed ${count(s.follow.reindexes, 'time')}${last}`);
    }
    if (verbose) {
      for (const l of s.listeners ?? []) lines.push(`    listener ${l.group}%${l.ifname}`);
      for (const st of s.streams ?? []) lines.push(`    stream ${st.kind} ${st.name} on ${st.group}%${st.ifname}: ${count(st.datagrams, 'datagram')}`);
    }
  }
  return lines.map((l) => l + '\n').join('');
}

/** Groups listed one a line without -v; a relay may carry hundreds. */
const RELAY_GROUPS_SHOWN = 20;

/** A relay's block: what it carries from where to where, the groups relayed now, and totals. */
export function renderRelay(pid: number, r: Partial<RelayStatusDocument>, verbose: boolean): string[] {
  const how = r.kernelForwarding ? 'MLD proxy only, the kernel forwards' : r.native ? 'forwarding in C' : 'forwarding through node:dgram';
  const groups = r.groups ?? [];
  const lines = [
    `relay pid ${r.pid ?? pid}  up ${duration(r.uptimeSec ?? 0)}`,
    `  upstream ${r.upstream ?? '-'} -> downstream ${(r.downstreams ?? []).join(', ') || '-'} (${how}, hop limit ${r.hopLimit ?? '-'})`,
    `  groups relayed ${groups.length}; upstream ${count(r.joins ?? 0, 'join')}, ${count(r.leaves ?? 0, 'leave')}, ${count(r.rejoins ?? 0, 're-join')}`,
    `  received ${bytes(r.received?.bytes ?? 0)} in ${count(r.received?.datagrams ?? 0, 'datagram')}, forwarded ${bytes(r.forwarded?.bytes ?? 0)} in ${count(r.forwarded?.datagrams ?? 0, 'datagram')}, dropped ${r.dropped ?? 0}, unrouted ${r.unrouted ?? 0}`,
  ];
  const shown = verbose ? groups : groups.slice(0, RELAY_GROUPS_SHOWN);
  for (const g of shown) {
    lines.push(`    group ${g.group} -> ${(g.downstreams ?? []).join(', ')}: ${count(g.listeners ?? 0, 'listener')}, ${count(g.datagrams ?? 0, 'datagram')} (${bytes(g.bytes ?? 0)}), dropped ${g.dropped ?? 0}`);
  }
  if (shown.length < groups.length) lines.push(`    ... and ${groups.length - shown.length} more (-v lists all)`);
  return lines;
}

function duration(sec: number): string {
  const s = Math.floor(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

/** Decimal units, as the rest of lcsync prints rates (MB = 10^6 bytes). */
function bytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? Math.round(v) : v.toFixed(2)} ${units[u]}`;
}
