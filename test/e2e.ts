/**
 * Helpers for end-to-end tests: run the real CLI (bin/run.js against dist/)
 * inside lab namespaces. The file system is shared between namespaces, so
 * shares and receivers use directories under one temporary folder.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from './lab.js';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const cli = path.join(repo, 'bin', 'run.js');

export interface RunningShare {
  proc: ChildProcess;
  roots: { hash: string; shareName: string; type: string; path: string }[];
  stderr: () => string;
  stop(): Promise<number | null>;
}

/** Start `lcsync share --json` on a lab host and wait for its root document. */
export async function startShare(lab: Lab, host: number, paths: string[], extra: string[] = [], startTimeoutMs = 30_000, env?: NodeJS.ProcessEnv): Promise<RunningShare> {
  // No on-disk cache and a private run directory: tests leave nothing in /var/cache or /run.
  const rundir = mkdtempSync(path.join(tmpdir(), 'lcsync-run-'));
  const defaults = [...(extra.includes('--no-cache') || extra.includes('--cache') ? [] : ['--no-cache']), ...(extra.includes('--rundir') ? [] : ['--rundir', rundir])];
  const proc = lab.spawn(host, [process.execPath, cli, 'share', '--json', '-i', 'e0', '--query-interval', '2', ...defaults, ...extra, ...paths], env ? { env: { ...process.env, ...env } } : undefined);
  proc.once('exit', () => rmSync(rundir, { recursive: true, force: true }));
  let out = '';
  let err = '';
  proc.stderr?.on('data', (d) => (err += d));
  const doc = await new Promise<{ roots: RunningShare['roots'] }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`share did not start within ${startTimeoutMs / 1000} s: ${err}`)), startTimeoutMs);
    proc.stdout?.on('data', (d) => {
      out += d;
      try {
        const parsed = JSON.parse(out);
        clearTimeout(t);
        resolve(parsed);
      } catch {
        /* not complete yet */
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`share exited with ${code}: ${err}`));
    });
  });
  // Give the MLD watcher a moment to join ff02::16 before receivers start.
  await new Promise((r) => setTimeout(r, 300));
  return {
    proc,
    roots: doc.roots,
    stderr: () => err,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
        const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
        proc.once('exit', (code) => {
          clearTimeout(t);
          resolve(code);
        });
        proc.kill('SIGTERM');
      }),
  };
}

export interface SyncRun {
  code: number;
  stdout: string;
  stderr: string;
  summary?: Record<string, any>;
}

/** Run `lcsync sync --json` on a lab host. */
export async function runSync(lab: Lab, host: number, args: string[], timeoutMs = 120_000): Promise<SyncRun> {
  const timeout = args.includes('--timeout') ? [] : ['--timeout', '20'];
  // No local tree cache unless asked for: tests leave nothing in /var/cache (test/tree-sync.root.test.ts tests it).
  const cache = args.includes('--cache') || args.includes('--no-cache') ? [] : ['--no-cache'];
  const r = await lab.exec(host, [process.execPath, cli, 'sync', '--json', '-i', 'e0', ...timeout, ...cache, ...args], { timeoutMs });
  let summary: Record<string, any> | undefined;
  try {
    summary = JSON.parse(r.stdout);
  } catch {
    summary = undefined;
  }
  return { ...r, summary };
}

/** A comparable listing of a tree: path, type, mode, size, content hash, link target, mtime (ns). */
export function treeListing(dir: string, opts: { times?: boolean; owners?: boolean } = {}): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(dir, rel)).sort()) {
      const r = path.posix.join(rel, name);
      const p = path.join(dir, r);
      const st = lstatSync(p, { bigint: true });
      let line = `${r} ${st.mode.toString(8)}`;
      if (st.isFile()) line += ` ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)}`;
      if (st.isSymbolicLink()) line += ` -> ${readlinkSync(p)}`;
      if (opts.owners) line += ` ${st.uid}:${st.gid}`;
      if (opts.times && !st.isSymbolicLink()) line += ` ${st.mtimeNs}`;
      out.push(line);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

export function sha256(p: string): string {
  return createHash('sha256').update(readFileSync(p)).digest('hex');
}

/**
 * Tests that run dist/ modules inside lab hosts need them built from the current sources: `npm test`
 * builds first. Fails with how to fix it rather than rebuilding, which would rewrite dist/ under
 * test files running in parallel.
 */
export function expectBuilt(modules: string[]) /* paths under src/core without extension, e.g. net/pacer */: void {
  for (const m of modules) {
    const js = path.join(repo, `dist/core/${m}.js`);
    const ts = path.join(repo, `src/core/${m}.ts`);
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs) {
      throw new Error(`dist/core/${m}.js is missing or older than its source: run npm run build`);
    }
  }
}
