/**
 * The C reference (Librecast lcsync 0.3.2: `lcshare` and `lcsync`) in lab namespaces, for the live
 * interoperability suite (test/interop/*.root.test.ts).
 *
 * The directory of the two C binaries comes from LCSYNC_C_REF (README: "Interoperability with the C lcsync");
 * without it every test of the suite is skipped with that reason. A directory that is set but lacks the binaries
 * fails the suite rather than skipping it, so that a typo cannot pass for a skip.
 *
 * The C tool in short (what these helpers rely on):
 *   lcshare [-v] (-b | --keyfile F) -i IF PATH...   serves PATHs under the names basename(PATH)[/rel/path];
 *                                                  -v prints "sharing N files" once it serves; ends on SIGINT
 *   lcsync [-v] [-a] (-b | --keyfile F) -i IF --remote NAME DEST
 *                                                  waits (forever) for NAME; -v ends with
 *                                                  "<B> bytes synced in <s>s": B counts the chunk bytes it fetched
 *   LCSYNC_PASSWORD in the environment (without -b and --keyfile) derives the key from a password on both.
 */
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import type { Lab } from '../lab.js';
import type { SkipReason } from '../skip.js';

/** Why the suite cannot run: LCSYNC_C_REF unset. */
export function crefReason(): SkipReason {
  const dir = process.env.LCSYNC_C_REF;
  if (dir === undefined || dir === '') {
    return 'LCSYNC_C_REF is not set (the directory of the C lcshare and lcsync 0.3.2; see README, Interoperability with the C lcsync)';
  }
  return undefined;
}

/** Path of a C binary; throws (failing the suite) when LCSYNC_C_REF does not hold it. */
export function cBin(name: 'lcshare' | 'lcsync'): string {
  const p = path.resolve(process.env.LCSYNC_C_REF ?? '', name);
  try {
    accessSync(p, constants.X_OK);
  } catch {
    throw new Error(`LCSYNC_C_REF is set but ${p} is not an executable: point it at the directory build.sh printed`);
  }
  return p;
}

/** How a C process gets its key: none (-b), a 128-byte key file, or a password (LCSYNC_PASSWORD). */
export type CKey = { batch: true } | { keyfile: string } | { password: string };

function keyArgs(key: CKey): string[] {
  if ('batch' in key) return ['-b'];
  if ('keyfile' in key) return ['--keyfile', key.keyfile];
  return [];
}

function keyEnv(key: CKey): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.LCSYNC_PASSWORD;
  if ('password' in key) env.LCSYNC_PASSWORD = key.password;
  return env;
}

export interface CShare {
  proc: ChildProcess;
  stderr: () => string;
  stop(): Promise<void>;
}

/** Start the C `lcshare -v` on a lab host and wait until it says it serves. */
export async function startCShare(lab: Lab, host: number, paths: string[], key: CKey = { batch: true }, startTimeoutMs = 60_000): Promise<CShare> {
  const proc = lab.spawn(host, [cBin('lcshare'), '-v', ...keyArgs(key), '-i', 'e0', ...paths], { env: keyEnv(key) });
  let err = '';
  proc.stderr?.on('data', (d) => (err += d));
  proc.stdout?.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`C lcshare did not start within ${startTimeoutMs / 1000} s: ${err}`)), startTimeoutMs);
    const poll = setInterval(() => {
      if (/sharing \d+ files/.test(err)) {
        clearTimeout(t);
        clearInterval(poll);
        resolve();
      }
    }, 50);
    proc.once('exit', (code, sig) => {
      clearTimeout(t);
      clearInterval(poll);
      reject(new Error(`C lcshare exited (${code ?? sig}): ${err}`));
    });
  });
  // Its MLD listener starts right after the message.
  await new Promise((r) => setTimeout(r, 300));
  return {
    proc,
    stderr: () => err,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
        proc.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        proc.kill('SIGINT');
      }),
  };
}

export interface CSyncRun {
  /** Exit status; null when a signal ended it (see signal) or it was killed at the time bound (timedOut). */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
  /** "<B> bytes synced" of -v: the bytes of the chunks it fetched. */
  bytesSynced?: number;
}

/**
 * Run the C `lcsync -v --remote NAME DEST` on a lab host. It has no timeout of its own, so the run is killed
 * (by PID) after timeoutMs.
 */
export function runCSync(lab: Lab, host: number, args: string[], key: CKey = { batch: true }, timeoutMs = 120_000): Promise<CSyncRun> {
  const proc = lab.spawn(host, [cBin('lcsync'), '-v', ...keyArgs(key), '-i', 'e0', '--remote', ...args], { env: keyEnv(key) });
  proc.stdin?.end();
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (err += d));
  return new Promise((resolve) => {
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, timeoutMs);
    proc.once('close', (code, signal) => {
      clearTimeout(t);
      const m = /(\d+) bytes synced in/.exec(err);
      resolve({ code, signal: timedOut ? null : signal, timedOut, stdout: out, stderr: err, bytesSynced: m ? Number(m[1]) : undefined });
    });
  });
}

/** One line for an assertion message: how a C run ended and what it said. */
export function describeRun(r: CSyncRun): string {
  return `C lcsync ${r.timedOut ? 'timed out' : r.signal ? `died of ${r.signal}` : `exited ${r.code}`}: ${r.stderr.trim().slice(-2000)}`;
}
