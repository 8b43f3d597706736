/**
 * A silent stream lends its chunk buffer back (share.ts, Outgoing.lend): what a receiver that asks
 * again gets is read anew, correct, with fresh repair ESIs, and a chunk that changed meanwhile is
 * not sent at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { roundSize, repairRoundSize } from '../src/core/share/stream.js';
import { Share } from '../src/core/share/share.js';
import { ShareIndex, type IndexObject } from '../src/core/index/mdex.js';
import { decodeDatagram } from '../src/core/wire/packet.js';
import type { DatagramSink } from '../src/core/net/datagram.js';
import { ObjectDecoder } from '../src/core/fec/fec.js';
import { hash } from '../src/core/model/hash.js';
import { FakeListeners } from './fakelisteners.js';
import { sleep, until } from './until.js';

class FakeSink implements DatagramSink {
  readonly sent: { group: string; payload: Buffer }[] = [];
  async sendBatch(items: readonly { group: string; payload: Buffer }[]): Promise<void> {
    // The share reuses its batch buffer once this resolves: keep copies.
    for (const i of items) this.sent.push({ group: i.group, payload: Buffer.from(i.payload) });
  }
  async close(): Promise<void> {}
}

describe('Share: a silent stream lends its chunk buffer back', () => {
  let dir: string;
  let file: string;
  let index: ShareIndex;
  const content = Buffer.alloc(3 * 32768);
  for (let i = 0; i < content.length; i++) content[i] = (i * 13 + (i >> 10)) & 0xff;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lcsync-lend-'));
    file = path.join(dir, 'file.bin');
    writeFileSync(file, content);
    index = await ShareIndex.build([file]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the chunk again for a re-ask: the repair round decodes with fresh ESIs; a chunk changed meanwhile is not sent', async () => {
    const sink = new FakeSink();
    const listeners = new FakeListeners();
    const share = await Share.start(index, { ifnames: ['f0'], openSink: async () => sink, listeners });
    const stale: IndexObject[] = [];
    share.on('stale', (o: IndexObject) => stale.push(o));
    const lent = () => share.status().streams.length === 1 && (share as unknown as { scheduler: { items(): { isLent: boolean }[] } }).scheduler.items()[0]!.isLent;
    const pooled = () => (share as unknown as { chunkBuffers: { size: number } }).chunkBuffers.size;
    try {
      const chunk = [...index.hashes()].map((h) => index.get(h)!).find((o): o is Extract<IndexObject, { kind: 'chunk' }> => o.kind === 'chunk' && o.offset === 32768)!;
      listeners.report('join', chunk.hash, 'fe80::1');
      await until(() => sink.sent.length >= roundSize(32));
      // The last listener parts: the stream is silent and its buffer goes back to the pool.
      listeners.report('part', chunk.hash, 'fe80::1');
      await until(() => lent() && pooled() === 1, 1000);
      const before = sink.sent.length;
      await sleep(100);
      expect(sink.sent.length).toBe(before);

      // It asks again (a re-join soon after the part): a repair round, from the chunk read anew.
      listeners.report('join', chunk.hash, 'fe80::1');
      await until(() => sink.sent.length >= before + repairRoundSize(32));
      expect(lent()).toBe(false);
      const got = sink.sent.map((s) => decodeDatagram(s.payload)!);
      for (const d of got) expect(d.oid.equals(chunk.hash)).toBe(true);
      const repairs = got.filter((d) => d.esi >= 32).map((d) => d.esi);
      expect(got.slice(before).every((d) => d.esi >= 32)).toBe(true);
      // Fresh ESIs: a C receiver drops a repeated one.
      expect(new Set(repairs).size).toBe(repairs.length);
      // Without four of its source symbols the chunk decodes from the rest and the repair symbols sent after the reload alone.
      const dec = new ObjectDecoder(chunk.length);
      let out: Buffer | undefined;
      const lost = new Set([0, 5, 17, 31]);
      for (const d of [...got.slice(0, before).filter((x) => x.esi < 32 && !lost.has(x.esi)), ...got.slice(before)]) out ??= dec.add(d.esi, d.symbol);
      dec.free();
      expect(out && hash(out).equals(chunk.hash)).toBe(true);

      // Silent again, then the file changes under the lent stream: a re-ask finds it stale and nothing goes out.
      await until(() => sink.sent.length >= before + repairRoundSize(32) + 1);
      listeners.report('part', chunk.hash, 'fe80::1');
      await until(() => lent(), 1000);
      const changed = Buffer.from(content);
      changed[32768 + 100] ^= 0xff;
      writeFileSync(file, changed);
      const atChange = sink.sent.length;
      listeners.report('join', chunk.hash, 'fe80::1');
      await until(() => stale.length > 0, 2000);
      await sleep(150);
      expect(sink.sent.length).toBe(atChange);
      expect(stale[0]!.hash.equals(chunk.hash)).toBe(true);
      expect(share.status().streams).toEqual([]);
    } finally {
      await share.stop();
      writeFileSync(file, content);
    }
  });
});
