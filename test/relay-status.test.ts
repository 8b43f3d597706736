/**
 * Relays in `lcsync status` without a network (src/core/ops/ipc.ts, src/commands/status.ts): a relay answers on a
 * socket of its own name beside the shares, the JSON document lists it under `relays` and leaves `shares` as it
 * was, and the human form renders its block. A real relay between two subnets: test/relay.root.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { queryAll, serveStatus, socketPath, type RelayStatusDocument } from '../src/core/ops/ipc.js';
import { renderHuman, renderRelay, statusDocument } from '../src/commands/status.js';

let work: string;
beforeEach(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-rstatus-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

function relayDoc(groups: number): RelayStatusDocument {
  return {
    kind: 'relay',
    pid: 4321,
    startedAt: Date.now() - 75_000,
    upstream: 'eth0',
    downstreams: ['eth1', 'eth2'],
    hopLimit: 255,
    native: true,
    kernelForwarding: false,
    uptimeSec: 75,
    received: { datagrams: 3000, bytes: 3_300_000 },
    forwarded: { datagrams: 5990, bytes: 6_589_000 },
    dropped: 10,
    unrouted: 2,
    joins: 3,
    leaves: 1,
    rejoins: 1,
    groups: Array.from({ length: groups }, (_, i) => ({
      group: `ff1e::${(i + 1).toString(16)}`,
      downstreams: i === 0 ? ['eth1', 'eth2'] : ['eth1'],
      listeners: i === 0 ? 3 : 1,
      datagrams: i === 0 ? 2000 : 1,
      bytes: i === 0 ? 2_200_000 : 1100,
      idleMs: 5,
      dropped: i === 0 ? 10 : 0,
    })),
  };
}

describe('relays in lcsync status', () => {
  it('a relay answers on relay-PID.sock; queryAll tells it from a share and the JSON lists it under relays only', async () => {
    const dir = path.join(work, 'run');
    const share = await serveStatus(dir, () => ({ pid: process.pid, roots: [], bytes: 7 }));
    const relay = await serveStatus(dir, () => relayDoc(2), 'relay');
    try {
      expect(relay.path).toBe(socketPath(dir, process.pid, 'relay'));
      expect(share.path).toBe(socketPath(dir));
      expect(relay.path).not.toBe(share.path);
      const answers = await queryAll(dir);
      expect(answers).toHaveLength(2);
      const r = answers.find((a) => a.kind === 'relay')!;
      const s = answers.find((a) => a.kind !== 'relay')!;
      expect(r.status).toBeUndefined();
      expect(r.relay).toMatchObject({ kind: 'relay', upstream: 'eth0', groups: [{ group: 'ff1e::1', listeners: 3 }, { group: 'ff1e::2' }] });
      expect(s.relay).toBeUndefined();
      expect(s.status).toMatchObject({ bytes: 7 });
      const doc = statusDocument(dir, answers) as { shares: unknown[]; relays: { socket: string; upstream: string; groups: unknown[] }[] };
      expect(doc.shares).toHaveLength(1);
      expect(doc.shares[0]).toMatchObject({ socket: share.path, bytes: 7 });
      expect(doc.relays).toEqual([expect.objectContaining({ socket: relay.path, upstream: 'eth0', kind: 'relay' })]);
      expect(doc.relays[0]!.groups).toHaveLength(2);
      const human = renderHuman(dir, answers, false);
      expect(human).toMatch(/^relay pid 4321 {2}up 1m15s$/m);
      expect(human).toMatch(/^pid \d+ {2}up /m);
      expect(human).not.toContain('no lcsync share is running');
    } finally {
      await relay.close();
      await share.close();
    }
    expect(await queryAll(dir)).toEqual([]);
  });

  it('with only a relay running, status does not say that nothing runs; a dead relay socket is removed as stale', async () => {
    const dir = path.join(work, 'run');
    const relay = await serveStatus(dir, () => relayDoc(1), 'relay');
    // A relay that died without removing its socket (SIGKILL): a socket file nobody listens on.
    const dead = socketPath(dir, 999_999, 'relay');
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(dead)}, () => console.log('up')); setTimeout(() => {}, 20000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((r) => child.stdout!.once('data', () => r()));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(existsSync(dead)).toBe(true);
    try {
      const answers = await queryAll(dir);
      const doc = statusDocument(dir, answers);
      expect(doc).toMatchObject({ shares: [], relays: [{ upstream: 'eth0' }], staleRemoved: [{ pid: 999_999, socket: dead, kind: 'relay' }] });
      expect(existsSync(dead)).toBe(false);
      const human = renderHuman(dir, answers, false);
      expect(human).not.toContain('no lcsync share is running');
      expect(human).toContain(`relay pid 999999: not running; removed its stale socket ${dead}`);
    } finally {
      await relay.close();
    }
  });

  it('renders interfaces, totals and one line per group, at most 20 without -v', () => {
    const lines = renderRelay(4321, relayDoc(25), false);
    expect(lines.slice(0, 4)).toEqual([
      'relay pid 4321  up 1m15s',
      '  upstream eth0 -> downstream eth1, eth2 (forwarding in C, hop limit 255)',
      '  groups relayed 25; upstream 3 joins, 1 leave, 1 re-join',
      '  received 3.30 MB in 3000 datagrams, forwarded 6.59 MB in 5990 datagrams, dropped 10, unrouted 2',
    ]);
    expect(lines[4]).toBe('    group ff1e::1 -> eth1, eth2: 3 listeners, 2000 datagrams (2.20 MB), dropped 10');
    expect(lines[5]).toBe('    group ff1e::2 -> eth1: 1 listener, 1 datagram (1.10 kB), dropped 0');
    expect(lines.filter((l) => l.startsWith('    group '))).toHaveLength(20);
    expect(lines.at(-1)).toBe('    ... and 5 more (-v lists all)');
    expect(renderRelay(4321, relayDoc(25), true).filter((l) => l.startsWith('    group '))).toHaveLength(25);
  });

  it('reads an incomplete document (another version) without failing, and names the kernel-forwarding mode', () => {
    expect(renderRelay(77, { kernelForwarding: true }, false)).toEqual([
      'relay pid 77  up 0s',
      '  upstream - -> downstream - (MLD proxy only, the kernel forwards, hop limit -)',
      '  groups relayed 0; upstream 0 joins, 0 leaves, 0 re-joins',
      '  received 0 B in 0 datagrams, forwarded 0 B in 0 datagrams, dropped 0, unrouted 0',
    ]);
  });
});
