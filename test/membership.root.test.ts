/**
 * A receiver that asks for more groups than its socket may hold (needs root): in a lab namespace with
 * net.core.optmem_max lowered (it is per network namespace), joins beyond the limit neither throw nor fail the
 * request: they wait, and the kernel takes them once leaves have freed memberships (src/core/net/membership.ts,
 * mcast-receiver.ts). The burst policy itself: test/membership.test.ts.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = path.join(repo, 'test/fixtures/memb-limit.mjs');
const LEAVE_JOIN = path.join(repo, 'test/fixtures/memb-leavejoin.mjs');

describeUnless(skipReason(), 'group memberships beyond net.core.optmem_max (needs root)', () => {
  let lab: Lab | undefined;

  beforeAll(async () => {
    // The fixture imports the built dist/.
    const build = spawnSync('npx', ['tsc', '-p', '.'], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
    expect(build.error).toBeUndefined();
    lab = await createLab({ hosts: 1 });
  });
  afterAll(async () => {
    await lab?.teardown();
  });

  it('joins past the limit wait for leaves instead of failing', async () => {
    // 20480 bytes of option memory hold a few hundred IPv6 memberships (365 on Linux 6.18).
    const set = await lab!.exec(0, ['sysctl', '-w', 'net.core.optmem_max=20480']);
    expect(set.code, set.stderr).toBe(0);
    const r = await lab!.exec(0, ['node', FIXTURE, 'e0', '800', '600'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim()) as { thrown?: string; failed: string[]; afterJoins: number; afterLeaves: number; wanted: number; parsedAfterJoins: number; parsedAfterLeaves: number };
    expect(out.thrown).toBeUndefined();
    expect(out.failed).toEqual([]);
    // The limit was reached: some of the 800 waited...
    expect(out.afterJoins).toBeGreaterThan(0);
    expect(out.afterJoins).toBeLessThan(800);
    // ...and once 600 were left, the kernel holds every group still wanted.
    expect(out.wanted).toBe(200);
    expect(out.afterLeaves).toBe(200);
    // Each group's bytes are parsed once and kept while it is wanted or in the kernel, no longer (also not
    // for a group joined and left within one wait, which never reached the kernel).
    expect(out.parsedAfterJoins).toBe(800);
    expect(out.parsedAfterLeaves).toBe(200);
  });

  it('a leave and the join asked in the same turn go in one burst at once (the join does not wait BATCH_MS behind the leave)', async () => {
    const set = await lab!.exec(0, ['sysctl', '-w', 'net.core.optmem_max=131072']);
    expect(set.code, set.stderr).toBe(0);
    type Out = { before: string[]; sameTurn: string[]; soon: string[]; later: string[]; reports: number };
    const run = async (env: string[]): Promise<Out> => {
      const r = await lab!.exec(0, ['env', ...env, 'node', LEAVE_JOIN, 'e0'], { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim()) as Out;
    };
    // The kernel's reports only: neither change is made within the turn (the leave waits for the join that
    // may follow it)...
    const kernel = await run(['LCSYNC_NO_JOIN_REPORTS=1']);
    expect(kernel.before).toEqual(['ff1e::a']);
    expect(kernel.sameTurn).toEqual(['ff1e::a']);
    // ...and both right after it, well before the gap of 12 ms a second burst would have waited.
    expect(kernel.soon).toEqual(['ff1e::b']);
    expect(kernel.later).toEqual(['ff1e::b']);
    expect(kernel.reports).toBe(0);
    // Joins reported by the receiver itself (root here): the join is made at once, the leave with it.
    const own = await run([]);
    expect(own.before).toEqual(['ff1e::a']);
    expect(own.sameTurn).toEqual(['ff1e::b']);
    expect(own.soon).toEqual(['ff1e::b']);
    expect(own.later).toEqual(['ff1e::b']);
    expect(own.reports).toBe(2);
  });
});
