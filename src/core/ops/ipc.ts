/**
 * Status over IPC: each running share listens on a Unix domain socket in the
 * run directory, and `lcsync status` asks every socket it finds there. A running
 * relay (ops/relay.ts) does the same on a socket of its own name (relay-PID.sock),
 * so that a status client of an older version, which asks share sockets only,
 * never mistakes a relay for a share.
 *
 * The protocol is one JSON line each way: the client sends `{"cmd":"status"}\n`,
 * the share answers with one JSON line and closes. Sockets live in a directory
 * only the owner may enter (0700) and are themselves 0600, so only the user who
 * started a share (and root) can ask it anything. A socket whose connection is
 * refused belongs to a share that died without cleaning up (SIGKILL, a crash):
 * the client removes it.
 */
import { chmodSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { readdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import type { ShareStatus } from '../share/status.js';
import type { RelayStatus } from './relay.js';

/** Longest request line a share reads; anything longer is answered with an error and dropped. */
const MAX_REQUEST = 4096;
/** Longest answer a client accepts (a share with thousands of active streams stays well below). */
const MAX_RESPONSE = 16 * 2 ** 20;
/** A client that connects and says nothing is dropped after this long. */
const IDLE_MS = 5000;
const SOCKET_RE = /^(share|relay)-(\d{1,10})\.sock$/;

/** What answers on a status socket: a share, or a relay. */
export type StatusKind = 'share' | 'relay';

export interface RunDirChoice {
  dir: string;
  /** Where the choice came from, for help and error messages. */
  source: 'flag' | 'env' | 'root' | 'xdg' | 'fallback';
}

/**
 * The run directory: `flag` > $LCSYNC_RUNDIR > /run/lcsync as root >
 * $XDG_RUNTIME_DIR/lcsync > /tmp/lcsync-UID (when XDG_RUNTIME_DIR is unset).
 */
export function resolveRunDir(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? -1): RunDirChoice {
  if (flag) return { dir: path.resolve(flag), source: 'flag' };
  if (env.LCSYNC_RUNDIR) return { dir: path.resolve(env.LCSYNC_RUNDIR), source: 'env' };
  if (uid === 0) return { dir: '/run/lcsync', source: 'root' };
  if (env.XDG_RUNTIME_DIR) return { dir: path.join(env.XDG_RUNTIME_DIR, 'lcsync'), source: 'xdg' };
  return { dir: path.join(os.tmpdir(), `lcsync-${uid}`), source: 'fallback' };
}

/** Create the run directory owner-only; refuse one that someone else owns (another user could read our sockets). */
export function ensureRunDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw fromSystemError(e, `cannot create run directory ${dir}`);
  }
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    throw fromSystemError(e, `run directory ${dir}`);
  }
  if (!st.isDirectory()) throw new LcsyncError('IO', `run directory ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new LcsyncError('PERMISSION', `run directory ${dir} belongs to uid ${st.uid}, not to us (uid ${uid}); choose another with --rundir`);
  }
  // mkdir's mode is filtered by the umask and does nothing for an existing directory.
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

export function socketPath(dir: string, pid: number = process.pid, kind: StatusKind = 'share'): string {
  return path.join(dir, `${kind}-${pid}.sock`);
}

export interface StatusServer {
  path: string;
  close(): Promise<void>;
}

/**
 * Listen on `<dir>/<kind>-<pid>.sock` and answer each status request with
 * `provider()`. The socket is removed on close() and when the process exits.
 */
export async function serveStatus(dir: string, provider: () => unknown, kind: StatusKind = 'share'): Promise<StatusServer> {
  ensureRunDir(dir);
  const sockPath = socketPath(dir, process.pid, kind);
  // A socket left by an earlier process with our pid (pids wrap) cannot be live: this is us.
  try {
    unlinkSync(sockPath);
  } catch {
    // Usually absent.
  }
  const server = net.createServer((conn) => handle(conn, provider));
  server.maxConnections = 16;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(fromSystemError(e, `cannot listen on ${sockPath}`)));
    // Binding a path is synchronous, so this umask covers the socket's creation: it is
    // never reachable with wider permissions, even for an instant.
    const old = process.umask(0o177);
    try {
      server.listen(sockPath, () => resolve());
    } finally {
      process.umask(old);
    }
  });
  chmodSync(sockPath, 0o600);
  const removeSync = () => {
    try {
      unlinkSync(sockPath);
    } catch {
      // Already gone.
    }
  };
  process.on('exit', removeSync);
  let closed = false;
  return {
    path: sockPath,
    async close() {
      if (closed) return;
      closed = true;
      process.off('exit', removeSync);
      await new Promise<void>((r) => server.close(() => r()));
      removeSync();
    },
  };
}

function handle(conn: net.Socket, provider: () => unknown): void {
  let buf = '';
  conn.setEncoding('utf8');
  conn.setTimeout(IDLE_MS, () => conn.destroy());
  conn.on('error', () => conn.destroy());
  const reply = (doc: unknown) => {
    conn.end(JSON.stringify(doc, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
  };
  conn.on('data', (d: string) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl < 0) {
      if (buf.length > MAX_REQUEST) {
        reply({ ok: false, error: 'request too long' });
        conn.removeAllListeners('data');
      }
      return;
    }
    conn.removeAllListeners('data');
    let req: { cmd?: unknown };
    try {
      req = JSON.parse(buf.slice(0, nl)) as { cmd?: unknown };
    } catch {
      reply({ ok: false, error: 'request is not JSON' });
      return;
    }
    if (req?.cmd !== 'status') {
      reply({ ok: false, error: `unknown command ${JSON.stringify(req?.cmd ?? null).slice(0, 40)}` });
      return;
    }
    try {
      reply({ ok: true, status: provider() });
    } catch (e) {
      reply({ ok: false, error: (e as Error).message });
    }
  });
}

/** A relay's status document as its socket serves it (commands/relay.ts): what Relay.status() reports, and who. */
export type RelayStatusDocument = RelayStatus & { kind: 'relay'; pid: number; startedAt: number };

export interface ShareAnswer {
  path: string;
  pid: number;
  /** Whose socket it is (by its name). Absent means a share, as before relays answered. */
  kind?: StatusKind;
  /** The share's status document; read defensively, as a share of another version may lack fields. */
  status?: Partial<ShareStatus>;
  /** A relay's status document instead (kind 'relay'); read as defensively. */
  relay?: Partial<RelayStatusDocument>;
  /** stale: the socket refused connection and was removed; unresponsive: no answer in time; error: a bad answer. */
  error?: 'stale' | 'unresponsive' | 'error';
  detail?: string;
}

/**
 * Ask every share socket in `dir` for its status, in parallel. Stale sockets
 * are removed. A missing directory means no share is running.
 */
export async function queryAll(dir: string, timeoutMs = 1000): Promise<ShareAnswer[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromSystemError(e, `cannot read run directory ${dir}`);
  }
  const socks = names
    .map((n) => ({ n, m: SOCKET_RE.exec(n) }))
    .filter((x): x is { n: string; m: RegExpExecArray } => x.m !== null)
    .map((x) => ({ path: path.join(dir, x.n), pid: Number(x.m[2]), kind: x.m[1] as StatusKind }))
    .sort((a, b) => a.pid - b.pid || a.kind.localeCompare(b.kind));
  return Promise.all(socks.map(async (s) => (s.kind === 'relay' ? { ...(await queryOne(s.path, s.pid, timeoutMs, 'relay')), kind: s.kind } : queryOne(s.path, s.pid, timeoutMs))));
}

/** Ask one socket; never throws. A relay's answer goes into `relay`, a share's into `status`. */
export async function queryOne(sockPath: string, pid: number, timeoutMs = 1000, kind: StatusKind = 'share'): Promise<ShareAnswer> {
  const r = await request(sockPath, timeoutMs);
  if ('refused' in r) {
    // Nobody listens: the share died without removing its socket.
    await unlink(sockPath).catch(() => undefined);
    return { path: sockPath, pid, error: 'stale' };
  }
  if ('timeout' in r) return { path: sockPath, pid, error: 'unresponsive' };
  if ('failed' in r) return { path: sockPath, pid, error: 'error', detail: r.failed };
  let doc: { ok?: unknown; status?: unknown; error?: unknown };
  try {
    doc = JSON.parse(r.line) as typeof doc;
  } catch {
    return { path: sockPath, pid, error: 'error', detail: 'answer is not JSON' };
  }
  if (doc?.ok !== true || typeof doc.status !== 'object' || doc.status === null) {
    return { path: sockPath, pid, error: 'error', detail: typeof doc?.error === 'string' ? doc.error.slice(0, 200) : 'bad answer' };
  }
  if (kind === 'relay') return { path: sockPath, pid, relay: doc.status as Partial<RelayStatusDocument> };
  return { path: sockPath, pid, status: doc.status as Partial<ShareStatus> };
}

type RequestResult = { line: string } | { refused: true } | { timeout: true } | { failed: string };

function request(sockPath: string, timeoutMs: number): Promise<RequestResult> {
  return new Promise((resolve) => {
    let settled = false;
    let buf = '';
    const conn = net.createConnection(sockPath);
    const done = (r: RequestResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ timeout: true }), timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write('{"cmd":"status"}\n'));
    conn.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) done({ line: buf.slice(0, nl) });
      else if (buf.length > MAX_RESPONSE) done({ failed: 'answer too long' });
    });
    conn.on('end', () => done(buf.length > 0 ? { line: buf } : { failed: 'closed without an answer' }));
    conn.on('error', (e: NodeJS.ErrnoException) => {
      // ECONNREFUSED: a socket file nobody listens on. ENOENT: removed meanwhile (its share just stopped).
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') done({ refused: true });
      else done({ failed: e.code ?? e.message });
    });
  });
}
