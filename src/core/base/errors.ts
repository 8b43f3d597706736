/**
 * Typed errors with stable codes. Core code throws LcsyncError with a code from
 * this table; the command layer maps the code onto an exit status and prints the
 * message as one line. Callers switch on `code`, never on message text.
 */

export const ExitCode = {
  ok: 0,
  /** Anything not classified below: a bug, reported without a stack trace. */
  internal: 1,
  usage: 2,
  /** Source path missing, or no sender answered within the timeout. */
  notFound: 3,
  /** Data failed verification (hash mismatch, malformed object, wrong key). */
  integrity: 4,
  /** Permission denied or a missing capability such as CAP_NET_RAW. */
  permission: 5,
  /** Local I/O error: disk full, read-only file system, unreadable file. */
  io: 6,
  /**
   * The sync finished every entry it could but left some alone: a non-empty directory stands
   * where the source has a file or symlink (each conflict is reported on its own line).
   */
  partial: 7,
  /** The source changed during the sync: an object of the root being fetched is no longer shared. */
  sourceChanged: 8,
  /** Stopped by SIGINT or SIGTERM before finishing. */
  interrupted: 130,
} as const;

export type ErrorCode =
  | 'USAGE'
  | 'NOT_FOUND'
  | 'TIMEOUT'
  | 'INTEGRITY'
  | 'PERMISSION'
  | 'IO'
  | 'PARTIAL'
  | 'SOURCE_CHANGED'
  | 'INTERRUPTED'
  | 'INTERNAL';

const exitFor: Record<ErrorCode, number> = {
  USAGE: ExitCode.usage,
  NOT_FOUND: ExitCode.notFound,
  TIMEOUT: ExitCode.notFound,
  INTEGRITY: ExitCode.integrity,
  PERMISSION: ExitCode.permission,
  IO: ExitCode.io,
  PARTIAL: ExitCode.partial,
  SOURCE_CHANGED: ExitCode.sourceChanged,
  INTERRUPTED: ExitCode.interrupted,
  INTERNAL: ExitCode.internal,
};

export class LcsyncError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LcsyncError';
    this.code = code;
  }
  get exitCode(): number {
    return exitFor[this.code];
  }
}

/** Map a Node system error (ENOENT, EACCES, ENOSPC, ...) on `path` to an LcsyncError. */
export function fromSystemError(err: unknown, what: string): LcsyncError {
  if (err instanceof LcsyncError) return err;
  const e = err as NodeJS.ErrnoException;
  const sys = typeof e?.code === 'string' ? e.code : undefined;
  const detail = describeErrno(sys, e?.message);
  switch (sys) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new LcsyncError('NOT_FOUND', `${what}: ${detail}`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new LcsyncError('PERMISSION', `${what}: ${detail}`, { cause: err });
    default:
      return new LcsyncError('IO', `${what}: ${detail}`, { cause: err });
  }
}

function describeErrno(code: string | undefined, message: string | undefined): string {
  const known: Record<string, string> = {
    ENOENT: 'no such file or directory',
    ENOTDIR: 'a path component is not a directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    ENOSPC: 'no space left on device',
    EROFS: 'read-only file system',
    EISDIR: 'is a directory',
    EEXIST: 'already exists',
    EDQUOT: 'disk quota exceeded',
    EIO: 'input/output error',
    ENAMETOOLONG: 'file name too long',
    ELOOP: 'too many levels of symbolic links',
  };
  if (code && known[code]) return `${known[code]} (${code})`;
  return message ?? 'unknown error';
}
