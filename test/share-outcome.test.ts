/**
 * How a round's listeners came out of its hold, as the share tells `--bwlimit auto` (share.ts
 * judgeRound): a listener still joined when its stream sends again is late, unless its leave is read
 * in that same turn of the event loop (it was in the MLD socket already, behind a timer or a send's
 * completion). On a clean lab 15-40% of the listeners judged late were such leaves, and they cut the rate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Share } from '../src/core/share/share.js';
import { ShareIndex, type IndexObject } from '../src/core/index/mdex.js';
import { decodeDatagram } from '../src/core/wire/packet.js';
import type { DatagramSink } from '../src/core/net/datagram.js';
import { AutoRate } from '../src/core/net/autorate.js';
import { Pacer } from '../src/core/net/pacer.js';
import { FakeListeners } from './fakelisteners.js';
import { sleep, until } from './until.js';

type ChunkObject = Extract<IndexObject, { kind: 'chunk' }>;

/** Takes what the share sends; calls `onRepair` (once) from inside the first batch with a repair symbol. */
class RepairWatchingSink implements DatagramSink {
  repairs = 0;
  constructor(private readonly onRepair: () => void) {}
  async sendBatch(items: readonly { group: string; payload: Buffer }[]): Promise<void> {
    const before = this.repairs;
    for (const i of items) if (decodeDatagram(i.payload)!.esi >= 32) this.repairs++;
    if (before === 0 && this.repairs > 0) this.onRepair();
  }
  async close(): Promise<void> {}
}

describe('Share: round outcomes for the auto rate', () => {
  let dir: string;
  let index: ShareIndex;
  let chunk: ChunkObject;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lcsync-outcome-'));
    const file = path.join(dir, 'file.bin');
    const content = Buffer.alloc(2 * 32768);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7 + (i >> 9)) & 0xff;
    writeFileSync(file, content);
    index = await ShareIndex.build([file]);
    chunk = [...index.hashes()].map((h) => index.get(h)!).find((o): o is ChunkObject => o.kind === 'chunk' && o.offset === 0)!;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** One listener joins the chunk; `leaves` says whether it leaves in the turn the stream sends after its hold. */
  async function outcome(leaves: boolean): Promise<[kept: number, late: number][]> {
    const listeners = new FakeListeners();
    const sink = new RepairWatchingSink(() => {
      // The stream has sent again, so the share has judged the hold over; the leave is read now,
      // before the event loop goes on (as when it waited in the MLD socket behind the send).
      if (!leaves) return;
      listeners.report('part', chunk.hash, 'fe80::1');
      listeners.report('leave', chunk.hash, 'fe80::1');
    });
    const share = await Share.start(index, { ifnames: ['f0'], openSink: async () => sink, listeners });
    // A share on an injected sink has no pacer of its own: give it the auto rate's controller by hand,
    // and note what it is told of each round.
    const auto = new AutoRate(Date.now());
    const told: [kept: number, late: number][] = [];
    const tell = auto.outcome.bind(auto);
    auto.outcome = (kept, late, K, startedAt) => {
      told.push([kept, late]);
      tell(kept, late, K, startedAt);
    };
    (share as unknown as { steer(rate: AutoRate, pacer: Pacer): void }).steer(auto, new Pacer({ bitsPerSecond: auto.rate }));
    try {
      listeners.report('join', chunk.hash, 'fe80::1');
      await until(() => sink.repairs > 0, 2000);
      await until(() => told.length > 0, 1000);
      await sleep(20);
      return told;
    } finally {
      await share.stop();
    }
  }

  it('a leave read in the turn the stream sends again after its hold counts as kept up', async () => {
    expect(await outcome(true)).toEqual([[1, 0]]);
  });

  it('a listener still joined after that turn was late', async () => {
    expect(await outcome(false)).toEqual([[0, 1]]);
  });
});
