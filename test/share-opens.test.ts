/**
 * A receiver's report names many groups at once. The share opens their streams (reads and checks
 * each chunk) from its send loop, a few between two batches, not all in the turn the report came
 * in: otherwise it sends nothing for the length of the report's reads, and the link runs dry
 * (share.ts OPENS_PER_BATCH). Every join is still served, in walk order, and a group left before
 * its stream was opened is never read. Consecutive chunks of the file opened together are read together.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Share } from '../src/core/share/share.js';
import { ChunkFiles } from '../src/core/share/chunkfiles.js';
import { ShareIndex, type IndexObject } from '../src/core/index/mdex.js';
import { decodeDatagram } from '../src/core/wire/packet.js';
import type { DatagramSink } from '../src/core/net/datagram.js';
import { FakeListeners } from './fakelisteners.js';
import { sleep, until } from './until.js';

const CHUNKS = 64;

/** Keeps each batch's first datagram's OID and how many streams the share had opened when it was handed over. */
class RecordingSink implements DatagramSink {
  readonly batches: { oids: string[]; opened: number }[] = [];
  constructor(private readonly opened: () => number) {}
  async sendBatch(items: readonly { group: string; payload: Buffer }[]): Promise<void> {
    this.batches.push({ oids: items.map((i) => decodeDatagram(i.payload)!.oid.toString('hex')), opened: this.opened() });
  }
  async close(): Promise<void> {}
}

describe('Share: streams for a report of many joins are opened between batches', () => {
  let dir: string;
  let index: ShareIndex;
  let chunks: Extract<IndexObject, { kind: 'chunk' }>[];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lcsync-opens-'));
    const file = path.join(dir, 'file.bin');
    // Random: every chunk distinct, so each is an object (and a group) of its own.
    writeFileSync(file, randomBytes(CHUNKS * 32768));
    index = await ShareIndex.build([file]);
    chunks = [...index.hashes()]
      .map((h) => index.get(h)!)
      .filter((o): o is Extract<IndexObject, { kind: 'chunk' }> => o.kind === 'chunk')
      .sort((a, b) => a.offset - b.offset);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads none in the report turn, sends the first before the last is read, and serves every join', async () => {
    const listeners = new FakeListeners();
    const runSpy = vi.spyOn(ChunkFiles.prototype, 'readRun');
    const readSpy = vi.spyOn(ChunkFiles.prototype, 'read');
    let share: Share | undefined;
    const sink = new RecordingSink(() => share!.status().streamsStarted);
    share = await Share.start(index, { ifnames: ['f0'], openSink: async () => sink, listeners });
    try {
      expect(chunks.length).toBe(CHUNKS);
      // One report: every chunk at once, and one more chunk joined and left again in the same turn.
      const leftAgain = chunks[CHUNKS - 1]!;
      for (const c of chunks.slice(0, CHUNKS - 1)) listeners.report('join', c.hash, 'fe80::1');
      listeners.report('join', leftAgain.hash, 'fe80::1');
      listeners.report('leave', leftAgain.hash, 'fe80::1');
      expect(share.status().streamsStarted).toBe(0);

      const served = () => new Set(sink.batches.flatMap((b) => b.oids));
      await until(() => served().size >= CHUNKS - 1);
      // Data went out while most of the streams were still to be opened.
      expect(sink.batches[0]!.opened).toBeLessThan(CHUNKS / 4);
      for (const c of chunks.slice(0, CHUNKS - 1)) expect(served().has(c.hash.toString('hex'))).toBe(true);
      // The group left before its turn came was never opened (so never read) nor sent.
      await sleep(100);
      expect(served().has(leftAgain.hash.toString('hex'))).toBe(false);
      expect(share.status().streamsStarted).toBe(CHUNKS - 1);
      // Consecutive chunks opened together were read together: far fewer reads than chunks.
      expect(runSpy.mock.calls.length).toBeGreaterThan(0);
      expect(runSpy.mock.calls.length + readSpy.mock.calls.length).toBeLessThan(CHUNKS / 2);
    } finally {
      runSpy.mockRestore();
      readSpy.mockRestore();
      await share.stop();
    }
  });
});
