/**
 * Choosing the object key for share and sync, as the C tool does: --keyfile
 * (128 bytes), LCSYNC_PASSWORD, or a prompt; -b/--batch means no key and no
 * prompt. Unlike the C tool, no key at all means plaintext, because a cron
 * job cannot answer a prompt. The share says so once as it starts (it decides
 * what travels); a sync says it only with -v, as it just takes what is served.
 */
import { Flags } from '@oclif/core';
import type { ObjectCipher } from '../core/wire/crypto.js';
import { LcsyncError } from '../core/base/errors.js';
import type { Logger } from './logger.js';

export const keyFlags = {
  keyfile: Flags.string({ description: 'Encrypt (share) or decrypt (sync) objects with this 128-byte key file, as the C lcsync --keyfile.' }),
  password: Flags.boolean({ description: 'Prompt for a password (echo off) and derive the key from it as the C lcsync does. LCSYNC_PASSWORD gives it without a prompt.', default: false }),
  batch: Flags.boolean({ char: 'b', description: 'No encryption and no prompt, as the C lcsync -b (ignores LCSYNC_PASSWORD).', default: false }),
};

export async function chooseCipher(
  flags: { keyfile?: string; password: boolean; batch: boolean },
  log: Logger,
  role: 'share' | 'sync',
): Promise<ObjectCipher | undefined> {
  if (flags.batch) {
    if (flags.keyfile || flags.password) throw new LcsyncError('USAGE', '-b/--batch means no encryption: drop --keyfile/--password, or drop -b');
    return undefined;
  }
  const env = process.env.LCSYNC_PASSWORD;
  if (!flags.keyfile && !flags.password && (env === undefined || env === '')) {
    if (role === 'share') log.warn('no key given (--keyfile, --password or LCSYNC_PASSWORD): objects travel unencrypted, as with the C lcsync -b');
    else log.verbose('no key given (--keyfile, --password or LCSYNC_PASSWORD): expecting an unencrypted share');
    return undefined;
  }
  const crypto = await import('../core/wire/crypto.js');
  let key;
  if (flags.keyfile) key = await crypto.loadKeyfile(flags.keyfile);
  else if (flags.password) key = await crypto.deriveKey(await crypto.readPasswordFromTty('Enter password (will be used to derive a symmetric key): '));
  else key = await crypto.deriveKey(env!);
  return crypto.objectCipher(key);
}
