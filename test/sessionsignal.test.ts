/**
 * A sync session and the abort signal it is given (src/core/sync/session.ts): the session listens for an
 * abort while it runs and takes its listener off again when it closes. A live mirror (sync/live.ts) gives
 * each of its syncs a signal composed with its own (AbortSignal.any), and node keeps a composed signal that
 * has an abort listener, and through it the listener's session with all its buffers, for as long as the
 * signals it was composed from live: before the listener was removed, a mirror kept every past session
 * (RSS rising by 3-8 MiB per 64 MiB sync without end). Here three sessions are opened and closed the way
 * the mirror does it; after a full collection none of them may still be reachable.
 */
import { getEventListeners } from 'node:events';
import { expect, it } from 'vitest';
import type { DatagramSource } from '../src/core/net/datagram.js';
import { SyncSession } from '../src/core/sync/sync.js';
import { collectOldGenerationNow } from '../src/core/base/oldgen.js';

/** A channel that receives nothing: the session only has to open and close. */
function silentChannel(): DatagramSource {
  return { join() {}, leave() {}, rejoin() {}, onDatagram() {}, close: async () => {} };
}

/** Open a session on `signal` and close it, as each sync of a mirror does; a weak reference to it is all that is kept. */
async function openAndClose(signal: AbortSignal): Promise<WeakRef<SyncSession>> {
  const session = await SyncSession.open({
    channel: silentChannel(),
    ifnames: ['fake0'],
    flags: { recursive: false, perms: false, owner: false, group: false, times: false },
    signal,
  });
  expect(getEventListeners(signal, 'abort')).toHaveLength(1);
  await session.close();
  expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  return new WeakRef(session);
}

it('a closed session is off its signal and unreachable, also when the signal is composed with a longer-lived one', async () => {
  const mirror = new AbortController();
  const closed: WeakRef<SyncSession>[] = [];
  for (let cycle = 0; cycle < 3; cycle++) closed.push(await openAndClose(AbortSignal.any([mirror.signal, new AbortController().signal])));
  // WeakRefs hold their targets until the job that made them ends.
  await new Promise((r) => setTimeout(r, 0));
  // A full collection of V8's old generation (the one a live mirror makes between syncs).
  expect(collectOldGenerationNow({})).toBe(true);
  expect(closed.filter((w) => w.deref() !== undefined)).toHaveLength(0);
  expect(mirror.signal.aborted).toBe(false);
});

it('collectOldGenerationNow collects once, and not at all with LCSYNC_NO_OLDGEN_TRIM=1', () => {
  expect(collectOldGenerationNow({ LCSYNC_NO_OLDGEN_TRIM: '1' })).toBe(false);
  expect(collectOldGenerationNow({})).toBe(true);
});
