import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';

export const SCOPES = ['submit', 'read', 'ack', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  tokenId: string;
  owner: string;
  scopes: readonly Scope[];
  /** For ack tokens: the one target this token may acknowledge for. */
  target: string | null;
}

/** Tokens are 256 random bits, so SHA-256 is enough to store them (no dictionary applies). */
export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function newToken(): string {
  return `ert_${randomBytes(32).toString('base64url')}`;
}

export interface TokenStore {
  /** The principal for a bearer token, or undefined when unknown, expired or revoked. */
  authenticate(token: string): Promise<Principal | undefined>;
  mint(input: {
    owner: string;
    scopes: Scope[];
    target: string | null;
    description?: string;
    expiresAt?: Date;
  }): Promise<{
    id: string;
    token: string;
  }>;
  /** Makes ERASURE_ADMIN_TOKEN a valid admin token (idempotent). */
  bootstrapAdmin(token: string): Promise<void>;
}

/**
 * Token lookups are cached for `cacheMs` (a hot path at thousands of requests a second);
 * a revoked token stops working within that window. An expiring token's entry never
 * outlives its `expires_at`, so expiry is exact (to the API's clock).
 */
export function createTokenStore(deps: { pool: pg.Pool; cacheMs: number; now?: () => number }): TokenStore {
  const now = deps.now ?? Date.now;
  const cache = new Map<string, { principal: Principal | undefined; until: number }>();

  return {
    async authenticate(token) {
      const key = hashToken(token).toString('base64');
      const hit = cache.get(key);
      if (hit && hit.until > now()) return hit.principal;
      const { rows } = await deps.pool.query<{
        id: string;
        owner: string;
        scopes: Scope[];
        target: string | null;
        expires_at: Date | null;
      }>({
        name: 'authenticate_token',
        text: `SELECT id, owner, scopes, target, expires_at
                 FROM api_tokens
                WHERE token_sha256 = $1
                  AND revoked_at IS NULL
                  AND (expires_at IS NULL OR expires_at > now())`,
        values: [hashToken(token)],
      });
      const row = rows[0];
      const principal = row
        ? { tokenId: row.id, owner: row.owner, scopes: row.scopes, target: row.target }
        : undefined;
      if (cache.size > 10_000) cache.clear();
      const until = Math.min(now() + deps.cacheMs, row?.expires_at?.getTime() ?? Infinity);
      cache.set(key, { principal, until });
      return principal;
    },
    async mint(input) {
      const token = newToken();
      const id = randomUUID();
      await deps.pool.query(
        `INSERT INTO api_tokens (id, token_sha256, owner, scopes, target, description, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [
          id,
          hashToken(token),
          input.owner,
          input.scopes,
          input.target,
          input.description ?? null,
          input.expiresAt ?? null,
        ],
      );
      return { id, token };
    },
    async bootstrapAdmin(token) {
      // Rotation: a changed ERASURE_ADMIN_TOKEN revokes the one bootstrapped before it (the
      // newest start wins), so an old value in a leaked environment stops working.
      await deps.pool.query(
        `WITH earlier AS (
           UPDATE api_tokens
              SET revoked_at = now()
            WHERE owner = 'admin'
              AND description = 'ERASURE_ADMIN_TOKEN'
              AND token_sha256 <> $2
              AND revoked_at IS NULL
         )
         INSERT INTO api_tokens (id, token_sha256, owner, scopes, description)
         VALUES ($1, $2, 'admin', ARRAY['admin', 'submit', 'read'], 'ERASURE_ADMIN_TOKEN')
         ON CONFLICT (token_sha256) DO UPDATE SET revoked_at = NULL`,
        [randomUUID(), hashToken(token)],
      );
    },
  };
}
