/**
 * Checks the credentials the sync dispatcher sends (README "Auth secrets"), with the secret
 * both sides read from ERASURE_SECRET_<ref>. Pure: headers, body, secret and clock reading in.
 *
 * - bearer: `Authorization: Bearer <secret>`.
 * - hmac_sha256: `X-Erasure-Timestamp` (Unix seconds) and `X-Erasure-Signature:
 *   v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`. A timestamp further than the allowed skew
 *   from now is refused, so a captured call cannot be replayed later.
 *
 * Comparisons run in constant time over digests of equal length, so neither the content nor
 * the length of the secret leaks through timing.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { CrmAuthType } from './config.ts';

export type AuthCheck = { ok: true } | { ok: false; reason: 'missing' | 'mismatch' | 'stale_timestamp' };

export interface AuthInput {
  readonly type: CrmAuthType;
  readonly secret: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** Epoch milliseconds. */
  readonly nowMs: number;
  readonly maxSkewSeconds: number;
}

const sameText = (a: string, b: string) =>
  timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());

const one = (v: string | string[] | undefined) => (typeof v === 'string' ? v : undefined);

export function verifyAuth(input: AuthInput): AuthCheck {
  const { headers, secret } = input;
  if (input.type === 'bearer') {
    const auth = one(headers['authorization']);
    if (!auth || !/^Bearer /i.test(auth)) return { ok: false, reason: 'missing' };
    return sameText(auth.slice('Bearer '.length), secret) ? { ok: true } : { ok: false, reason: 'mismatch' };
  }
  const timestamp = one(headers['x-erasure-timestamp']);
  const signature = one(headers['x-erasure-signature']);
  if (!timestamp || !signature) return { ok: false, reason: 'missing' };
  if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, reason: 'mismatch' };
  const expected = createHmac('sha256', secret).update(`${timestamp}.`).update(input.body).digest('hex');
  // Signature first: an unsigned caller learns nothing about the clock window.
  if (!sameText(signature, `v1=${expected}`)) return { ok: false, reason: 'mismatch' };
  if (Math.abs(input.nowMs / 1000 - Number(timestamp)) > input.maxSkewSeconds)
    return { ok: false, reason: 'stale_timestamp' };
  return { ok: true };
}
