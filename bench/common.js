/** What the benchmark scripts share: paths, integer options, random data files, medians. */
import { randomFillSync } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLab } from './lab.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = path.join(REPO, 'dist', 'core');

/** `--name N` from the command line, a positive integer, else `def`; `tool` names the script in errors. */
export function option(tool, name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`${tool}: --${name} wants a positive integer`);
    process.exit(2);
  }
  return v;
}

/** Write `size` bytes of pseudo-random data to `file`, in 16 MiB blocks. */
export function writeRandomFile(file, size) {
  const fd = openSync(file, 'w');
  const block = Buffer.allocUnsafe(16 * 2 ** 20);
  try {
    for (let off = 0; off < size; off += block.length) {
      const n = Math.min(block.length, size - off);
      randomFillSync(block, 0, n);
      writeSync(fd, block, 0, n);
    }
  } finally {
    closeSync(fd);
  }
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The command line of a lab benchmark: `--name value` options (listed in `valued`) and bare `--flag`s
 * (listed in `flags`); anything else is refused. `--help` prints the lines `helpLines` of the script's own
 * header comment. Errors print `<tool>: <message>` and exit 2 (3 for a missing precondition).
 */
export function benchArgs(tool, scriptUrl, { valued = [], flags = [], helpLines = [2, 7] } = {}) {
  const fail = (msg, code = 2) => {
    console.error(`${tool}: ${msg}`);
    process.exit(code);
  };
  const known = new Set([...valued, ...flags, '--help']);
  for (const [i, a] of process.argv.slice(2).entries()) {
    const prev = process.argv[i + 1];
    if (a.startsWith('--') && !known.has(a)) fail(`unknown option ${a}`);
    if (!a.startsWith('--') && !(prev && valued.includes(prev))) fail(`unexpected argument ${a}`);
  }
  if (process.argv.includes('--help')) {
    const text = readFileSync(fileURLToPath(scriptUrl), 'utf8').split('\n').slice(...helpLines);
    console.log(text.map((l) => l.replace(/^ \*\s?/, '')).join('\n'));
    process.exit(0);
  }
  const value = (name) => {
    const i = process.argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = process.argv[i + 1];
    if (v === undefined || v.startsWith('--')) fail(`--${name} wants a value`);
    return v;
  };
  const intList = (name, def, min, max) => {
    const v = value(name);
    if (v === undefined) return def;
    const xs = v.split(',').map(Number);
    if (xs.some((x) => !Number.isInteger(x) || x < min || x > max)) fail(`--${name} wants integers ${min}..${max}, comma-separated`);
    return xs;
  };
  const flag = (name) => process.argv.includes(`--${name}`);
  /** Exit 3 unless each [binary, args, Debian package] runs. */
  const need = (tools) => {
    for (const [bin, args, pkg] of tools) {
      if (spawnSync(bin, args, { stdio: 'ignore', timeout: 5000 }).error) fail(`\`${bin}\` not found (Debian: apt-get install ${pkg})`, 3);
    }
  };
  return { fail, value, intList, flag, need };
}

export const TIME = '/usr/bin/time';

/** Wrap a command so that /usr/bin/time writes "<user s> <system s> <peak RSS KiB>" to `file`. */
export const timed = (file, argv) => [TIME, '-f', '%U %S %M', '-o', file, ...argv];

/** { rss (KiB), cpu (s) } from a `timed` report: its last line (earlier lines note a non-zero exit). */
export function timeReport(file) {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const [u, sys, m] = lines[lines.length - 1].split(' ').map(Number);
    return { rss: Number.isInteger(m) && m > 0 ? m : NaN, cpu: u + sys };
  } catch {
    return { rss: NaN, cpu: NaN };
  }
}

/** Sender bytes: wait until tx_bytes of host 0 stops growing (< 16 KiB per 250 ms), at most 5 s. */
export async function settledTx(lab) {
  let last = await lab.txBytes(0);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = await lab.txBytes(0);
    if (now - last < 16 * 1024) return now;
    last = now;
  }
  return last;
}

/** The end of a long text (a log), for error messages. */
export const tail = (s, n = 1500) => (s.length > n ? `...${s.slice(-n)}` : s).trim();

/**
 * A benchmark's work area under /var/tmp (or $BENCH_WORKDIR: put it on tmpfs, /dev/shm, to take this disk's
 * slow file creation after recent deletions out of a run) and the one lab alive at a time, both removed by `cleanup()`, which
 * also runs on SIGINT/SIGTERM (exit 130). `withLab(receivers, loss, bandwidth, fn)` builds a fresh lab of
 * receivers + 1 hosts (host 0 sends; MLD snooping; tbf at `bandwidth`, none if undefined; ULA addresses) with
 * random loss on every receiver's port, runs fn(lab), and tears it down.
 */
export function benchSession(tool) {
  const work = mkdtempSync(path.join(process.env.BENCH_WORKDIR || '/var/tmp', `lcsync-${tool}-`));
  let current;
  let cleaning;
  const cleanup = () => {
    cleaning ??= (async () => {
      await current?.teardown();
      rmSync(work, { recursive: true, force: true });
    })();
    return cleaning;
  };
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
      process.stderr.write(`\n${tool}: ${sig}, cleaning up\n`);
      cleanup().finally(() => process.exit(130));
    });
  }
  const withLab = async (receivers, loss, bandwidth, fn) => {
    // ula: a routable source address on every host, which uftp (-I) and an rsync daemon bind to.
    const lab = await createLab({ hosts: receivers + 1, snooping: true, bandwidth, ula: true });
    current = lab;
    try {
      for (let h = 1; h <= receivers; h++) if (loss > 0) await lab.setLoss(h, loss);
      return await fn(lab);
    } finally {
      await lab.teardown();
      current = undefined;
    }
  };
  return { work, withLab, cleanup };
}

/**
 * The root our share prints ("<hash>  <name>") once it has indexed and serves, 300 ms later: its MLD watcher
 * joins ff02::16 meanwhile, before receivers start (as test/e2e.ts does). `stderr` gives its log for errors.
 */
export async function servingRoot(share, stderr, timeoutMs = 120_000) {
  let out = '';
  const hash = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`share printed no root within ${timeoutMs / 1000} s: ${tail(stderr())}`)), timeoutMs);
    share.stdout.on('data', (d) => {
      out += d;
      const m = /^([0-9a-f]{64})\s+\S/m.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    share.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`share exited with ${code}: ${tail(stderr())}`));
    });
  });
  await new Promise((r) => setTimeout(r, 300));
  return hash;
}
