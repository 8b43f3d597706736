/**
 * Status IPC cases that need root (src/core/ops/ipc.ts): a run directory owned by someone else is refused.
 * The rest of the status IPC, without root: test/status.test.ts.
 */
import { afterEach, beforeEach, describe, expect } from 'vitest';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { serveStatus } from '../src/core/ops/ipc.js';
import { isRoot } from './lab.js';
import { itUnless } from './skip.js';

let work: string;
beforeEach(() => {
  work = mkdtempSync(path.join(tmpdir(), 'lcsync-ipc-'));
});
afterEach(() => rmSync(work, { recursive: true, force: true }));

describe('status IPC (needs root)', () => {
  itUnless(isRoot ? undefined : 'needs root to chown', 'refuses a run directory owned by someone else', async () => {
    const dir = path.join(work, 'foreign');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    chownSync(dir, 65534, 65534);
    await expect(serveStatus(dir, () => ({}))).rejects.toMatchObject({ code: 'PERMISSION' });
  });
});
