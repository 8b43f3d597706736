/**
 * The --exec hook: a shell command run after a sync that changed something, with the changed
 * paths on its standard input. What it does and how it ends is its own business: its result is
 * reported, never thrown, so a failing hook changes neither the mirror nor the sync's outcome.
 */
import { spawn } from 'node:child_process';
import { nameToBytes } from '../base/names.js';

export interface HookResult {
  command: string;
  /** Paths handed to it. */
  paths: number;
  /** Its exit status, or null when a signal ended it (or it never ran). */
  exitCode: number | null;
  signal: string | null;
  /** Why it could not run at all (sh missing, spawn refused). */
  error?: string;
}

/** What the hook reads: each path's exact bytes (names.ts), newline- or NUL-terminated. */
export function hookInput(paths: readonly string[], nul: boolean): Buffer {
  const end = Buffer.from(nul ? '\0' : '\n');
  return Buffer.concat(paths.flatMap((p) => [nameToBytes(p), end]));
}

/**
 * Run `command` through `sh -c` in `cwd` with `paths` on stdin; both its stdout and its stderr go
 * to lcsync's stderr (lcsync's stdout is its own: the --json summary). A hook that does not read
 * its input is fine (EPIPE is ignored).
 */
export function runHook(command: string, paths: readonly string[], opts: { nul: boolean; cwd?: string }): Promise<HookResult> {
  return new Promise((resolve) => {
    const base = { command, paths: paths.length };
    let child;
    try {
      child = spawn('/bin/sh', ['-c', command], { cwd: opts.cwd, stdio: ['pipe', process.stderr.fd, 'inherit'] });
    } catch (e) {
      resolve({ ...base, exitCode: null, signal: null, error: (e as Error).message });
      return;
    }
    let spawnError: string | undefined;
    child.on('error', (e) => (spawnError = e.message));
    const stdin = child.stdin!; // asked for as a pipe
    stdin.on('error', () => undefined);
    child.on('close', (code, signal) => resolve({ ...base, exitCode: spawnError ? null : code, signal, ...(spawnError ? { error: spawnError } : {}) }));
    stdin.end(hookInput(paths, opts.nul));
  });
}
