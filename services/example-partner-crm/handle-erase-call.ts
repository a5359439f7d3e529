/**
 * The partner's delete API, as a node:http request listener.
 *
 *   POST /erase   {"email": "...", "userId": "..."} (either or both; other fields ignored)
 *     200 {"rowsDeleted":n,"remaining":0}   the subject's contacts are gone (re-counted)
 *     404 {"rowsDeleted":0,"remaining":0}   nothing matched
 *     400 bad body or no Idempotency-Key; 401 bad credentials; 413 body over 16 KiB;
 *     422 the Idempotency-Key was used before with a different body; 500 the proof failed
 *   GET /healthz  200
 *
 * Same Idempotency-Key, same answer, one effect (contacts-store.ts). Authentication comes
 * before anything is parsed or touched, so a refused call deletes nothing and learns nothing.
 * Log lines carry the request id, status and counts, never the body or identifier values.
 */
import { createHash } from 'node:crypto';
import type http from 'node:http';
import type { Logger } from '../shared/logger.ts';
import type { CrmAuthType } from './config.ts';
import type { ContactsMatch, ContactsStore } from './contacts-store.ts';
import { verifyAuth } from './verify-auth.ts';

export const MAX_BODY_BYTES = 16 * 1024;
const KEY = /^[\x21-\x7e]{1,200}$/;
const REQUEST_ID = /^[A-Za-z0-9-]{1,64}$/;

export interface EraseApiDeps {
  readonly store: ContactsStore;
  readonly auth: { readonly type: CrmAuthType; readonly secret: string; readonly maxSkewSeconds: number };
  readonly logger: Logger;
  /** Epoch milliseconds; injected so signature freshness is testable. */
  readonly now: () => number;
}

class BodyTooLarge extends Error {}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Past the limit the rest is read and dropped, so the 413 still reaches the caller.
      if (size > MAX_BODY_BYTES) reject(new BodyTooLarge());
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, body: object, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** The subject's identifiers from the body, or a reason it has none usable. */
export function parseEraseBody(body: Buffer): ContactsMatch | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return 'the body is not JSON';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return 'the body is not an object';
  const { email, userId } = parsed as Record<string, unknown>;
  for (const [field, v] of [
    ['email', email],
    ['userId', userId],
  ] as const)
    if (v !== undefined && (typeof v !== 'string' || v.length === 0 || v.length > 320))
      return `${field} must be a string of 1 to 320 characters`;
  if (email === undefined && userId === undefined) return 'the body has neither email nor userId';
  return {
    emails: typeof email === 'string' ? [email] : [],
    userIds: typeof userId === 'string' ? [userId] : [],
  };
}

export function createEraseApi(deps: EraseApiDeps): http.RequestListener {
  return (req, res) => {
    void handle(deps, req, res).catch((err: unknown) => {
      deps.logger.error('erase call failed', { code: 'ERR_CRM_ERASE', error: err });
      if (!res.headersSent) send(res, 500, { error: 'internal error; retry with the same Idempotency-Key' });
      else res.destroy();
    });
  };
}

async function handle(deps: EraseApiDeps, req: http.IncomingMessage, res: http.ServerResponse) {
  const path = new URL(req.url ?? '/', 'http://partner').pathname;
  if (path === '/healthz' && req.method === 'GET') return send(res, 200, { ok: true });
  // Not 404: the dispatcher reads 404 as "nothing to erase" and completes the task, so a
  // target registered with a mistyped path would look erased. A 400 fails it for a person.
  if (path !== '/erase') return send(res, 400, { error: 'unknown endpoint; use POST /erase' });
  if (req.method !== 'POST') return send(res, 405, { error: 'use POST' }, { allow: 'POST' });

  const requestIdHeader = req.headers['x-erasure-request-id'];
  const requestId =
    typeof requestIdHeader === 'string' && REQUEST_ID.test(requestIdHeader) ? requestIdHeader : null;
  const log = deps.logger.child({ requestId });
  let body: Buffer;
  try {
    body = await readBody(req);
  } catch (err) {
    if (err instanceof BodyTooLarge)
      return send(res, 413, { error: `the body is over ${MAX_BODY_BYTES} bytes` }, { connection: 'close' });
    throw err;
  }
  const auth = verifyAuth({
    type: deps.auth.type,
    secret: deps.auth.secret,
    maxSkewSeconds: deps.auth.maxSkewSeconds,
    headers: req.headers,
    body,
    nowMs: deps.now(),
  });
  if (!auth.ok) {
    log.warn('erase call refused: bad credentials', { code: 'WARN_CRM_AUTH_REJECTED', reason: auth.reason });
    const challenge: Record<string, string> =
      deps.auth.type === 'bearer' ? { 'www-authenticate': 'Bearer' } : {};
    return send(res, 401, { error: 'unauthorized' }, challenge);
  }
  const key = req.headers['idempotency-key'];
  if (typeof key !== 'string' || !KEY.test(key))
    return send(res, 400, {
      error: 'an Idempotency-Key header of 1 to 200 printable characters is required',
    });
  const match = parseEraseBody(body);
  if (typeof match === 'string') return send(res, 400, { error: match });

  const bodySha256 = createHash('sha256').update(body).digest('hex');
  const outcome = await deps.store.eraseOnce(key, bodySha256, match);
  if (outcome.kind === 'key_reused') {
    log.warn('erase call refused: Idempotency-Key reused with another body', { code: 'WARN_CRM_KEY_REUSED' });
    return send(res, 422, { error: 'this Idempotency-Key was used with a different body' });
  }
  const { status, rowsDeleted, remaining } = outcome.answer;
  log.info('erase call answered', { status, rowsDeleted, replayed: outcome.replayed });
  // Counts only: the dispatcher keeps this body as evidence, so it must hold no identifier.
  send(res, status, { rowsDeleted, remaining });
}
