/**
 * Live interoperability with the C lcsync 0.3.2 (needs root and LCSYNC_C_REF, see test/interop/cref.ts): several
 * receivers at once, and both kinds of share on one link.
 *  - three C clients pull a 16 MiB file from our share at once: all identical, and our share's wire bytes
 *    (tx_bytes of its interface) stay well below one copy per receiver;
 *  - three of our clients pull it from a C share at once;
 *  - a C share and our share serve the same tree (share.tar with a 16 MiB file added) on one link at once, so every
 *    group carries datagrams of both; a C client and one of ours pull it with -a at the same time and both end
 *    byte- and metadata-identical.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLab, skipReason, type Lab } from '../lab.js';
import { describeUnless, firstReason } from '../skip.js';
import { vectorPath } from '../vectors.js';
import { runSync, sha256, startShare, treeListing, type RunningShare } from '../e2e.js';
import { crefReason, describeRun, runCSync, startCShare, type CShare } from './cref.js';

const why = firstReason(crefReason(), skipReason(['nft']));

const OUR_SHARE = 0;
const C_SHARE = 1;
const RECEIVERS = [2, 3, 4];
const SIZE = 16 * 1024 * 1024;

describeUnless(why, 'interop with the C lcsync 0.3.2: many receivers, both shares on one link (needs root and LCSYNC_C_REF)', () => {
  let lab: Lab;
  let work: string;
  let big: string;
  let cShare: CShare | undefined;
  let ourShare: RunningShare | undefined;
  const notes: string[] = [];

  beforeAll(async () => {
    lab = await createLab({ hosts: 5, snooping: true });
    work = mkdtempSync(path.join(tmpdir(), 'lcsync-interop-'));
    mkdirSync(path.join(work, 'big'));
    big = path.join(work, 'big', 'big.bin');
    writeFileSync(big, randomBytes(SIZE));
  }, 60_000);

  afterEach(async () => {
    await cShare?.stop();
    await ourShare?.stop();
    cShare = undefined;
    ourShare = undefined;
  });

  afterAll(async () => {
    await lab?.teardown();
    if (work) rmSync(work, { recursive: true, force: true });
    if (notes.length > 0) console.log(`\ninterop receivers:\n  ${notes.join('\n  ')}`);
  });

  it('three C clients from our share at once: all identical, and our wire bytes well under one copy per receiver', async () => {
    ourShare = await startShare(lab, OUR_SHARE, [path.dirname(big)]);
    const before = await lab.counters(OUR_SHARE);
    const t0 = performance.now();
    const runs = await Promise.all(RECEIVERS.map((h) => runCSync(lab, h, ['big/big.bin', path.join(work, `c3-${h}.bin`)], { batch: true }, 150_000)));
    const seconds = (performance.now() - t0) / 1000;
    const sent = (await lab.counters(OUR_SHARE)).tx_bytes - before.tx_bytes;
    for (const r of runs) expect(r.code, describeRun(r)).toBe(0);
    for (const h of RECEIVERS) expect(sha256(path.join(work, `c3-${h}.bin`))).toBe(sha256(big));
    // Three unicast copies would be 3 x SIZE plus headers; multicast serves all three with about one and a half
    // (measured 1.4-1.5 x: repair for the receivers' losses, chunks a late receiver asks for again). The bound
    // leaves room for receivers that a busy machine starts seconds apart.
    expect(sent).toBeLessThan(2.5 * SIZE);
    notes.push(`3 C clients <- our share: ${seconds.toFixed(2)} s, our share sent ${sent} B (${(sent / SIZE).toFixed(2)} x the file)`);
  }, 180_000);

  it('three of our clients from a C share at once: all identical', async () => {
    cShare = await startCShare(lab, C_SHARE, [path.dirname(big)]);
    const before = await lab.counters(C_SHARE);
    const t0 = performance.now();
    const runs = await Promise.all(RECEIVERS.map((h) => runSync(lab, h, ['--timeout', '30', 'big/big.bin', path.join(work, `o3-${h}.bin`)], 150_000)));
    const seconds = (performance.now() - t0) / 1000;
    const sent = (await lab.counters(C_SHARE)).tx_bytes - before.tx_bytes;
    for (const r of runs) expect(r.code, `${r.stderr}\nC share: ${cShare.stderr().slice(-1000)}`).toBe(0);
    for (const h of RECEIVERS) expect(sha256(path.join(work, `o3-${h}.bin`))).toBe(sha256(big));
    notes.push(`3 of our clients <- C share: ${seconds.toFixed(2)} s, the C share sent ${sent} B (${(sent / SIZE).toFixed(2)} x the file)`);
  }, 180_000);

  it('a C share and our share of the same tree on one link at once: a C client and ours both complete with -a', async () => {
    const root = path.join(work, 'mixed');
    mkdirSync(root);
    execFileSync('tar', ['--numeric-owner', '-xpf', vectorPath('share.tar'), '-C', root]);
    const tree = path.join(root, 'share');
    writeFileSync(path.join(tree, 'big.bin'), randomBytes(SIZE));
    // Both shares must publish the same objects, and a file's object carries its atime: pin every atime after
    // its mtime and in the past day, so that neither indexer's reading moves it (relatime).
    execFileSync('find', [tree, '-exec', 'touch', '-h', '-a', '-d', '-1 hour', '{}', '+']);
    ourShare = await startShare(lab, OUR_SHARE, [tree]);
    cShare = await startCShare(lab, C_SHARE, [tree]);
    const [ourBefore, cBefore] = [await lab.counters(OUR_SHARE), await lab.counters(C_SHARE)];
    const cDest = path.join(work, 'mixed-c');
    const ourDest = path.join(work, 'mixed-ours');
    mkdirSync(cDest);
    mkdirSync(ourDest);
    const [c, ours] = await Promise.all([
      runCSync(lab, RECEIVERS[0]!, ['-a', 'share', cDest], { batch: true }, 150_000),
      runSync(lab, RECEIVERS[1]!, ['-a', '--timeout', '30', 'share', ourDest], 150_000),
    ]);
    const ourSent = (await lab.counters(OUR_SHARE)).tx_bytes - ourBefore.tx_bytes;
    const cSent = (await lab.counters(C_SHARE)).tx_bytes - cBefore.tx_bytes;
    expect(c.code, describeRun(c)).toBe(0);
    expect(ours.code, ours.stderr).toBe(0);
    const want = treeListing(tree, { times: true, owners: true });
    expect(treeListing(path.join(cDest, 'share'), { times: true, owners: true })).toEqual(want);
    expect(treeListing(path.join(ourDest, 'share'), { times: true, owners: true })).toEqual(want);
    // Both shares answered: every group carried datagrams of both.
    expect(ourSent).toBeGreaterThan(SIZE / 2);
    expect(cSent).toBeGreaterThan(SIZE / 2);
    notes.push(`both shares on one link: our share sent ${ourSent} B, the C share ${cSent} B, for 2 receivers of ${SIZE} B + share.tar`);
  }, 180_000);
});
