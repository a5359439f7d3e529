/**
 * Sync dispatcher benchmark (issue 5). Prints figures; asserts nothing.
 *
 * Fresh database, the API in this process, partner targets as HTTP servers on loopback in
 * this process, dispatchers as child processes (test/helpers/run-sync-dispatcher.ts) unless
 * noted. Phases:
 *   throughput   N tasks for a fast target (answers 200 at once) inserted up front, then
 *                drained by 1 dispatcher replica, then (new tasks, new target) by 4 replicas
 *                (separate processes): calls/s from the first call to the last task acked.
 *                Each replica gets the target's full concurrency (64): limits are per replica.
 *   convergence  a target that answers 429 (Retry-After: 1) above 200 calls/s (a token
 *                bucket, burst 20), registered at 1000 calls/s, a backlog of tasks, one
 *                dispatcher (in this process, to read its rate gauge) for S seconds: calls/s
 *                the target received each second, seconds until the 5-s average stays within
 *                110% of 200, and the overshoot after that.
 *   latency      single requests through the API at R/s for L seconds, each with two sync
 *                targets only (answering at once): accept → completed (completed_at -
 *                received_at, database clock), p50 / p99 / max.
 * Options: --tasks=N (5000), --seconds=S (30), --rate=R (50), --latency-seconds=L (15).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { Registry } from 'prom-client';
import { createLogger } from '../../services/shared/logger.ts';
import { createTokenBucket } from '../../services/shared/token-bucket.ts';
import { loadSyncDispatcherConfig, start as startDispatcher } from '../../services/sync-dispatcher/index.ts';
import { startTestApi, type TestApi } from '../../test/helpers/api.ts';
import { REPO_ROOT } from '../stack/stack-config.ts';
import { flag, scalar, step, stopChild } from './bench-util.ts';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
const print = (line: string) => process.stdout.write(`${line}\n`);
const DISPATCHER = join(REPO_ROOT, 'test', 'helpers', 'run-sync-dispatcher.ts');
const DISPATCHER_ENV = {
  LOG_LEVEL: 'warn',
  SYNC_POLL_INTERVAL_MS: '200',
  SYNC_TARGET_REFRESH_MS: '1000',
  SYNC_MAX_CLAIM: '64',
};

// ------------------------------------------------------------------ partner servers
interface Server {
  url: string;
  /** Arrival times (ms) of every call, and the status answered. */
  log: { at: number; status: number }[];
  close(): Promise<void>;
}
async function server(answer: () => { status: number; headers?: Record<string, string> }): Promise<Server> {
  const log: Server['log'] = [];
  const s = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const a = answer();
      log.push({ at: Date.now(), status: a.status });
      res.writeHead(a.status, { 'content-type': 'text/plain', ...(a.headers ?? {}) });
      res.end(a.status === 200 ? 'deleted' : '');
    });
  });
  s.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    log,
    close: async () => {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    },
  };
}

// ------------------------------------------------------------------ helpers
const children = new Set<ChildProcess>();
async function replica(dbUrl: string, extra: Record<string, string> = {}): Promise<ChildProcess> {
  const c = spawn(process.execPath, ['--import', 'tsx', DISPATCHER], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...DISPATCHER_ENV, DATABASE_URL: dbUrl, ...extra },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(c);
  c.once('exit', () => children.delete(c));
  await new Promise<void>((resolve, reject) => {
    c.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    c.once('exit', (code) => reject(new Error(`dispatcher exited: ${code}`)));
  });
  return c;
}

async function target(
  api: TestApi,
  name: string,
  type: string,
  url: string,
  httpExtra: Record<string, unknown>,
) {
  const res = await api.call('POST', '/v1/targets', {
    body: {
      name,
      kind: 'sync_http',
      identifierTypes: [type],
      http: { urlTemplate: `${url}/erase/{{${type}}}`, timeoutMs: 5000, ...httpExtra },
    },
  });
  if (res.status !== 201) throw new Error(`target: ${res.status} ${JSON.stringify(res.body)}`);
}

/** N due tasks for `targetName`, written straight to the tables (intake is not measured here). */
async function insertTasks(pool: pg.Pool, targetName: string, n: number): Promise<void> {
  await pool.query(
    `WITH r AS (
       INSERT INTO erasure_requests (id, owner, idempotency_key, body_sha256, subject_hash, identifiers, reason,
                                     priority, status, deadline)
       SELECT gen_random_uuid(), 'bench', $2 || '-' || i, '\\x00', decode(md5($2 || i::text), 'hex'),
              jsonb_build_array(jsonb_build_object('type', 'device_id', 'value', 'd-' || i)),
              'tester_cleanup', 'bulk', 'scheduled', now() + interval '7 days'
         FROM generate_series(1, $1::int) i
       RETURNING id)
     INSERT INTO erasure_tasks (request_id, target, priority, next_attempt_at)
     SELECT id, $3, 2, now() FROM r`,
    [n, randomUUID(), targetName],
  );
}

async function drain(api: TestApi, name: string, n: number, replicas: number): Promise<number> {
  const fast = await server(() => ({ status: 200 }));
  await target(api, name, 'device_id', fast.url, { rateLimitPerSecond: 100_000, concurrency: 64 });
  await insertTasks(api.db.pool, name, n);
  const procs: ChildProcess[] = [];
  for (let i = 0; i < replicas; i++) procs.push(await replica(api.db.url));
  const countSql = `SELECT count(*) AS n FROM erasure_tasks WHERE target = $1 AND state = 'acked'`;
  while ((await scalar(api.db.pool, countSql, [name])) < n) await sleep(100);
  const end = Date.now();
  await Promise.all(procs.map(stopChild));
  await fast.close();
  const first = fast.log[0]?.at ?? end;
  // Pause the target so later phases' dispatchers leave it alone.
  await api.call('PATCH', `/v1/targets/${name}`, { body: { paused: true } });
  return n / ((end - first) / 1000);
}

async function convergence(api: TestApi, seconds: number) {
  const cap = 200;
  const bucket = createTokenBucket({ ratePerSecond: cap, burst: 20, now: Date.now });
  const capped = await server(() =>
    bucket.take().ok ? { status: 200 } : { status: 429, headers: { 'retry-after': '1' } },
  );
  const name = 'bench-capped';
  await target(api, name, 'device_id', capped.url, { rateLimitPerSecond: 1000, concurrency: 64 });
  await insertTasks(api.db.pool, name, Math.max(20_000, cap * seconds * 3));
  const registry = new Registry();
  const cfg = loadSyncDispatcherConfig({ ...process.env, ...DISPATCHER_ENV, DATABASE_URL: api.db.url });
  const d = await startDispatcher(cfg, createLogger({ service: 'sync-dispatcher', level: 'warn' }), {
    registry,
  });
  const t0 = Date.now();
  const rates: number[] = [];
  for (let s = 1; s <= seconds; s++) {
    await sleep(t0 + s * 1000 - Date.now());
    const g = (await registry.getMetricsAsJSON()).find(
      (m) => m.name === 'erasure_sync_rate_limit_per_second',
    );
    rates.push(Number(g?.values.find((v) => v.labels['target'] === name)?.value ?? NaN));
  }
  await d.stop();
  await capped.close();
  await api.call('PATCH', `/v1/targets/${name}`, { body: { paused: true } });
  const perSecond = Array.from({ length: seconds }, (_, i) => {
    const calls = capped.log.filter((c) => c.at >= t0 + i * 1000 && c.at < t0 + (i + 1) * 1000);
    return { sent: calls.length, ok: calls.filter((c) => c.status === 200).length };
  });
  const avg5 = (i: number) =>
    perSecond.slice(i, i + 5).reduce((n, x) => n + x.sent, 0) / perSecond.slice(i, i + 5).length;
  let settleAt = perSecond.length;
  for (let i = perSecond.length - 5; i >= 0; i--) {
    if (avg5(i) <= cap * 1.1) settleAt = i;
    else break;
  }
  const after = perSecond.slice(settleAt);
  const sent = after.reduce((n, x) => n + x.sent, 0);
  const ok = after.reduce((n, x) => n + x.ok, 0);
  return {
    perSecond,
    rates,
    settleSeconds: settleAt,
    peakFirst5: Math.max(...perSecond.slice(0, 5).map((x) => x.sent)),
    overshootMeanPct: after.length ? ((sent / after.length - cap) / cap) * 100 : NaN,
    overshootPeakPct: after.length ? ((Math.max(...after.map((x) => x.sent)) - cap) / cap) * 100 : NaN,
    goodput: after.length ? ok / after.length : NaN,
    throttledPct: sent ? ((sent - ok) / sent) * 100 : NaN,
  };
}

async function latency(api: TestApi, rate: number, seconds: number) {
  const a = await server(() => ({ status: 200 }));
  const b = await server(() => ({ status: 204 }));
  await target(api, 'bench-lat-a', 'email', a.url, { rateLimitPerSecond: 1000, concurrency: 16 });
  await target(api, 'bench-lat-b', 'email', b.url, { rateLimitPerSecond: 1000, concurrency: 16 });
  const d = await replica(api.db.url, { SYNC_POLL_INTERVAL_MS: '1000' });
  const token = await api.token(['submit', 'read']);
  const ids: string[] = [];
  const t0 = Date.now();
  const total = rate * seconds;
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    await sleep(Math.max(0, t0 + (i * 1000) / rate - Date.now()));
    inflight.push(
      api
        .call('POST', '/v1/erasure-requests', {
          token,
          headers: { 'idempotency-key': randomUUID() },
          body: {
            identifiers: [{ type: 'email', value: `lat-${i}@example.org` }],
            reason: 'account_deletion',
          },
        })
        .then((res) => {
          if (res.status === 202) ids.push(res.body.id);
        }),
    );
  }
  await Promise.all(inflight);
  const open = `SELECT count(*) AS n FROM erasure_requests WHERE id = ANY ($1::uuid[]) AND status <> 'completed'`;
  const until = Date.now() + 60_000;
  while ((await scalar(api.db.pool, open, [ids])) > 0 && Date.now() < until) await sleep(200);
  await stopChild(d);
  await a.close();
  await b.close();
  const { rows } = await api.db.pool.query<{ ms: number }>(
    `SELECT extract(epoch FROM completed_at - received_at) * 1000 AS ms
       FROM erasure_requests WHERE id = ANY ($1::uuid[]) AND completed_at IS NOT NULL ORDER BY 1`,
    [ids],
  );
  const ms = rows.map((r) => Number(r.ms));
  const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))] ?? NaN;
  return {
    accepted: ids.length,
    completed: ms.length,
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    max: ms.at(-1) ?? NaN,
  };
}

async function main(): Promise<void> {
  const tasks = flag('tasks', 5000);
  const seconds = flag('seconds', 30);
  const rate = flag('rate', 50);
  const latencySeconds = flag('latency-seconds', 15);
  const api = await startTestApi({ LOG_LEVEL: 'error', RATE_LIMIT_PER_SECOND: '100000' });
  try {
    step(`throughput: ${tasks} tasks, 1 replica`);
    const one = await drain(api, 'bench-fast-1', tasks, 1);
    step(`throughput: ${tasks * 2} tasks, 4 replicas`);
    const four = await drain(api, 'bench-fast-4', tasks * 2, 4);
    step(`convergence: ${seconds} s against a target capped at 200 calls/s`);
    const conv = await convergence(api, seconds);
    step(`latency: ${rate} requests/s for ${latencySeconds} s, two sync targets each`);
    const lat = await latency(api, rate, latencySeconds);

    print('');
    print('sync dispatcher benchmark');
    print(
      `throughput, fast loopback target, 1 replica (concurrency 64):  ${one.toFixed(0)} calls/s (${tasks} tasks)`,
    );
    print(
      `throughput, fast loopback target, 4 replicas (64 each):        ${four.toFixed(0)} calls/s (${tasks * 2} tasks)`,
    );
    print(`convergence against a 200 calls/s cap (registered 1000/s):`);
    print(`  calls received per second: ${conv.perSecond.map((x) => x.sent).join(' ')}`);
    print(`  adaptive rate per second:  ${conv.rates.map((r) => r.toFixed(0)).join(' ')}`);
    print(
      `  peak in the first 5 s: ${conv.peakFirst5} calls/s (${(((conv.peakFirst5 - 200) / 200) * 100).toFixed(0)}% over)`,
    );
    print(`  settled (5-s average ≤ 110% of the cap from then on) after ${conv.settleSeconds} s`);
    print(
      `  after settling: mean overshoot ${conv.overshootMeanPct.toFixed(1)}%, peak second ${conv.overshootPeakPct.toFixed(1)}%, ` +
        `accepted ${conv.goodput.toFixed(0)} calls/s, 429s ${conv.throttledPct.toFixed(1)}% of calls`,
    );
    print(
      `accept → completed, sync targets only (${lat.completed}/${lat.accepted} completed): ` +
        `p50 ${lat.p50.toFixed(0)} ms, p90 ${lat.p90.toFixed(0)} ms, p99 ${lat.p99.toFixed(0)} ms, max ${lat.max.toFixed(0)} ms`,
    );
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await api.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    for (const c of children) c.kill('SIGKILL');
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
