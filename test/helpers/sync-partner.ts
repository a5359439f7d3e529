/**
 * Helpers for the sync dispatcher's integration tests: real HTTP partner servers on
 * 127.0.0.1 random ports (the dispatcher's own client calls them; nothing is mocked), the
 * dispatcher started against a test API's database, and the API calls the tests repeat.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { Registry } from 'prom-client';
import { createLogger } from '../../services/shared/logger.ts';
import { loadSyncDispatcherConfig, start } from '../../services/sync-dispatcher/index.ts';
import type { TestApi } from './api.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface PartnerCall {
  /** Arrival order at this partner, from 1. */
  readonly n: number;
  /** Date.now() when the request had been read. */
  readonly at: number;
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** Answers one call: write to `res` now, later, or never (a hang). */
export type PartnerHandler = (call: PartnerCall, res: http.ServerResponse) => void | Promise<void>;

export interface Partner {
  readonly url: string;
  readonly calls: PartnerCall[];
  /** Calls being answered right now. */
  inFlight(): number;
  setHandler(h: PartnerHandler): void;
  close(): Promise<void>;
}

export const reply =
  (status: number, body = '', headers: Record<string, string> = {}): PartnerHandler =>
  (_call, res) => {
    res.writeHead(status, { 'content-type': 'text/plain', ...headers });
    res.end(body);
  };

export async function startPartner(
  handler: PartnerHandler = reply(200, '{"deleted":true}'),
): Promise<Partner> {
  const calls: PartnerCall[] = [];
  let handle = handler;
  let inFlight = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const call: PartnerCall = {
        n: calls.length + 1,
        at: Date.now(),
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      calls.push(call);
      inFlight += 1;
      res.on('close', () => (inFlight -= 1));
      void handle(call, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    inFlight: () => inFlight,
    setHandler: (h) => (handle = h),
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Test defaults: fast polls and short backoffs, so retries take milliseconds, not minutes. */
export const FAST_ENV: Record<string, string> = {
  LOG_LEVEL: 'debug',
  SYNC_POLL_INTERVAL_MS: '50',
  SYNC_TARGET_REFRESH_MS: '100',
  SYNC_SWEEP_INTERVAL_MS: '100',
  SYNC_RETRY_INITIAL_MS: '50',
  SYNC_RETRY_MAX_MS: '200',
  SYNC_LEASE_MARGIN_MS: '2000',
  SYNC_SHUTDOWN_GRACE_MS: '2000',
};

export async function startDispatcher(api: TestApi, env: Record<string, string> = {}) {
  const registry = new Registry();
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d.toString('utf8')));
  const cfg = loadSyncDispatcherConfig({ ...process.env, DATABASE_URL: api.db.url, ...FAST_ENV, ...env });
  const running = await start(cfg, createLogger({ service: 'sync-dispatcher', level: 'debug', stream }), {
    registry,
  });
  return {
    ...running,
    id: cfg.dispatcherId,
    registry,
    logs: () => chunks.join(''),
    /** A metric's value for these labels, or undefined. */
    async metric(name: string, labels: Record<string, string>): Promise<number | undefined> {
      const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
      const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
      return v?.value;
    },
  };
}

/** Target, identifier type and request calls through the real API. */
export function syncScenario(api: TestApi, intakeToken: () => string) {
  let seq = 0;
  return {
    /** A custom identifier type of its own, so a test's requests reach only its targets. */
    async identifierType(): Promise<string> {
      const name = `idt_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
      const res = await api.call('POST', '/v1/identifier-types', { body: { name, pattern: '^.+$' } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return name;
    },
    /** Registers a sync_http target; `http` is merged over a DELETE to `${url}/erase/{{type}}`. */
    async target(
      type: string,
      url: string,
      extra: Record<string, unknown> = {},
      httpExtra: Record<string, unknown> = {},
    ) {
      const name = `sync-${process.pid}-${++seq}`;
      const body = {
        name,
        kind: 'sync_http',
        identifierTypes: [type],
        http: {
          urlTemplate: `${url}/erase/{{${type}}}`,
          timeoutMs: 2000,
          concurrency: 4,
          rateLimitPerSecond: 1000,
          ...httpExtra,
        },
        ...extra,
      };
      const res = await api.call('POST', '/v1/targets', { body });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return name;
    },
    async submit(
      type: string,
      value = `v-${randomUUID()}`,
      extra: Record<string, unknown> = {},
    ): Promise<string> {
      const res = await api.call('POST', '/v1/erasure-requests', {
        token: intakeToken(),
        headers: { 'idempotency-key': randomUUID() },
        body: { identifiers: [{ type, value }], reason: 'gdpr_art17', ...extra },
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      return res.body.id as string;
    },
    async view(id: string) {
      const res = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intakeToken() });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    },
    async task(id: string, target: string) {
      const { rows } = await api.db.pool.query(
        `SELECT state, outcome, attempts, last_error, evidence, lease_owner, next_attempt_at, dispatched_at
           FROM erasure_tasks WHERE request_id = $1 AND target = $2`,
        [id, target],
      );
      return rows[0];
    },
    async journal(id: string) {
      const { rows } = await api.db.pool.query(
        `SELECT kind, actor, detail FROM journal WHERE request_id = $1 ORDER BY id`,
        [id],
      );
      return rows as { kind: string; actor: string; detail: Record<string, unknown> }[];
    },
  };
}

/** Polls `check` until it returns a truthy value; fails the test with `what` after the time limit. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false | null>,
  timeoutMs = 15_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`not reached within ${timeoutMs} ms: ${what}`);
    await sleep(50);
  }
}
