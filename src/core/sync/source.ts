/**
 * SOURCE as the user writes it: a root hash, a share name (rsync's trailing-slash meaning), or
 * a path inside a share; "name:" forces a name that looks like a hash.
 */
import { LcsyncError } from '../base/errors.js';
import { parseHex, type Hash } from '../model/hash.js';
import { aliasHash } from '../model/entry.js';

/** What the user asked for: a hash, or a share name with rsync's trailing-slash meaning. */
export interface SourceSpec {
  hash: Hash;
  /** Share name when asked by name (one trailing slash removed). */
  name?: string;
  /** True when the contents of a directory go straight into DEST. */
  contents: boolean;
}

/** Share-name prefix that turns off hash detection ("name:cafe0123..." is a share called "cafe0123..."). */
export const NAME_PREFIX = 'name:';
/** A source of this many hex digits or more looks like a root hash (a mis-copied one unless it has 64). */
const HASHLIKE_MIN_DIGITS = 16;

/**
 * SOURCE as the user gave it: 64 hex digits are a root hash; a run of 16 or more hex digits of
 * another length is refused as a mis-copied hash (it would otherwise become a share name that no
 * share has, and the sync would wait for it forever); "name:X" is always the share name X.
 */
export function parseSource(source: string): SourceSpec {
  const forcedName = source.startsWith(NAME_PREFIX);
  if (!forcedName) {
    const h = parseHex(source);
    if (h) return { hash: h, contents: true };
    const bare = source.endsWith('/') ? source.slice(0, -1) : source;
    const hashed = parseHex(bare);
    if (hashed) return { hash: hashed, contents: true };
    if (bare.length >= HASHLIKE_MIN_DIGITS && /^[0-9a-f]+$/i.test(bare)) {
      throw new LcsyncError(
        'USAGE',
        `"${source}" looks like a root hash but has ${bare.length} hex digits, not 64 (for a share named so, write ${NAME_PREFIX}${source})`,
      );
    }
  }
  const given = forcedName ? source.slice(NAME_PREFIX.length) : source;
  if (given === '' || given === '/') throw new LcsyncError('USAGE', `invalid source "${source}"`);
  const contents = given.endsWith('/');
  const name = contents ? given.slice(0, -1) : given;
  if (name.startsWith('/') || name.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new LcsyncError('USAGE', `invalid share name "${source}": use the name the share printed, like "music" or "music/a.ogg"`);
  }
  return { hash: aliasHash(name), name, contents };
}
