/** Interface selection shared by share and sync: -i names, validated, or every multicast-capable one. */
import { LcsyncError } from '../core/base/errors.js';

export async function chooseInterfaces(given: string[] | undefined): Promise<string[]> {
  const { multicastInterfaces, validateInterfaces, loopbackMulticastProblem } = await import('../core/net/interfaces.js');
  if (given && given.length > 0) {
    const names = given.flatMap((g) => g.split(',')).filter((n) => n !== '');
    validateInterfaces(names);
    // lo is never chosen by default; named, it must be able to carry multicast, or nothing would arrive.
    for (const name of names) {
      const problem = loopbackMulticastProblem(name);
      if (problem) throw new LcsyncError('USAGE', problem);
    }
    return [...new Set(names)];
  }
  const all = multicastInterfaces();
  if (all.length === 0) {
    throw new LcsyncError('USAGE', 'no multicast-capable interface with an IPv6 address is up; name one with -i (on one machine: -i lo, see "Try it on one machine" in the README)');
  }
  return all;
}
