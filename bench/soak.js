#!/usr/bin/env node
/**
 * Soak: one share serving a tree that keeps changing, N receivers syncing it in a loop, for a bounded time.
 * Checks that the share's resident memory and open file descriptors stay flat, and that every receiver ends
 * with a byte-identical copy once the tree stops changing.
 *
 *   npm run build && node bench/soak.js [--minutes 10] [--receivers 3] [--sample 10] [--change 5] [--json]
 *
 * Needs root (network namespaces, scripts/lab.js) and nft. Host 0 runs `lcsync share` (following its files, no
 * tree cache, MLD query interval 5 s); hosts 1..N each run `lcsync sync -a --timeout 15 tree/ DEST` back to
 * back. Every --change seconds the tree changes: two files rewritten, one grown, one file created and, once
 * there are more than 8 created files, the oldest of them deleted, so the share re-indexes all the time and
 * receivers meet objects that vanish mid-sync (such a sync ends with exit 3 and the next one starts over).
 *
 * Every --sample seconds it reads the share's VmRSS and the number of entries in /proc/PID/fd. At the end
 * it compares the first and the last fifth of the samples (the first minute is warm-up and not counted):
 * "flat" means RSS grew by less than 25% and 24 MiB, and the descriptor count by at most 4. Then it stops the
 * changes, waits for the share to settle, runs one more sync per receiver and compares each copy with the
 * tree. Prints a summary (JSON with --json); exits 1 if not flat, a copy differs, or the share died.
 * Removes its namespaces and data at the end, also on Ctrl-C.
 */
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLab } from './lab.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = path.join(REPO, 'bin', 'run.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function opt(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`soak: --${name} wants a positive number`);
    process.exit(2);
  }
  return v;
}
const MINUTES = opt('minutes', 10);
const RECEIVERS = Math.min(8, Math.floor(opt('receivers', 3)));
const SAMPLE_S = opt('sample', 10);
const CHANGE_S = opt('change', 5);
const JSON_OUT = process.argv.includes('--json');
const WARMUP_MS = Math.min(60_000, (MINUTES * 60_000) / 5);

function listing(dir) {
  const out = [];
  const walk = (rel) => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const r = path.posix.join(rel, name);
      const p = path.join(dir, r);
      const st = lstatSync(p);
      let line = `${r} ${st.mode.toString(8)} ${Math.floor(st.mtimeMs)}`;
      if (st.isFile()) line += ` ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)}`;
      if (st.isSymbolicLink()) line += ` -> ${readlinkSync(p)}`;
      out.push(line);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

function procSample(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return { rssKiB: rss, fds };
  } catch {
    return undefined;
  }
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

async function main() {
  if (process.getuid?.() !== 0) {
    console.error('soak: needs root (network namespaces)');
    process.exit(2);
  }
  const work = mkdtempSync(path.join(os.tmpdir(), 'lcsync-soak-'));
  let lab;
  let stopping = false;
  const cleanup = async () => {
    stopping = true;
    await lab?.teardown();
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    void cleanup().then(() => process.exit(130));
  });
  try {
    const tree = path.join(work, 'tree');
    mkdirSync(path.join(tree, 'a', 'b'), { recursive: true });
    mkdirSync(path.join(tree, 'new'));
    for (let i = 0; i < 40; i++) writeFileSync(path.join(tree, i % 3 === 0 ? 'a' : i % 3 === 1 ? 'a/b' : '', `f${i}.bin`), randomBytes(4096 + i * 5000));
    writeFileSync(path.join(tree, 'big1.bin'), randomBytes(2 * 2 ** 20));
    writeFileSync(path.join(tree, 'a', 'big2.bin'), randomBytes(2 * 2 ** 20 + 99));
    const files = readdirSync(tree, { recursive: true }).map(String).filter((p) => p.endsWith('.bin'));

    lab = await createLab({ hosts: RECEIVERS + 1, snooping: true, bandwidth: '1gbit' });
    const rundir = path.join(work, 'run');
    mkdirSync(rundir);
    const share = lab.spawn(0, [process.execPath, CLI, 'share', '--json', '-i', 'e0', '--no-cache', '--rundir', rundir, '--query-interval', '5', tree]);
    let shareErr = '';
    let shareOut = '';
    share.stderr.on('data', (d) => (shareErr = (shareErr + d).slice(-20_000)));
    share.stdout.on('data', (d) => (shareOut = (shareOut + d).slice(-20_000)));
    for (let i = 0; i < 300 && !shareOut.includes('"roots"'); i++) await sleep(100);
    if (!shareOut.includes('"roots"')) throw new Error(`share did not start: ${shareErr}`);
    const pid = share.pid;
    await sleep(500);

    const started = Date.now();
    const deadline = started + MINUTES * 60_000;
    const samples = [];
    const outcomes = Array.from({ length: RECEIVERS }, () => ({ ok: 0, timeout: 0, other: 0, seconds: 0, lastError: '' }));
    let changes = 0;
    let created = 0;

    const sampler = (async () => {
      while (!stopping && Date.now() < deadline) {
        const s = procSample(pid);
        if (!s) break;
        samples.push({ t: (Date.now() - started) / 1000, ...s });
        await sleep(SAMPLE_S * 1000);
      }
    })();
    const changer = (async () => {
      const mine = [];
      while (!stopping && Date.now() < deadline) {
        await sleep(CHANGE_S * 1000);
        for (let k = 0; k < 2; k++) {
          const f = files[Math.floor(Math.random() * files.length)];
          writeFileSync(path.join(tree, f), randomBytes(4096 + Math.floor(Math.random() * 200_000)));
        }
        appendFileSync(path.join(tree, files[Math.floor(Math.random() * files.length)]), randomBytes(1000));
        const name = path.join(tree, 'new', `n${created++}.bin`);
        writeFileSync(name, randomBytes(10_000 + Math.floor(Math.random() * 100_000)));
        mine.push(name);
        if (mine.length > 8) unlinkSync(mine.shift());
        changes++;
      }
    })();
    const loops = Array.from({ length: RECEIVERS }, (_, r) =>
      (async () => {
        const dest = path.join(work, `dest${r + 1}`);
        while (!stopping && Date.now() < deadline) {
          const res = await lab.exec(r + 1, [process.execPath, CLI, 'sync', '--json', '-a', '-i', 'e0', '--timeout', '15', 'tree/', dest], { timeoutMs: 120_000 });
          const o = outcomes[r];
          if (res.code === 0) {
            o.ok++;
            try {
              o.seconds += JSON.parse(res.stdout).seconds;
            } catch {
              /* counted as ok anyway */
            }
          } else if (res.code === 3) o.timeout++;
          else {
            o.other++;
            o.lastError = `${res.code}: ${res.stderr.trim().split('\n').pop()}`;
          }
        }
      })(),
    );
    await Promise.all([sampler, changer, ...loops]);

    // Let the last change be indexed, then every receiver must end with an exact copy.
    await sleep(4000);
    const want = listing(tree);
    const final = [];
    for (let r = 0; r < RECEIVERS; r++) {
      const dest = path.join(work, `dest${r + 1}`);
      const res = await lab.exec(r + 1, [process.execPath, CLI, 'sync', '--json', '-a', '-i', 'e0', '--timeout', '20', 'tree/', dest], { timeoutMs: 120_000 });
      // Files deleted from the tree stay in a copy (sync does not delete): compare what the tree has.
      const got = new Set(listing(dest));
      final.push({ receiver: r + 1, code: res.code, identical: res.code === 0 && want.every((l) => got.has(l)) });
    }
    const alive = procSample(pid) !== undefined;
    const counted = samples.filter((s) => s.t * 1000 >= WARMUP_MS);
    const fifth = Math.max(1, Math.floor(counted.length / 5));
    const head = counted.slice(0, fifth);
    const tail = counted.slice(-fifth);
    const rssHead = mean(head.map((s) => s.rssKiB));
    const rssTail = mean(tail.map((s) => s.rssKiB));
    const fdHead = Math.max(...head.map((s) => s.fds));
    const fdTail = Math.max(...tail.map((s) => s.fds));
    const flat = counted.length >= 2 && rssTail < rssHead * 1.25 && rssTail - rssHead < 24 * 1024 && fdTail - fdHead <= 4;
    const summary = {
      minutes: MINUTES,
      receivers: RECEIVERS,
      changes,
      syncs: outcomes,
      samples: samples.length,
      rssKiB: { first: samples[0]?.rssKiB, min: Math.min(...samples.map((s) => s.rssKiB)), max: Math.max(...samples.map((s) => s.rssKiB)), last: samples.at(-1)?.rssKiB, headMean: Math.round(rssHead), tailMean: Math.round(rssTail) },
      fds: { first: samples[0]?.fds, min: Math.min(...samples.map((s) => s.fds)), max: Math.max(...samples.map((s) => s.fds)), last: samples.at(-1)?.fds },
      flat,
      shareAlive: alive,
      final,
    };
    if (JSON_OUT) console.log(JSON.stringify({ ...summary, series: samples }, null, 2));
    else {
      console.log(`soak: ${MINUTES} min, ${RECEIVERS} receivers, ${changes} tree changes`);
      for (const [i, o] of outcomes.entries()) {
        console.log(`  receiver ${i + 1}: ${o.ok} syncs ok (mean ${(o.seconds / Math.max(1, o.ok)).toFixed(2)} s), ${o.timeout} ended by a change (exit 3), ${o.other} other${o.lastError ? ` (last: ${o.lastError})` : ''}`);
      }
      console.log(`  share RSS KiB: first ${summary.rssKiB.first}, min ${summary.rssKiB.min}, max ${summary.rssKiB.max}, last ${summary.rssKiB.last}; mean of first/last fifth after warm-up ${summary.rssKiB.headMean} / ${summary.rssKiB.tailMean}`);
      console.log(`  share open fds: first ${summary.fds.first}, min ${summary.fds.min}, max ${summary.fds.max}, last ${summary.fds.last}`);
      console.log(`  series (s: RSS KiB / fds): ${samples.map((s) => `${Math.round(s.t)}:${s.rssKiB}/${s.fds}`).join(' ')}`);
      console.log(`  final syncs: ${final.map((f) => `r${f.receiver} exit ${f.code} ${f.identical ? 'identical' : 'DIFFERENT'}`).join(', ')}`);
      console.log(`  ${flat ? 'flat' : 'NOT FLAT'}; share ${alive ? 'alive' : 'DIED'}`);
    }
    const good = flat && alive && final.every((f) => f.identical);
    await cleanup();
    process.exit(good ? 0 : 1);
  } catch (err) {
    console.error(`soak: ${err?.message ?? err}`);
    await cleanup();
    process.exit(1);
  }
}

await main();
