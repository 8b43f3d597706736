/**
 * Redundant shares on a lab network (needs root): two shares of the same content (hosts 0 and 1)
 * and three receivers (hosts 2-4), through a bridge in its own namespace. The shares split the
 * groups (docs/protocol.md#redundant-shares), so both together send about what one sends alone;
 * killing either mid-transfer (by PID) leaves every sync to complete without a restart; a lone
 * share sends no heartbeat. Sender bytes are the shares' e0 counters, read inside their namespaces,
 * the groups each sent are collected in an nftables set there, and
 * heartbeats are counted by an nftables rule there.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { runSync, startShare, treeListing, type RunningShare, type SyncRun } from './e2e.js';
import { formatPublicKey, rawPublicKey } from '../src/core/wire/signature.js';
import { groupAddress } from '../src/core/wire/address.js';
import { cursorKey } from '../src/core/wire/packet.js';
import { MerkleTree } from '../src/core/model/tree.js';

const why = skipReason(['nft']);
const RECEIVERS = [2, 3, 4];

describeUnless(why, 'redundant shares (needs root)', () => {
  let lab: Lab;
  let work: string;
  let src: string;
  let keyfile: string;
  let signKey: string;
  let pubLine: string;
  /** The group of big.bin's cursor, which every share answers (below). */
  let bigCursorGroup: string;

  beforeAll(async () => {
    lab = await createLab({ hosts: 5, snooping: false });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-redund-'));
    // Both shares serve the same directory (the lab's namespaces share the file system): the same roots.
    src = path.join(work, 'data');
    mkdirSync(path.join(src, 'small'), { recursive: true });
    const big = randomBytes(12 * 1024 * 1024);
    writeFileSync(path.join(src, 'big.bin'), big);
    bigCursorGroup = groupAddress(cursorKey(MerkleTree.fromBuffer(big).root));
    writeFileSync(path.join(src, 'mid.bin'), randomBytes(3 * 1024 * 1024 + 777));
    for (let i = 0; i < 40; i++) writeFileSync(path.join(src, 'small', `f${i}.txt`), randomBytes(100 + i * 500));
    keyfile = path.join(work, 'key');
    writeFileSync(keyfile, randomBytes(128));
    const { privateKey } = generateKeyPairSync('ed25519');
    signKey = path.join(work, 'sign.key');
    writeFileSync(signKey, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    pubLine = formatPublicKey(rawPublicKey(privateKey));
    for (const h of [0, 1]) {
      const nft = async (...args: string[]) => {
        const r = await lab.exec(h, ['nft', ...args]);
        if (r.code !== 0) throw new Error(`nft ${args.join(' ')}: ${r.stderr}`);
      };
      await nft('add', 'table', 'inet', 'redund');
      await nft('add', 'chain', 'inet', 'redund', 'out', '{ type filter hook output priority 0 ; }');
      await nft('add', 'rule', 'inet', 'redund', 'out', 'udp', 'dport', '4243', 'counter');
      // Every content group the share sends on, to tell which groups both shares sent.
      await nft('add', 'set', 'inet', 'redund', 'groups', '{ type ipv6_addr; size 65536; flags dynamic; }');
      await nft('add', 'rule', 'inet', 'redund', 'out', 'udp', 'dport', '4242', 'add', '@groups', '{ ip6 daddr }');
    }
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Heartbeat datagrams host `h` has sent so far. */
  async function heartbeats(h: number): Promise<number> {
    const r = await lab.exec(h, ['nft', 'list', 'table', 'inet', 'redund']);
    const m = /dport 4243 counter packets (\d+)/.exec(r.stdout);
    if (!m) throw new Error(`no counter: ${r.stdout} ${r.stderr}`);
    return Number(m[1]);
  }

  /** The content groups host `h` has sent on since the set was last flushed. */
  async function groupsSent(h: number): Promise<Set<string>> {
    const r = await lab.exec(h, ['nft', '-j', 'list', 'set', 'inet', 'redund', 'groups']);
    const set = (JSON.parse(r.stdout) as { nftables: { set?: { elem?: string[] } }[] }).nftables.find((o) => o.set)?.set;
    if (!set) throw new Error(`no group set: ${r.stdout} ${r.stderr}`);
    return new Set(set.elem ?? []);
  }

  async function txBytes(hosts: number[]): Promise<number> {
    let sum = 0;
    for (const h of hosts) sum += await lab.txBytes(h);
    return sum;
  }

  let run = 0;
  /** The three receivers sync the share at once into fresh directories; each must end identical. */
  async function syncAll(extra: string[] = [], during?: () => Promise<void>): Promise<SyncRun[]> {
    const tag = run++;
    const dests = RECEIVERS.map((h) => path.join(work, `out${tag}-${h}`));
    const runs = Promise.all(RECEIVERS.map((h, i) => runSync(lab, h, ['-r', '--timeout', '30', ...extra, 'data/', dests[i]!], 180_000)));
    if (during) await during();
    const results = await runs;
    results.forEach((r, i) => {
      expect(r.code, `receiver ${RECEIVERS[i]}: ${r.stderr}`).toBe(0);
      expect(treeListing(dests[i]!)).toEqual(treeListing(src));
    });
    return results;
  }

  async function withShares<T>(hosts: number[], extra: string[], body: (shares: RunningShare[]) => Promise<T>): Promise<T> {
    const shares: RunningShare[] = [];
    try {
      for (const h of hosts) shares.push(await startShare(lab, h, [src], ['-v', ...extra]));
      // Both are up: let them hear each other (presence join, first heartbeats).
      await new Promise((r) => setTimeout(r, 700));
      return await body(shares);
    } finally {
      for (const s of shares) await s.stop();
    }
  }

  // What shows the split is which groups each share sent: none by both. The bytes vary from run to
  // run by how the three receivers' joins line up (a group joined late is sent again): two
  // cooperating shares sent 0.83-1.32 times one share's bytes over 24 runs (1.32 in CI), and two
  // that do not cooperate (--no-cooperate) 1.23-2.03 times, since a receiver leaves a group once it
  // completed the object from whichever share came first. So the byte bound only catches a gross excess.
  it('a lone share sends no heartbeat; two shares send no group both but a cursor, and together at most 1.5 times what one sends alone', async () => {
    const hb0 = await heartbeats(0);
    const before1 = await txBytes([0]);
    // Both counts are taken before the shares stop (below).
    const alone = await withShares([0], [], async () => {
      await syncAll();
      return (await txBytes([0])) - before1;
    });
    expect(await heartbeats(0)).toBe(hb0);

    // Measured while both still run: the first to stop says bye and the other takes its groups over,
    // and a group whose last receiver was still leaving (a receiver's memberships go with its exit)
    // then gets a round from it too (docs/protocol.md, Takeover). And on a loaded machine a share can
    // stall past three heartbeats mid-transfer (CI saw it): its peer then takes its groups over, by
    // design, and both send them until they hear each other again. Either shows the takeover, not the
    // split, so a run with a takeover before the shares stop is repeated (at most three runs).
    const runs: string[] = [];
    let split: { d0: number; d1: number; g0: Set<string>; g1: Set<string>; logs: string[] } | undefined;
    for (let attempt = 1; attempt <= 3 && !split; attempt++) {
      for (const h of [0, 1]) await lab.exec(h, ['nft', 'flush', 'set', 'inet', 'redund', 'groups']);
      const [a0, a1] = [await lab.txBytes(0), await lab.txBytes(1)];
      const r = await withShares([0, 1], [], async (shares) => {
        await syncAll();
        for (const s of shares) expect(s.stderr()).toMatch(/co-serving with share/);
        return {
          d0: (await lab.txBytes(0)) - a0,
          d1: (await lab.txBytes(1)) - a1,
          g0: await groupsSent(0),
          g1: await groupsSent(1),
          logs: shares.map((s) => s.stderr()),
        };
      });
      const takeovers = r.logs.flatMap((l, h) => l.split('\n').filter((x) => /taking over its groups|took over/.test(x)).map((x) => `share ${h}: ${x}`));
      runs.push(`attempt ${attempt}: ${takeovers.join(' | ') || 'no takeover'}`);
      if (takeovers.length === 0) split = r;
    }
    console.log(`redundant shares, two-share runs: ${runs.join('; ')}`);
    expect(split, runs.join('\n')).toBeDefined();
    const { d0, d1, g0, g1, logs } = split!;
    const both = d0 + d1;
    const shared = [...g0].filter((g) => g1.has(g));
    console.log(
      `redundant shares: one alone sent ${alone} bytes; two sent ${both} (${d0} + ${d1}), ratio ${(both / alone).toFixed(3)};` +
        ` groups ${g0.size} + ${g1.size}, sent by both ${shared.length}`,
    );
    // The shares cooperated: they told each other, each sent a real part, and no group came from
    // both but big.bin's cursor (a file longer than the chunks joined at once): each share answers a
    // cursor join with where it is in the file, one datagram (docs/protocol.md, the cursor).
    expect(await heartbeats(0)).toBeGreaterThan(hb0);
    expect(Math.min(d0, d1)).toBeGreaterThan(0.2 * both);
    expect(Math.min(g0.size, g1.size)).toBeGreaterThan(0.2 * (g0.size + g1.size));
    const extra = shared.filter((g) => g !== bigCursorGroup);
    // On a failure, what each share said of those groups (a share logs every stream it starts).
    const said = extra.map((g) => `${g}: ${logs.map((l, h) => `share ${h} [${l.split('\n').filter((x) => x.includes(g)).join(' | ')}]`).join('; ')}`);
    expect(extra, said.join('\n')).toEqual([]);
    expect(both).toBeLessThanOrEqual(1.5 * alone);
  }, 300_000);

  /** Wait until every receiver has some of the 15 MiB and not all, then send `share` `signal` by its PID. */
  async function killMidTransfer(share: RunningShare, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const t0 = Date.now();
    const start = await Promise.all(RECEIVERS.map((h) => lab.counters(h)));
    for (;;) {
      const now = await Promise.all(RECEIVERS.map((h) => lab.counters(h)));
      if (now.every((c, i) => c.rx_bytes - start[i]!.rx_bytes > 3 * 1024 * 1024)) break;
      if (Date.now() - t0 > 60_000) throw new Error('receivers did not start');
      await new Promise((r) => setTimeout(r, 20));
    }
    process.kill(share.proc.pid!, signal);
  }

  for (const victim of [0, 1]) {
    it(`killing share ${victim} (SIGKILL, by PID) mid-transfer: every sync completes without a restart`, async () => {
      await withShares([0, 1], [], async (shares) => {
        await syncAll([], () => killMidTransfer(shares[victim]!));
        const survivor = shares[1 - victim]!;
        expect(survivor.stderr()).toMatch(/taking over its groups/);
        // Restarted from the listener state at once, not only when the receivers asked again.
        expect(survivor.stderr()).toMatch(/took over [1-9]\d* groups? with listeners/);
      });
    }, 300_000);
  }

  // The bye is what this test proves, and on a loaded machine another way may come first: the
  // stopping share stalled past three heartbeats before its SIGTERM was handled (the survivor took
  // over then, and the bye finds it already forgotten), or the survivor read the stopper's MLD done
  // for the presence group before the bye in the same turn. Both take over too, by design, but do
  // not show the bye; such a run is repeated (at most three), any other outcome fails at once.
  it('stopping a share (SIGTERM) mid-transfer: its bye hands its groups over at once', async () => {
    const takeovers: string[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      const log = await withShares([0, 1], [], async (shares) => {
        await syncAll([], () => killMidTransfer(shares[0]!, 'SIGTERM'));
        return shares[1]!.stderr();
      });
      const lines = log.split('\n').filter((l) => /taking over its groups|took over/.test(l));
      takeovers.push(`attempt ${attempt}: ${lines.join(' | ') || 'no takeover'}`);
      if (/stopped: taking over its groups/.test(log)) {
        expect(log).toMatch(/took over [1-9]\d* groups? with listeners/);
        return;
      }
      expect(log, takeovers.join('\n')).toMatch(/(missed \d+ heartbeats|left the presence group): taking over its groups/);
      console.log(`redundant shares, SIGTERM: the bye was not what took over (${lines.join(' | ')}); again`);
    }
    expect.fail(`no bye took over in 3 runs:\n${takeovers.join('\n')}`);
  }, 600_000);

  it('freezing a share (SIGSTOP: no leave, its heartbeats just stop): the other takes over after missed heartbeats', async () => {
    await withShares([0, 1], [], async (shares) => {
      try {
        await syncAll([], () => killMidTransfer(shares[0]!, 'SIGSTOP'));
      } finally {
        process.kill(shares[0]!.proc.pid!, 'SIGCONT');
      }
      expect(shares[1]!.stderr()).toMatch(/missed 3 heartbeats: taking over its groups/);
      expect(shares[1]!.stderr()).toMatch(/took over [1-9]\d* groups? with listeners/);
    });
  }, 300_000);

  it('encrypted and signed shares co-serve (same key, same signer); a killed one is taken over', async () => {
    await withShares([0, 1], ['--keyfile', keyfile, '--sign', signKey], async (shares) => {
      await syncAll(['--keyfile', keyfile, '--trust', pubLine], () => killMidTransfer(shares[0]!));
      expect(shares[1]!.stderr()).toMatch(/co-serving with share/);
      expect(shares[1]!.stderr()).toMatch(/taking over its groups/);
    });
  }, 300_000);

  it('shares with different keys do not co-serve (each answers every join)', async () => {
    const other = path.join(work, 'key2');
    writeFileSync(other, randomBytes(128));
    const shares: RunningShare[] = [];
    try {
      shares.push(await startShare(lab, 0, [src], ['-v', '--keyfile', keyfile]));
      shares.push(await startShare(lab, 1, [src], ['-v', '--keyfile', other]));
      await new Promise((r) => setTimeout(r, 1000));
      for (const s of shares) expect(s.stderr()).not.toMatch(/co-serving with share/);
    } finally {
      for (const s of shares) await s.stop();
    }
  }, 120_000);
});
