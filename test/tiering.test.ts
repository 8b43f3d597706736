/**
 * base/tiering.ts: a share (and a sync's receiver session) lets V8 optimize a function only after LATE_TIERING_FACTOR times the
 * default budget. Observed from outside, in a child node with natives syntax: a small loop
 * function called 100 times is marked for optimization (or optimized) with V8's default, and not
 * after tierUpLate(); it still is after many more calls (later, not never). A receiver's session also
 * calls baselineOnly(): there the function never reaches TurboFan, only V8's baseline code.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const TIERING = pathToFileURL(path.resolve(import.meta.dirname, '..', 'dist', 'core', 'base', 'tiering.js')).href;
const SESSION = pathToFileURL(path.resolve(import.meta.dirname, '..', 'dist', 'core', 'sync', 'session.js')).href;
/**
 * Open (and close) a receiver's session on a channel that receives nothing, as `lcsync sync` starts one: with a
 * chunk assembly below JavaScript (as with the addon), or (`jsPath`) with every datagram coming through JavaScript.
 */
const openSyncSession = (jsPath = false): string => [
  `const assembly = { register: () => 1, unregister() {}, onAssembled: () => () => {} };`,
  `const channel = { join() {}, leave() {}, rejoin() {}, onDatagram() {}, close: () => Promise.resolve()${jsPath ? '' : ', assembly'} };`,
  `const { SyncSession } = await import(${JSON.stringify(SESSION)});`,
  `const session = await SyncSession.open({ channel, ifnames: ['fake0'], flags: { recursive: false, perms: false, owner: false, group: false, times: false } });`,
  `await session.close();`,
].join('\n');
const OPEN_SYNC_SESSION = openSyncSession();
const RECEIVER = pathToFileURL(path.resolve(import.meta.dirname, '..', 'dist', 'core', 'sync', 'receiver.js')).href;
/**
 * A receiver (baseline only, as `lcsync sync` runs) with a fake assembly, that has fetched `n` chunks; `report`
 * then tells it what the assembler did with them.
 */
const receiverWithChunks = (n: number): string[] => [
  `const t = await import(${JSON.stringify(TIERING)}); t.tierUpLate(); t.baselineOnly();`,
  `let report; let id = 0;`,
  `const assembly = { register: () => ++id, unregister() {}, spare: () => 16, onAssembled: (cb) => ((report = cb), () => {}) };`,
  `const source = { onDatagram() {}, join() {}, leave() {}, rejoin() {}, close: async () => {}, assembly };`,
  `const { ObjectReceiver } = await import(${JSON.stringify(RECEIVER)});`,
  `const rx = new ObjectReceiver(source, { stallMs: 60000, firstSymbolMs: 60000 });`,
  `const done = [];`,
  // Those never completed fail when the receiver closes.
  `for (let i = 0; i < ${n}; i++) { const leaf = Buffer.alloc(32); leaf.writeUInt32BE(i); done.push(rx.fetchChunk(leaf, 32768).catch(() => undefined)); }`,
];
/** `n` [kind, id] events of one kind for chunks 1..n. */
const eventsOf = (n: number, kind: number): string =>
  `const events = new Uint32Array(${n} * 2); for (let i = 0; i < ${n}; i++) { events[2 * i] = ${kind}; events[2 * i + 1] = i + 1; }`;
/** ... whose `n` chunks the assembler completed below JavaScript. */
const receiveChunks = (n: number): string =>
  [
    ...receiverWithChunks(n),
    eventsOf(n, 1),
    `report({ datagrams: 0, bytes: 0, dropped: 0, progressed: new Uint32Array(0), events, decodes: [] });`,
    `await Promise.all(done); rx.close();`,
  ].join('\n');
/**
 * ... whose `n` chunks the assembler handed over for decoding here, each with `repairs` repair symbols (zeros:
 * nothing decodes, the arithmetic runs all the same).
 */
const decodeChunks = (n: number, repairs: number): string =>
  [
    ...receiverWithChunks(n),
    eventsOf(n, 3),
    `const decodes = Array.from({ length: ${n} }, () => [new Uint32Array(0), Uint32Array.from({ length: ${repairs} }, (_, k) => 32 + k), Buffer.alloc(${repairs} * 1024), 1024]);`,
    `report({ datagrams: 0, bytes: 0, dropped: 0, progressed: new Uint32Array(0), events, decodes });`,
    `rx.close(); await Promise.all(done);`,
  ].join('\n');
/** %GetOptimizationStatus bits: optimized, TurboFan code, marked for (concurrent) optimization, being optimized. */
const TIERED = (1 << 4) | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 10);
/** %GetOptimizationStatus bit: the function runs V8's baseline (Sparkplug) code. */
const BASELINE = 1 << 15;

/** Whether V8 has tiered up a hot function after `calls` calls, with tierUpLate() called first or not. */
function tieredAfter(calls: number, late: boolean | 'sync session' | 'sync session, JS path' | { chunks: number } | { decoded: number; repairs: number }, env: NodeJS.ProcessEnv = {}): { tiered: boolean; baseline: boolean; set: boolean } {
  const script = [
    `let set = false;`,
    late === true ? `set = (await import(${JSON.stringify(TIERING)})).tierUpLate();` : '',
    late === 'sync session' ? OPEN_SYNC_SESSION : '',
    late === 'sync session, JS path' ? openSyncSession(true) : '',
    typeof late === 'object' ? ('chunks' in late ? receiveChunks(late.chunks) : decodeChunks(late.decoded, late.repairs)) : '',
    `function hot(n) { let s = 0; for (let i = 0; i < n; i++) s = (s + i * 7) | 0; return s; }`,
    `for (let k = 0; k < ${calls}; k++) hot(100);`,
    `process.stdout.write(JSON.stringify({ status: %GetOptimizationStatus(hot), set }));`,
  ].join('\n');
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, LCSYNC_DEFAULT_TIERING: '', ...env },
  });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout) as { status: number; set: boolean };
  return { tiered: (out.status & TIERED) !== 0, baseline: (out.status & BASELINE) !== 0, set: out.set };
}

describe('late tiering (a share)', () => {
  it('with V8 defaults, 100 calls are enough to tier a hot function up (the probe works)', () => {
    expect(tieredAfter(100, false).tiered).toBe(true);
  });

  it('after tierUpLate(), 100 calls are not', () => {
    const r = tieredAfter(100, true);
    expect(r.set).toBe(true);
    expect(r.tiered).toBe(false);
  });

  it('a function that stays hot is still optimized, later', () => {
    expect(tieredAfter(20_000, true).tiered).toBe(true);
  });

  it('LCSYNC_DEFAULT_TIERING=1 keeps the default', () => {
    const r = tieredAfter(100, true, { LCSYNC_DEFAULT_TIERING: '1' });
    expect(r.set).toBe(false);
    expect(r.tiered).toBe(true);
  });
});

describe('late tiering, and no TurboFan (a receiver)', () => {
  it('opening a sync session raises the budget too: 100 calls no longer tier a hot function up', () => {
    expect(tieredAfter(100, 'sync session').tiered).toBe(false);
  });

  it('and keeps TurboFan out altogether: a function that stays hot runs baseline code, never optimized', () => {
    const r = tieredAfter(200_000, 'sync session');
    expect(r.tiered).toBe(false);
    expect(r.baseline).toBe(true);
  });

  it('unless every datagram comes through JavaScript (encrypted, or no addon): then it is optimized, late', () => {
    expect(tieredAfter(100, 'sync session, JS path').tiered).toBe(false);
    expect(tieredAfter(200_000, 'sync session, JS path').tiered).toBe(true);
  });

  it('and a long transfer lets TurboFan in after 4,096 chunks (128 MiB), not before', () => {
    expect(tieredAfter(200_000, { chunks: 4095 }).tiered).toBe(false);
    expect(tieredAfter(200_000, { chunks: 4096 }).tiered).toBe(true);
  });

  it('and chunks decoded here let it in after 4,096 repair symbols, not at the first (light loss stays baseline)', () => {
    expect(tieredAfter(200_000, { decoded: 1023, repairs: 4 }).tiered).toBe(false);
    expect(tieredAfter(200_000, { decoded: 1024, repairs: 4 }).tiered).toBe(true);
  });

  it('while a share (tierUpLate alone) optimizes that function', () => {
    expect(tieredAfter(200_000, true).tiered).toBe(true);
  });

  it('but not with LCSYNC_DEFAULT_TIERING=1', () => {
    expect(tieredAfter(100, 'sync session', { LCSYNC_DEFAULT_TIERING: '1' }).tiered).toBe(true);
    expect(tieredAfter(200_000, 'sync session', { LCSYNC_DEFAULT_TIERING: '1' }).tiered).toBe(true);
  });
});
