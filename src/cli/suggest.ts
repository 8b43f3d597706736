/** "Did you mean ...?" for a mistyped command: the closest command by edit distance, if close enough. */

/** Levenshtein distance with adjacent transpositions counted as one edit ("idnex" is one edit from "index"). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The command `typed` most likely meant: the nearest within 2 edits (1 for words of up to 3
 * letters, where 2 edits reach almost anything), or one that `typed` is a prefix of. Ties go to
 * the first in alphabetical order.
 */
export function suggestCommand(typed: string, commands: string[]): string | undefined {
  const word = typed.toLowerCase();
  if (word === '') return undefined;
  const limit = word.length <= 3 ? 1 : 2;
  let best: { id: string; dist: number } | undefined;
  for (const id of [...commands].sort()) {
    const dist = id.startsWith(word) ? 0 : editDistance(word, id);
    if (dist <= limit && (!best || dist < best.dist)) best = { id, dist };
  }
  return best?.id;
}

/** The one line for an unknown command (without the "lcsync: " prefix). */
export function unknownCommandMessage(typed: string, commandIDs: string[]): string {
  const commands = [...new Set(commandIDs.filter((c) => !c.includes(':')))].sort();
  const guess = suggestCommand(typed, commands);
  const hint = guess ? ` Did you mean "${guess}"?` : '';
  return `unknown command "${typed}".${hint} Commands: ${commands.join(', ')} (see 'lcsync help')`;
}
