#!/usr/bin/env node
/**
 * A hostile neighbour for bench/transfer-bench.js --flood: sends junk datagrams to the lcsync groups
 * a receiver has joined, at a fixed rate, from its own lab namespace.
 *
 *   node bench/flood.js --rate N --watch PID --seconds S [--ifname e0] [--port 4242]
 *
 * It knows the receiver's groups the way an attacker on the LAN who hears its MLD reports would: it
 * reads /proc/PID/net/igmp6 (PID: any process in the receiver's namespace) every 20 ms and spreads
 * the flood over the lcsync groups (ff1e::/16) joined there. Of every 4 datagrams, 1 is a well-formed
 * chunk datagram (1060 bytes: a valid header, a random OID nobody asked for) and 3 are 100 bytes of
 * random junk: 200,000/s of them is about 0.65 Gbit/s on the wire. Sends with sendmmsg through the
 * lcsync addon (dist/core/net/batchsock.js); runs until --seconds pass or SIGTERM, then prints
 * `{"sent": n, "seconds": s}` on stdout.
 */
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'core');
const { BatchSocket } = await import(path.join(DIST, 'net', 'batchsock.js'));

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  return process.argv[i + 1];
}
const rate = Number(arg('rate'));
const watch = Number(arg('watch'));
const seconds = Number(arg('seconds', '120'));
const ifname = arg('ifname', 'e0');
const port = Number(arg('port', '4242'));
if (!(rate > 0) || !Number.isInteger(watch) || !(seconds > 0)) {
  console.error('flood: usage: flood.js --rate N --watch PID --seconds S [--ifname e0] [--port 4242]');
  process.exit(2);
}

/**
 * The lcsync groups joined in PID's namespace, laid out as a ring: the 16-byte addresses once, and the
 * first BATCH again after them, so that any run of BATCH consecutive ones is one view (no copy per send).
 */
function groups() {
  let text;
  try {
    text = readFileSync(`/proc/${watch}/net/igmp6`, 'utf8');
  } catch {
    return [];
  }
  const out = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === ifname && f[2]?.startsWith('ff1e')) out.push(Buffer.from(f[2], 'hex'));
  }
  if (out.length === 0) return { count: 0, ring: Buffer.alloc(0) };
  const ring = [];
  for (let i = 0; i < out.length + BATCH; i++) ring.push(out[i % out.length]);
  return { count: out.length, ring: Buffer.concat(ring) };
}

const BATCH = 64;
const sock = BatchSocket.open({ ifname, hopLimit: 1, loopback: false });
// A pool of junk to send from, refreshed a little each tick so that OIDs keep changing.
const POOL = 4096;
const pool = Array.from({ length: POOL }, (_, i) => {
  if (i % 4 === 0) {
    const d = Buffer.alloc(1060);
    randomFillSync(d, 0, 32);
    d.writeUInt32BE(Math.floor(Math.random() * 32), 32); // SBN 0, a plausible ESI
    randomFillSync(d, 36);
    return d;
  }
  return randomFillSync(Buffer.alloc(100));
});
/** The pool cut into batches once: a send takes a ready array. */
const batches = Array.from({ length: POOL / BATCH }, (_, k) => pool.slice(k * BATCH, (k + 1) * BATCH));

let sent = 0;
/** Datagrams not sent because no group was joined yet (not a backlog to catch up on). */
let skipped = 0;
let current = { count: 0, ring: Buffer.alloc(0) };
let next = 0;
let batchNo = 0;
const t0 = performance.now();
let stop = false;
process.on('SIGTERM', () => (stop = true));
process.on('SIGINT', () => (stop = true));

const refresh = setInterval(() => (current = groups()), 20);
current = groups();

await new Promise((resolve) => {
  const tick = () => {
    const elapsed = (performance.now() - t0) / 1000;
    if (stop || elapsed >= seconds) return resolve();
    const due = Math.floor(elapsed * rate) - sent - skipped;
    if (current.count > 0 && due > 0) {
      let left = Math.min(due, 40 * BATCH);
      while (left > 0) {
        const n = Math.min(left, BATCH);
        const at = next % current.count;
        const addrs = current.ring.subarray(16 * at, 16 * (at + n));
        const full = batches[batchNo++ % batches.length];
        const payloads = n === BATCH ? full : full.slice(0, n);
        next += n;
        let took;
        try {
          took = sock.send(port, addrs, payloads);
        } catch {
          took = n; // a failed datagram is skipped, as a sender would
        }
        sent += took;
        left -= n;
        if (took < n) break; // the socket buffer is full: the kernel sets the pace
      }
    } else if (current.count === 0) {
      // Nobody to flood yet: do not build up a backlog.
      skipped += Math.max(0, due);
    }
    setTimeout(tick, 1);
  };
  tick();
});
clearInterval(refresh);
sock.close();
console.log(JSON.stringify({ sent, seconds: (performance.now() - t0) / 1000 }));
