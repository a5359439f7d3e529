import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { loadApiConfig } from '../../services/api/config.ts';
import { start } from '../../services/api/index.ts';
import { migrate } from '../../services/shared/db/migrate.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { createTestDatabase } from './infra.ts';

export const SCHEMAS_SQL = join(import.meta.dirname, '..', '..', 'schemas', 'sql');

export interface TestApi {
  url: string;
  adminToken: string;
  db: Awaited<ReturnType<typeof createTestDatabase>>;
  /** Every log line the API wrote, as text (for the log-redaction canary). */
  logs(): string;
  call(
    method: string,
    path: string,
    opts?: CallOptions,
  ): Promise<{ status: number; headers: Headers; body: any }>;
  /** Mints a token with these scopes (as admin). */
  token(scopes: string[], extra?: Record<string, unknown>): Promise<string>;
  /** Submits a GDPR request for one user_id with `token` (a fresh Idempotency-Key); its id. */
  submitUser(token: string, value: string): Promise<string>;
  stop(): Promise<void>;
}

export interface CallOptions {
  token?: string | null;
  body?: unknown;
  /** Sent as is (no JSON encoding) when a string or Buffer. */
  raw?: string | Buffer;
  headers?: Record<string, string>;
}

/**
 * The real API on a random port, over a fresh migrated database on the real PostgreSQL.
 * `env` overrides configuration (rate limits, batch size, ...).
 */
export async function startTestApi(env: Record<string, string> = {}): Promise<TestApi> {
  const db = await createTestDatabase();
  await migrate(db.pool, SCHEMAS_SQL);
  const adminToken = `adm_${randomBytes(24).toString('base64url')}`;
  const cfg = loadApiConfig({
    ...process.env,
    DATABASE_URL: db.url,
    PORT: '0',
    HOST: '127.0.0.1',
    ERASURE_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'debug',
    TOKEN_CACHE_MS: '0',
    ...env,
  });
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d.toString('utf8')));
  const running = await start(cfg, createLogger({ service: 'api', level: 'debug', stream }));

  const call: TestApi['call'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    const token = opts.token === undefined ? adminToken : opts.token;
    if (token !== null) headers['authorization'] ??= `Bearer ${token}`;
    let body: string | Buffer | undefined;
    if (opts.raw !== undefined) body = opts.raw;
    else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${running.url}${path}`, { method, headers, body: body as BodyInit | undefined });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.status, headers: res.headers, body: parsed };
  };

  return {
    url: running.url,
    adminToken,
    db,
    logs: () => chunks.join(''),
    call,
    async token(scopes, extra = {}) {
      const res = await call('POST', '/v1/tokens', { body: { scopes, ...extra } });
      if (res.status !== 201)
        throw new Error(`minting a token failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.token as string;
    },
    async submitUser(token, value) {
      const res = await call('POST', '/v1/erasure-requests', {
        token,
        headers: { 'idempotency-key': randomUUID() },
        body: { identifiers: [{ type: 'user_id', value }], reason: 'gdpr_art17' },
      });
      if (res.status !== 202) throw new Error(`submitting failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.id as string;
    },
    async stop() {
      await running.stop();
      await db.drop();
    },
  };
}
