/**
 * A temporary directory for one test file: made before its tests run, removed after them (also when they
 * fail). `dir()` is its path; `fresh(name)` makes a new subdirectory for one test.
 */
import { afterAll, beforeAll } from 'vitest';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface TempDir {
  dir(): string;
  fresh(name: string): Promise<string>;
}

/** `mode`: set on the directory (e.g. 0o755 so that another user can read inside). */
export function useTempDir(prefix: string, mode?: number): TempDir {
  let dir: string | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), prefix));
    if (mode !== undefined) chmodSync(dir, mode);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const get = (): string => {
    if (!dir) throw new Error('useTempDir: used outside a test');
    return dir;
  };
  return {
    dir: get,
    async fresh(name: string): Promise<string> {
      const d = path.join(get(), name);
      await mkdir(d);
      return d;
    },
  };
}
