import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { problem } from '../../shared/errors.ts';
import { createTokenBucket, type TokenBucket } from '../../shared/token-bucket.ts';
import type { Principal, Scope, TokenStore } from './token-store.ts';

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

/** A bearer token's alphabet and length; ERASURE_ADMIN_TOKEN is checked against it at start. */
export const BEARER_TOKEN = /^[A-Za-z0-9._~+/=-]{16,200}$/;

/** Bearer authentication and the per-token rate limit (429 with Retry-After). */
export function authenticate(deps: {
  tokens: TokenStore;
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  now: () => number;
}): RequestHandler {
  const buckets = new Map<string, TokenBucket>();
  return async (req: Request, res: Response, next: NextFunction) => {
    // node keeps the first of two Authorization headers and drops the other: which token
    // is meant is ambiguous (a proxy may have added one), so neither is used.
    if (authorizationHeaders(req.rawHeaders) > 1) {
      res.setHeader('WWW-Authenticate', 'Bearer error="invalid_request"');
      throw problem('ERR_VALIDATION', 'send one Authorization header, not several', {
        field: 'Authorization',
      });
    }
    const header = req.headers.authorization ?? '';
    // The scheme is case-insensitive (RFC 9110 §11.1).
    const m = /^Bearer (.*)$/i.exec(header);
    if (!m || !BEARER_TOKEN.test(m[1]!)) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      throw problem('ERR_UNAUTHENTICATED', 'send Authorization: Bearer <token>');
    }
    const principal = await deps.tokens.authenticate(m[1]!);
    if (!principal) {
      res.setHeader('WWW-Authenticate', 'Bearer error="invalid_token"');
      throw problem('ERR_UNAUTHENTICATED', 'the token is unknown, expired or revoked');
    }
    let bucket = buckets.get(principal.tokenId);
    if (!bucket) {
      bucket = createTokenBucket({
        ratePerSecond: deps.rateLimitPerSecond,
        burst: deps.rateLimitBurst,
        now: deps.now,
      });
      buckets.set(principal.tokenId, bucket);
    }
    const taken = bucket.take();
    if (!taken.ok) {
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(taken.retryAfterMs / 1000))));
      throw problem('ERR_RATE_LIMITED', 'this token is over its rate limit');
    }
    req.principal = principal;
    next();
  };
}

/** How many Authorization headers the request has (rawHeaders: name, value, name, ...). */
function authorizationHeaders(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2)
    if (raw[i]!.length === 13 && raw[i]!.toLowerCase() === 'authorization') n++;
  return n;
}

export function requireScope(scope: Scope): RequestHandler {
  return (req, _res, next) => {
    const p = req.principal;
    if (!p) throw problem('ERR_UNAUTHENTICATED', 'authentication required');
    if (!p.scopes.includes(scope) && !(scope !== 'ack' && p.scopes.includes('admin'))) {
      throw problem('ERR_FORBIDDEN', `this token lacks the "${scope}" scope`);
    }
    next();
  };
}
