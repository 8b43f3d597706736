/**
 * Leftover datagrams of tree objects already decoded (a share sends on until the receiver's leave
 * reaches it, longer on a loaded host) must not cost an object still being decoded its symbols.
 * Once such an object is no longer kept (kept.ts: 64 objects, 8 MiB; a tree of small files
 * decodes a directory's bundle of up to a MiB every few milliseconds), each of its leftovers opens
 * a decoder; the decoders are bounded (64, 32 MiB) and the oldest gave way first, which was the
 * bundle still arriving: its round's symbols were lost, and the few repair symbols asked for next
 * cannot make up for them, so the request times out and its directory's files are fetched one by
 * one while the bundle goes on being sent (one candidate for issue 13's ~3x first sync).
 */
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { hash } from '../src/core/model/hash.js';
import { encodeDatagram } from '../src/core/wire/packet.js';
import { ObjectEncoder } from '../src/core/fec/fec.js';
import { ObjectReceiver } from '../src/core/sync/receiver.js';
import { FakeNet } from './fakenet.js';

/** Source symbols `from`..`to` (exclusive) of tree object `obj`, as datagrams with an OTI. */
function symbols(obj: Buffer, from = 0, to?: number): Buffer[] {
  const enc = new ObjectEncoder(obj);
  const out: Buffer[] = [];
  for (let esi = from; esi < (to ?? enc.K); esi++) out.push(encodeDatagram({ oid: hash(obj), transferLength: obj.length, esi, symbol: enc.sourceSymbol(esi) }));
  return out;
}

/** 'decoded' when `p` has resolved by the time the datagrams emitted so far are handled, else 'pending'. */
async function settled(p: Promise<Buffer>): Promise<'decoded' | 'pending'> {
  return Promise.race([p.then(() => 'decoded' as const), new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);
}

describe('a tree object being decoded and the leftovers of objects decoded before it', () => {
  it('keeps the symbols it has while 150 decoded objects no longer kept send leftovers', async () => {
    const net = new FakeNet();
    const rx = new ObjectReceiver(net, { idleTimeoutMs: 60_000 });
    const pending: Promise<unknown>[] = [];
    try {
      const big = randomBytes(64 * 1024);
      const bigSymbols = symbols(big);
      const got = rx.fetchTree(randomBytes(32), (o) => o.equals(big));
      pending.push(got.catch(() => {}));
      // Half its round arrives, then the receiver is busy with other objects.
      const half = bigSymbols.length >> 1;
      for (const d of bigSymbols.slice(0, half)) net.emit(d);
      // 150 objects of two symbols each, asked for and decoded: more than are kept.
      const small = Array.from({ length: 150 }, () => randomBytes(2048));
      for (const o of small) {
        const p = rx.fetchTree(randomBytes(32), (x) => x.equals(o));
        for (const d of symbols(o)) net.emit(d);
        expect(await settled(p)).toBe('decoded');
      }
      // One leftover datagram of each: those no longer kept each open a decoder of their own.
      for (const o of small) net.emit(symbols(o, 0, 1)[0]!);
      expect(await settled(got)).toBe('pending');
      // The rest of the round: with the first half kept, the object decodes.
      for (const d of bigSymbols.slice(half)) net.emit(d);
      expect(await settled(got)).toBe('decoded');
      expect((await got).equals(big)).toBe(true);
    } finally {
      rx.close();
      await Promise.all(pending);
    }
  });
});
