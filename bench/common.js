/** What the benchmark scripts share: paths, integer options, random data files, medians. */
import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = path.join(REPO, 'dist', 'core');

/** `--name N` from the command line, a positive integer, else `def`; `tool` names the script in errors. */
export function option(tool, name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`${tool}: --${name} wants a positive integer`);
    process.exit(2);
  }
  return v;
}

/** Write `size` bytes of pseudo-random data to `file`, in 16 MiB blocks. */
export function writeRandomFile(file, size) {
  const fd = openSync(file, 'w');
  const block = Buffer.allocUnsafe(16 * 2 ** 20);
  try {
    for (let off = 0; off < size; off += block.length) {
      const n = Math.min(block.length, size - off);
      randomFillSync(block, 0, n);
      writeSync(fd, block, 0, n);
    }
  } finally {
    closeSync(fd);
  }
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
