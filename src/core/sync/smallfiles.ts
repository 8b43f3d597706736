/**
 * New small files written in batches off the JS thread. A first sync of a tree of small files is
 * thousands of writeNewSmallFile calls (open, write, fstat, fchmod, close, rename each), and made
 * synchronously on the JS thread they were most of its time (an open(O_CREAT) alone can take a
 * millisecond on ext4 without a journal, bench/README.md), time in which no datagram was read and
 * no bundle verified. Here the files queued within one turn of the event loop (up to BATCH_FILES)
 * go to the addon (native/smallfiles.c) as one batch, made on a libuv pool thread with the same
 * steps and the same guarantee: each is complete under a temporary name before its rename, never
 * partial at its destination, and is made durable with the others at the end of the run
 * (DeferredSync). Without the addon, or for a file with holes, writeNewSmallFile does it here.
 */
import { getSystemErrorName } from 'node:util';
import { loadAddon } from '../base/addon.js';
import { LcsyncError, fromSystemError } from '../base/errors.js';
import { nameToBytes } from '../base/names.js';
import { DEFERRED_SYNC_MAX, tempPathFor, writeNewSmallFile, type CommittedIdentity, type DeferredSync, type SmallFileSpec } from './writer.js';

/** Files per batch: enough that a batch's round trip is small beside its system calls, few enough that results come steadily. */
const BATCH_FILES = 64;
/**
 * Batches on pool threads at once. One keeps one core busy with system calls beside the JS thread
 * (the receiver's other core on a 2-CPU host); a second is queued so the thread never waits for JS.
 */
const BATCHES_IN_FLIGHT = 2;
const PARAMS = 3;
const TIMES = 4;
const OUTS = 5;
/** The steps native/smallfiles.c names when one fails. */
const STEPS = ['', 'open', 'write', 'fstat', 'owner', 'close', 'rename', 'times'] as const;

interface Queued {
  dest: string;
  tmp: string;
  spec: SmallFileSpec;
  resolve(id: CommittedIdentity): void;
  reject(err: unknown): void;
}

type WriteSmallFiles = (names: Uint8Array, data: Uint8Array[], params: Float64Array, out: BigInt64Array, done: () => void, times?: Float64Array) => void;

function nativeWriter(): { write: WriteSmallFiles; setsTimes: boolean } | undefined {
  if (process.env.LCSYNC_NO_NATIVE_SMALLFILES) return undefined;
  const addon = loadAddon().addon as { writeSmallFiles?: unknown; smallFilesSetTimes?: unknown } | undefined;
  const f = addon?.writeSmallFiles;
  // An addon built before it took times (a build left from an older checkout) writes the files without them.
  return typeof f === 'function' ? { write: f as WriteSmallFiles, setsTimes: addon?.smallFilesSetTimes === true } : undefined;
}

export class SmallFileWriter {
  private readonly native: { write: WriteSmallFiles; setsTimes: boolean } | undefined;
  private queue: Queued[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly deferred: DeferredSync,
    native: boolean = true,
  ) {
    this.native = native ? nativeWriter() : undefined;
  }

  /** Whether files go to the addon in batches (else one by one on this thread). */
  get batching(): boolean {
    return this.native !== undefined;
  }

  /**
   * Make the new file `dest` (nothing stands there) as writeNewSmallFile does; resolves once it is
   * at `dest`, with its identity. Errors name `dest` (or its owner/mode step), as writeNewSmallFile's.
   * `spec.times` are set with the file where the addon can (the identity's timesSet says so).
   */
  write(dest: string, spec: SmallFileSpec): Promise<CommittedIdentity> {
    if (!this.native || (spec.holes?.length ?? 0) > 0) {
      try {
        return Promise.resolve(writeNewSmallFile(dest, spec, this.deferred));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (spec.data.length > DEFERRED_SYNC_MAX) return Promise.reject(new LcsyncError('INTERNAL', `output: ${spec.data.length} bytes is not a small file`));
    return new Promise((resolve, reject) => {
      this.queue.push({ dest, tmp: tempPathFor(dest), spec, resolve, reject });
      if (this.queue.length >= BATCH_FILES) this.dispatch();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.dispatch();
        });
      }
    });
  }

  /** Hand queued files to the addon, a batch at a time, while fewer than BATCHES_IN_FLIGHT run. */
  private dispatch(): void {
    while (this.queue.length > 0 && this.inFlight < BATCHES_IN_FLIGHT) {
      const batch = this.queue.splice(0, BATCH_FILES);
      this.inFlight++;
      this.run(batch);
    }
  }

  /**
   * One batch to the addon. Made with few objects per file (issue 13: on a first sync of small files
   * the receiver's garbage collector was a fifth of its time): the paths go as one string converted
   * once, the files' bytes as they are (no copy into one buffer), the numbers as doubles (no BigInt).
   */
  private run(batch: Queued[]): void {
    const params = new Float64Array(PARAMS * batch.length);
    // Times set here for every file of the batch or for none (a run's files all have -t or none do);
    // files whose times are not set here get timesSet false, and their caller sets them.
    const withTimes = this.native!.setsTimes && batch.every((q) => q.spec.times !== undefined);
    const times = withTimes ? new Float64Array(TIMES * batch.length) : undefined;
    const out = new BigInt64Array(OUTS * batch.length);
    const data: Uint8Array[] = new Array<Uint8Array>(batch.length);
    let names = '';
    for (let i = 0; i < batch.length; i++) {
      const q = batch[i]!;
      // NUL maps to itself in nameToBytes, so the joined string converts as its parts would.
      names += `${q.tmp}\0${q.dest}\0`;
      data[i] = q.spec.data;
      params[PARAMS * i] = q.spec.mode & 0o7777;
      params[PARAMS * i + 1] = q.spec.uid ?? -1;
      params[PARAMS * i + 2] = q.spec.gid ?? -1;
      if (times) {
        const t = q.spec.times!;
        times[TIMES * i] = Number(t.atimeSec);
        times[TIMES * i + 1] = Number(t.atimeNsec);
        times[TIMES * i + 2] = Number(t.mtimeSec);
        times[TIMES * i + 3] = Number(t.mtimeNsec);
      }
    }
    const finish = () => {
      this.inFlight--;
      for (let i = 0; i < batch.length; i++) {
        const q = batch[i]!;
        const errno = Number(out[OUTS * i]);
        if (errno === 0) {
          this.deferred.add(q.dest);
          q.resolve({ ino: BigInt.asUintN(64, out[OUTS * i + 2]!), dev: BigInt.asUintN(64, out[OUTS * i + 3]!), mtimeNs: out[OUTS * i + 4]!, ...(withTimes && { timesSet: true }) });
          continue;
        }
        const step = STEPS[Number(out[OUTS * i + 1])] ?? 'write';
        const code = errnoName(errno);
        const err = Object.assign(new Error(`${code}: ${step} ${q.tmp}`), { code, errno: -errno, syscall: step });
        q.reject(step === 'owner' ? fromSystemError(err, `cannot set owner or mode of ${q.dest}`) : step === 'times' ? fromSystemError(err, `cannot set times of ${q.dest}`) : fromSystemError(err, q.dest));
      }
      this.dispatch();
    };
    try {
      this.native!.write(nameToBytes(names), data, params, out, finish, times);
    } catch (e) {
      this.inFlight--;
      for (const q of batch) q.reject(e);
    }
  }
}

function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
}
