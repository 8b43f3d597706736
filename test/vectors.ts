/**
 * The reference vectors of test/vectors/ (made with the C lcsync 0.3.2, librecast 0.11.2 and LCRQ 0.2.1; see
 * test/vectors/README.md), found relative to this file so that a clone in any directory finds them.
 *
 * Nothing here reads at import: a test calls these while it runs, so a missing vector fails that test, with a
 * message that names the file, and never the whole file's collection.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root directory. */
export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** test/vectors/ itself; prefer vectorPath(), which checks that the file is there. */
export const vectorDir = path.join(repoRoot, 'test', 'vectors');

/** The path of a vector (`vectorPath('lcrq', 'F1', 'meta.json')`); throws a clear error when it is missing. */
export function vectorPath(...parts: string[]): string {
  const p = path.join(vectorDir, ...parts);
  if (!existsSync(p)) {
    throw new Error(`test vector test/vectors/${parts.join('/')} is missing (${p}); it is part of the repository: restore it with \`git checkout -- test/vectors\``);
  }
  return p;
}

/** The bytes of a vector. */
export function readVector(...parts: string[]): Buffer {
  return readFileSync(vectorPath(...parts));
}

/** The text of a vector. */
export function readVectorText(...parts: string[]): string {
  return readFileSync(vectorPath(...parts), 'utf8');
}

/** A JSON-lines vector, one parsed object a non-empty line. */
export function readVectorJsonl<T>(...parts: string[]): T[] {
  return readVectorText(...parts)
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

/** `f()` computed once, on first use (so a test file can share a parsed vector without reading it at import). */
export function once<T>(f: () => T): () => T {
  let done = false;
  let value: T;
  return () => {
    if (!done) {
      value = f();
      done = true;
    }
    return value;
  };
}

/**
 * Why share.tar cannot give the C tool's hashes here, or undefined as root: the hashes cover owners, and tar
 * restores them only for root.
 */
export const shareTarSkip: string | undefined =
  process.getuid?.() === 0 ? undefined : 'needs root: tar restores file owners only for root, and share.tar hashes cover them';

/** The sizes of files/fN.bin; every one but f0.bin has trees/fN.bin.tree. */
export const vectorFileSizes = [0, 1, 1000, 32767, 32768, 32769, 65536, 100000, 1048589] as const;

/** The object sizes of lcrq/F<size>/. */
export const lcrqSizes = [1, 1000, 1024, 1025, 5000, 32767, 32768, 32808, 100000] as const;
