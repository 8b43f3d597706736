/**
 * A run loads what it needs only (needs root: a real share and sync in a lab). A preload
 * (fixtures/loadlog.mjs, through NODE_OPTIONS) records every ES module and WebAssembly module each
 * process loads. Without a key neither side loads libsodium (about 14 MiB resident); on a clean
 * link of chunk-sized objects neither instantiates the raptorq wasm (a wasm instance and its compile: only objects
 * larger than the small-block code's K' need it); oclif loads the command that runs, no other; and neither uses
 * an ICU service (a collator or a locale format pages megabytes of ICU's data in).
 * With a key both load libsodium, so the recorder does see it.
 */
import { expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLab, skipReason, type Lab } from './lab.js';
import { describeUnless } from './skip.js';
import { useTempDir } from './tmpdir.js';
import { repo, runSync, sha256, startShare } from './e2e.js';

const why = skipReason();
const RAPTORQ_WASM_BYTES = statSync(createRequire(import.meta.url).resolve('raptorq/raptorq_bg.wasm')).size;

interface Loaded {
  modules: string[];
  wasmSizes: number[];
  intl: string[];
}

function readLog(file: string): Loaded {
  const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : [];
  return {
    modules: lines.filter((l) => l.startsWith('module ')).map((l) => l.slice(7)),
    wasmSizes: lines.filter((l) => l.startsWith('wasm ')).map((l) => Number(l.slice(5))),
    intl: lines.filter((l) => l.startsWith('intl ')).map((l) => l.slice(5)),
  };
}

/** Run `fn` with the load recorder on for processes it spawns, writing to `log`. */
async function recording<T>(log: string, fn: () => Promise<T>): Promise<T> {
  const saved = { NODE_OPTIONS: process.env.NODE_OPTIONS, LCSYNC_LOAD_LOG: process.env.LCSYNC_LOAD_LOG };
  // As a file URL in double quotes: NODE_OPTIONS splits on spaces, and the checkout's path may have some.
  process.env.NODE_OPTIONS = `${saved.NODE_OPTIONS ?? ''} --import "${pathToFileURL(path.join(repo, 'test', 'fixtures', 'loadlog.mjs')).href}"`.trim();
  process.env.LCSYNC_LOAD_LOG = log;
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

// The CLI runs from its bundle (scripts/bundle.js): each command is a file of its own in dist/bundle/commands/.
const commandsLoaded = (l: Loaded) => l.modules.filter((m) => /\/dist\/bundle\/commands\//.test(m)).map((m) => m.replace(/^.*\/dist\/bundle\/commands\//, ''));

describeUnless(why, 'lazy loading: a run loads what it needs only (needs root)', () => {
  const tmp = useTempDir('lcsync-lazy-');

  it('without a key: no libsodium, no raptorq wasm on a clean link, only the command run; with a key: libsodium', async () => {
    const lab: Lab = await createLab({ hosts: 2, snooping: true });
    try {
      const dir = tmp.dir();
      const src = path.join(dir, 'data.bin');
      writeFileSync(src, randomBytes(4 * 1024 * 1024 + 12345));
      const shareLog = path.join(dir, 'share.log');
      const syncLog = path.join(dir, 'sync.log');
      const share = await recording(shareLog, () => startShare(lab, 0, [src], ['-b']));
      try {
        const dest = path.join(dir, 'out.bin');
        const r = await recording(syncLog, () => runSync(lab, 1, ['-b', share.roots[0]!.hash, dest]));
        expect(r.code, r.stderr).toBe(0);
        expect(sha256(dest)).toBe(sha256(src));
      } finally {
        await share.stop();
      }
      for (const [who, log, command] of [['share', shareLog, 'share.js'], ['sync', syncLog, 'sync.js']] as const) {
        const l = readLog(log);
        expect(l.modules.length, `${who}: the recorder saw nothing`).toBeGreaterThan(10);
        expect(l.modules.filter((m) => /libsodium/.test(m)), who).toEqual([]);
        expect(l.wasmSizes.filter((n) => n === RAPTORQ_WASM_BYTES), `${who} instantiated the raptorq wasm`).toEqual([]);
        expect(commandsLoaded(l), who).toEqual([command]);
        // No ICU service (oclif's command sort made a collator: 2.4 MiB of RSS, see scripts/bundle.js).
        expect(l.intl, `${who} used ICU`).toEqual([]);
      }

      // With a key both sides need libsodium, and the recorder sees it.
      const keyfile = path.join(dir, 'key');
      writeFileSync(keyfile, randomBytes(128));
      const shareKeyLog = path.join(dir, 'share-key.log');
      const syncKeyLog = path.join(dir, 'sync-key.log');
      const keyed = await recording(shareKeyLog, () => startShare(lab, 0, [src], ['--keyfile', keyfile]));
      try {
        const dest = path.join(dir, 'out-key.bin');
        const r = await recording(syncKeyLog, () => runSync(lab, 1, ['--keyfile', keyfile, keyed.roots[0]!.hash, dest]));
        expect(r.code, r.stderr).toBe(0);
        expect(sha256(dest)).toBe(sha256(src));
      } finally {
        await keyed.stop();
      }
      for (const log of [shareKeyLog, syncKeyLog]) expect(readLog(log).modules.some((m) => /libsodium/.test(m))).toBe(true);
    } finally {
      await lab.teardown();
    }
  }, 180_000);
});
