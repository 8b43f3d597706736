/** "1 chunk", "2 chunks": a count with its noun in the right number, for every message that counts. */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
