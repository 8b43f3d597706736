/**
 * Network test lab: hosts on a switch, built from Linux network namespaces. The implementation is
 * scripts/lab.js, shared with the benchmarks (plain JavaScript with JSDoc types, checked by tsconfig.test.json);
 * its header documents the API. This module gives the tests their usual import path and the types.
 *
 *   import { createLab, skipReason, type Lab } from './lab.js';
 *   import { describeUnless } from './skip.js';
 *   const why = skipReason();
 *   describeUnless(why, 'thing (needs root)', () => {   // skipped with its reason printed and counted
 *     let lab: Lab;
 *     beforeAll(async () => { lab = await createLab({ hosts: 2, snooping: true }); });
 *     afterAll(async () => { await lab?.teardown(); });
 *     ...
 *   });
 */
import { existsSync } from 'node:fs';
export { createLab, isRoot, killGroup, skipReason } from '../scripts/lab.js';

/**
 * Why a test that needs the kernel's IPv6 multicast routing (a router namespace forwarding groups, or
 * MRT6_INIT, by which a socket sees MLDv1 reports) cannot run here: some kernels are built without it.
 */
export function mrouteReason(): string | undefined {
  return existsSync('/proc/net/ip6_mr_vif') ? undefined : 'the kernel has no IPv6 multicast routing (CONFIG_IPV6_MROUTE: no /proc/net/ip6_mr_vif)';
}
export type {
  Counters,
  ExecOptions,
  ExecResult,
  Lab,
  LabHost,
  LabOptions,
  LossDir,
  SpawnOptions,
  Where,
} from '../scripts/lab.js';
