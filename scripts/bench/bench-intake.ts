/**
 * Intake benchmark: how many erasure requests a second the API accepts durably, and how
 * that compares with PostgreSQL running the same accept statement with no HTTP in front.
 *
 * One fresh, migrated database with three targets holding user_id (two async_event, one
 * sync_http), so every request plans 3 tasks, a journal entry and an outbox event, as in
 * production. Phases, with the tables emptied before each:
 *   single  POST /v1/erasure-requests, a unique Idempotency-Key and user_id per request;
 *   pgbench INSERT_ACCEPTED (read from services/api/intake/insert-requests.ts, so it cannot
 *           drift) with one row per transaction, as many clients as HTTP connections;
 *   batch   POST /v1/erasure-requests:batch, 10,000 requests per call.
 *   floor   PostgreSQL alone writing, by COPY, the rows the batch writes per subject
 *           (copy-floor.ts), on as many connections as the batch phase: the most subjects
 *           a second this machine's PostgreSQL takes, whatever is in front of it. Also
 *           with only the request and outbox rows (a leaner write model's floor).
 * The API and the load generator (autocannon) run in separate child processes. At the
 * deadline the load generator stops sending and waits for the answers in flight, so every
 * committed row has a counted response and "rows = 202 responses" can be checked exactly.
 *
 * Options: --no-sealer (do not run the journal sealer beside the API), --seconds=N (20), --connections=N (50), --pool-size=N (API DB_POOL_SIZE, 20),
 * --api-workers=N (API_WORKERS, 2: one per core of this machine; "api node" CPU counts them all),
 * --batch-seconds=N (15), --batch-connections=N (2), --warmup-seconds=N (3, per phase),
 * --phases=single,pgbench,batch,floor (all; leave some out to try settings faster),
 * --pgbench-mode=prepared|extended|simple (prepared), --api-node-args="--cpu-prof ..." (none;
 * node options for the API process, e.g. to profile it: the profile is written when it stops).
 * Progress goes to stderr, figures to stdout.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { COMPLETED_TOPIC, REQUESTED_TOPIC } from '../../services/api/intake/insert-requests.ts';
import { migrate } from '../../services/shared/db/migrate.ts';
import { SCHEMAS_SQL } from '../../test/helpers/api.ts';
import { createTestDatabase, infra } from '../../test/helpers/infra.ts';
import { REPO_ROOT } from '../stack/stack-config.ts';
import { runCopyFloor, type FloorResult, type FloorShape, type FloorTarget } from './copy-floor.ts';
import {
  CLK_TCK,
  flag,
  machineBusyTicks,
  mostPerSecond,
  postgresTicks,
  procTicks,
  step,
  stopChild,
  treeTicks,
} from './bench-util.ts';

const SELF = fileURLToPath(import.meta.url);
const BATCH_SIZE = 10_000;

// ---------------------------------------------------------------- load generator (child)

/** What the load worker runs; batchSize 0 means single requests. */
interface LoadSpec {
  url: string;
  token: string;
  connections: number;
  seconds: number;
  batchSize: number;
}

interface LoadResult {
  durationS: number;
  sent: number;
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
  p50Ms: number;
  p99Ms: number;
  /** Batch phase: per-item results summed from the response bodies. */
  itemsAccepted: number;
  itemsFailed: number;
  /** The worker's own CPU over the load window, ms. */
  cpuMs: number;
}

/** CPU-seconds the API's processes used over a load window. */
interface ApiCpu {
  apiCpuS: number;
}

/** The parts of autocannon (CommonJS, untyped) this script uses. */
interface AutocannonClient {
  reqsMade: number;
  responseMax?: number;
  on(event: 'request', fn: () => void): void;
  on(event: 'response', fn: (status: number, bytes: number, ms: number) => void): void;
}
type Autocannon = (
  opts: Record<string, unknown>,
  cb: (
    err: Error | null,
    res: { statusCodeStats: Record<string, { count: number }>; errors: number; timeouts: number },
  ) => void,
) => { stop(): void };

function percentile(sorted: number[], q: number): number {
  return sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * Runs autocannon and prints one JSON LoadResult line. `[<id>]` (idReplacement) becomes a
 * fresh id per request, so keys and subjects never repeat; batch items add their index.
 */
async function runLoadWorker(spec: LoadSpec): Promise<void> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const single = spec.batchSize === 0;
  const item = (i: number) => ({
    identifiers: [{ type: 'user_id', value: `bench-[<id>]${single ? '' : `-${i}`}` }],
    reason: 'gdpr_art17',
    ...(single ? {} : { idempotencyKey: `[<id>]-${i}` }),
  });
  const body = JSON.stringify(
    single ? item(0) : { requests: Array.from({ length: spec.batchSize }, (_, i) => item(i)) },
  );
  const headers: Record<string, string> = {
    authorization: `Bearer ${spec.token}`,
    'content-type': 'application/json',
    ...(single ? { 'idempotency-key': '[<id>]' } : {}),
  };
  const timeoutS = single ? 10 : 120;
  const clients: AutocannonClient[] = [];
  const latencies: number[] = [];
  let sent = 0;
  let lastResponseAt = 0;
  let itemsAccepted = 0;
  let itemsFailed = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  process.stdout.write('started\n');
  const res = await new Promise<Parameters<Parameters<Autocannon>[1]>[1]>((resolve, reject) => {
    autocannon(
      {
        url: `${spec.url}/v1/erasure-requests${single ? '' : ':batch'}`,
        method: 'POST',
        connections: spec.connections,
        // A backstop only: the deadline below ends the run once the answers in flight are in.
        duration: spec.seconds + timeoutS + 30,
        timeout: timeoutS,
        headers,
        body,
        idReplacement: true,
        setupClient: (c: AutocannonClient) => {
          clients.push(c);
          c.on('request', () => sent++);
          c.on('response', (_status, _bytes, ms) => {
            latencies.push(ms);
            lastResponseAt = performance.now();
          });
        },
        verifyBody: single
          ? undefined
          : (text: string) => {
              const m = /"accepted":(\d+),"failed":(\d+)/.exec(text.slice(0, 200));
              if (m) {
                itemsAccepted += Number(m[1]);
                itemsFailed += Number(m[2]);
              }
              return true;
            },
      },
      (err, r) => (err ? reject(err) : resolve(r)),
    );
    // Stop sending: each connection ends after the answer to its request in flight.
    setTimeout(() => {
      for (const c of clients) c.responseMax = Math.max(1, c.reqsMade);
    }, spec.seconds * 1000);
  });
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const out: LoadResult = {
    durationS: (Math.max(lastResponseAt, t0) - t0) / 1000,
    sent,
    statuses: Object.fromEntries(Object.entries(res.statusCodeStats).map(([k, v]) => [k, v.count])),
    errors: res.errors,
    timeouts: res.timeouts,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    itemsAccepted,
    itemsFailed,
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------- child processes

const children = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

// ---------------------------------------------------------------- CPU accounting

interface CpuSample {
  at: number;
  api: number;
  postgres: number;
  reaped: number;
  busy: number;
}

function sampleCpu(apiPid: number): CpuSample {
  return {
    at: performance.now(),
    api: treeTicks(apiPid),
    postgres: postgresTicks(),
    reaped: procTicks(process.pid)?.children ?? 0,
    busy: machineBusyTicks(),
  };
}

/**
 * CPU use between two samples, in % of one core. The load generator is `load`: its own CPU
 * in ms when it reports it (autocannon), else what this process reaped from it (pgbench).
 */
function cpuLine(a: CpuSample, b: CpuSample, load: { name: string; ms?: number }): string {
  const s = (b.at - a.at) / 1000;
  const pct = (ticks: number) => (100 * ticks) / CLK_TCK / s;
  const api = pct(b.api - a.api);
  const postgres = pct(b.postgres - a.postgres);
  const gen = load.ms === undefined ? pct(b.reaped - a.reaped) : load.ms / 10 / s;
  const busy = pct(b.busy - a.busy);
  const other = Math.max(0, busy - api - postgres - gen);
  const f = (v: number) => `${v.toFixed(0)}%`;
  return (
    `api node ${f(api)}, postgres ${f(postgres)}, ${load.name} ${f(gen)}, other ${f(other)} ` +
    `(machine busy ${f(busy)} of ${availableParallelism() * 100}%)`
  );
}

// ---------------------------------------------------------------- setup

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

const SYNC_HTTP = {
  method: 'DELETE',
  urlTemplate: 'http://127.0.0.1:9/u/{{user_id}}',
  headers: {},
  bodyTemplate: null,
  timeoutMs: 10000,
  rateLimitPerSecond: 50,
  concurrency: 4,
  notFoundStatuses: [404],
};

async function registerTargets(pool: pg.Pool): Promise<void> {
  await pool.query(
    `INSERT INTO targets (name, kind, identifier_types, ack_sla_seconds, http) VALUES
       ('bench-events-a', 'async_event', ARRAY['user_id'], 86400, NULL),
       ('bench-events-b', 'async_event', ARRAY['user_id'], 86400, NULL),
       ('bench-http',     'sync_http',   ARRAY['user_id'], 86400, $1::jsonb)`,
    [JSON.stringify(SYNC_HTTP)],
  );
}

async function startApi(env: NodeJS.ProcessEnv, url: string, nodeArgs: string[]): Promise<ChildProcess> {
  // stdout of the API (its log) goes to our stderr: stdout carries the figures only.
  const child = track(
    spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'services/main.ts', 'api'], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 2, 2],
    }),
  );
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    if (child.exitCode !== null)
      throw new Error(`the API exited with code ${child.exitCode} before answering`);
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return child;
    await sleep(200);
  }
  throw new Error('the API did not answer /healthz within 60 s');
}

async function runLoad(spec: LoadSpec, apiPid: number): Promise<LoadResult & ApiCpu & { cpu: string }> {
  const child = track(
    spawn(process.execPath, ['--import', 'tsx', SELF, '--load-worker', JSON.stringify(spec)], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  let text = '';
  let before: CpuSample | undefined;
  let after: CpuSample | undefined;
  child.stdout!.on('data', (d: Buffer) => {
    text += d.toString('utf8');
    if (!before && text.includes('started\n')) before = sampleCpu(apiPid);
    if (!after && /\n\{.*\}\n/.test(text)) after = sampleCpu(apiPid);
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const line = text.split('\n').find((l) => l.startsWith('{'));
  if (code !== 0 || !line || !before || !after)
    throw new Error(`the load generator failed (exit code ${code})`);
  const result = JSON.parse(line) as LoadResult;
  return {
    ...result,
    apiCpuS: (after.api - before.api) / CLK_TCK,
    cpu: cpuLine(before, after, { name: 'load generator', ms: result.cpuMs }),
  };
}

// ---------------------------------------------------------------- pgbench

function pgbenchPath(): string {
  const bindir = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' }).stdout?.trim();
  const candidates = [
    ...(bindir ? [join(bindir, 'pgbench')] : []),
    ...(existsSync('/usr/lib/postgresql')
      ? readdirSync('/usr/lib/postgresql')
          .sort()
          .reverse()
          .map((v) => `/usr/lib/postgresql/${v}/bin/pgbench`)
      : []),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error('pgbench not found (pg_config --bindir, /usr/lib/postgresql/*/bin)');
  return found;
}

/**
 * What the API binds to INSERT_ACCEPTED's array parameters, by parameter number ($1 first),
 * for one request; null for the scalars ($13 owner, $14 actor).
 */
const ONE_ROW: readonly ([string, string] | null)[] = [
  ['uuid', 'gen_random_uuid()'],
  ['text', `'bench-' || :client_id || '-' || :n`],
  ['bytea', `sha256(('body-' || :client_id || '-' || :n)::bytea)`],
  // Unique per transaction, like the HMAC the API computes: the one-in-flight index would
  // otherwise turn rows into conflicts.
  ['bytea', `sha256(('subject-' || :client_id || '-' || :n)::bytea)`],
  [
    'jsonb',
    `jsonb_build_array(jsonb_build_object('type', 'user_id', 'value', 'bench-' || :client_id || '-' || :n))`,
  ],
  ['text', `'user_id'`],
  ['text', `'gdpr_art17'`],
  ['text', `'legal'`],
  ['smallint', '0'],
  ['timestamptz', 'NULL'],
  ['interval', `'1 month'`],
  ['uuid', 'gen_random_uuid()'],
  null,
  null,
  // deadline_from: a gdpr_art17 deadline counts from receipt.
  ['timestamptz', 'NULL'],
];

/**
 * A pgbench script running the API's accept statement itself (taken from its source, so the
 * two cannot drift) with one-element arrays. Fails loudly when the statement's parameters
 * change shape, rather than measuring something else.
 */
function pgbenchScript(owner: string, actor: string): string {
  const src = readFileSync(join(REPO_ROOT, 'services', 'api', 'intake', 'insert-requests.ts'), 'utf8');
  const m = /const INSERT_ACCEPTED = `([\s\S]*?)`;/.exec(src);
  if (!m) throw new Error('INSERT_ACCEPTED not found in insert-requests.ts: update bench-intake.ts');
  const types: string[] = [];
  const sql = m[1]!
    .replaceAll('${REQUESTED_TOPIC}', REQUESTED_TOPIC)
    .replaceAll('${COMPLETED_TOPIC}', COMPLETED_TOPIC)
    .replace(/\$(\d+)::(\w+)\[\]/g, (_all, n: string, type: string) => {
      types.push(type);
      const row = ONE_ROW[Number(n) - 1];
      return row && row[0] === type ? `ARRAY[(${row[1]})::${type}]` : `<unexpected $${n}::${type}[]>`;
    })
    .replace(/\$13\b/g, `'${owner}'`)
    .replace(/\$14\b/g, `'${actor}'`);
  const arrayTypes = ONE_ROW.flatMap((r) => (r ? [r[0]] : []));
  if (types.join() !== arrayTypes.join() || /\$\d|\$\{|<unexpected/.test(sql)) {
    throw new Error(
      `INSERT_ACCEPTED's parameters changed (${types.join(', ')}): update ONE_ROW in bench-intake.ts`,
    );
  }
  return `\\set n random(1, 9223372036854775806)\n${sql.trim()};\n`;
}

interface PgbenchResult {
  tps: number;
  latencyMs: number;
  transactions: number;
  failed: number;
  cpu: string;
}

async function runPgbench(
  dbUrl: string,
  opts: { clients: number; seconds: number; mode: string; script: string; apiPid: number },
) {
  const { clients, seconds, script, apiPid } = opts;
  const dir = mkdtempSync(join(tmpdir(), 'bench-intake-'));
  const file = join(dir, 'accept.sql');
  writeFileSync(file, script);
  const u = new URL(dbUrl);
  const args = [
    ...['-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username)],
    ...[
      '-n',
      '-M',
      opts.mode,
      '-c',
      String(clients),
      '-j',
      String(Math.min(clients, availableParallelism())),
    ],
    ...['-T', String(seconds), '-P', '5', '-f', file, u.pathname.slice(1)],
  ];
  try {
    const child = track(
      spawn(pgbenchPath(), args, {
        env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password) },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString('utf8');
      process.stderr.write(d);
    });
    const before = sampleCpu(apiPid);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    const after = sampleCpu(apiPid);
    const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
    const result: PgbenchResult = {
      tps: num(/tps = ([\d.]+) \(without initial connection time\)/),
      latencyMs: num(/latency average = ([\d.]+) ms/),
      transactions: num(/number of transactions actually processed: (\d+)/),
      failed: num(/number of failed transactions: (\d+)/) || 0,
      cpu: cpuLine(before, after, { name: 'pgbench' }),
    };
    if (code !== 0 || Number.isNaN(result.tps)) {
      throw new Error(
        `pgbench failed (exit code ${code}): ${(err || out).trim().split('\n').slice(-3).join(' | ')}`,
      );
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- write floor

interface FloorFigures extends FloorResult {
  /** PostgreSQL's CPU per subject, µs. */
  pgUs: number;
  cpu: string;
}

async function measureFloor(
  pool: pg.Pool,
  spec: Parameters<typeof runCopyFloor>[1],
  opts: { connections: number; seconds: number; apiPid: number },
): Promise<FloorFigures> {
  // This process is the COPY client (it builds the rows too); the API idles meanwhile.
  const cpu0 = process.cpuUsage();
  const before = sampleCpu(opts.apiPid);
  const r = await runCopyFloor(pool, spec, opts);
  const after = sampleCpu(opts.apiPid);
  const c = process.cpuUsage(cpu0);
  const pgUs = (((after.postgres - before.postgres) / CLK_TCK) * 1e6) / r.subjects;
  return { ...r, pgUs, cpu: cpuLine(before, after, { name: 'COPY client', ms: (c.user + c.system) / 1000 }) };
}

/**
 * The floor's figures, and what they bound: on this machine's cores, PostgreSQL's floor
 * work per subject alone allows at most cores ÷ that many subjects a second; with the API's
 * measured work per subject (batch phase) added, fewer.
 */
function floorLines(
  floors: Partial<Record<FloorShape, FloorFigures>>,
  batch: (LoadResult & ApiCpu & { rows: number }) | undefined,
  connections: number,
): string[] {
  const cores = availableParallelism();
  const apiUs = batch && batch.rows > 0 ? (batch.apiCpuS * 1e6) / batch.rows : undefined;
  const label: Record<FloorShape, string> = {
    accept: 'request, 3 tasks, journal and outbox rows per subject',
    lean: 'request and outbox rows only',
  };
  return (['accept', 'lean'] as const).flatMap((shape) => {
    const f = floors[shape];
    if (!f) return [];
    const bound = (us: number) => int(mostPerSecond(us));
    return [
      `  floor, PostgreSQL alone by COPY (${label[shape]}; no HTTP, validation or HMAC), ${connections} connections: ` +
        `${int(f.subjects / f.durationS)} subjects/s, PostgreSQL ${ms(f.pgUs)} µs CPU per subject`,
      `    → on ${cores} cores at most ${bound(f.pgUs)} subjects/s from PostgreSQL's share alone` +
        (apiUs === undefined
          ? ''
          : `; ${bound(f.pgUs + apiUs)} with the API's ${ms(apiUs)} µs per subject measured in the batch phase`),
    ];
  });
}

// ---------------------------------------------------------------- phases and report

async function countRows(pool: pg.Pool) {
  const { rows } = await pool.query<{ r: number; t: number; j: number; o: number }>(
    `SELECT (SELECT count(*) FROM erasure_requests)::int AS r, (SELECT count(*) FROM erasure_tasks)::int AS t,
            (SELECT count(*) FROM journal)::int AS j, (SELECT count(*) FROM outbox)::int AS o`,
  );
  return rows[0]!;
}

async function emptyTables(pool: pg.Pool): Promise<void> {
  await pool.query('TRUNCATE erasure_tasks, journal, outbox, erasure_requests');
  // Each phase starts without the previous one's dirty pages and WAL to flush.
  await pool.query('CHECKPOINT').catch(() => undefined);
}

const int = (v: number) => Math.round(v).toLocaleString('en-US');
const ms = (v: number) => (v < 10 ? v.toFixed(1) : int(v));

let dbToDrop: Awaited<ReturnType<typeof createTestDatabase>> | undefined;
let cleaning: Promise<void> | undefined;

/** Stops every child and drops the bench database; safe to call more than once. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all([...children].map(stopChild));
    const db = dbToDrop;
    if (!db) return;
    await Promise.race([db.pool.end(), sleep(3000)]).catch(() => undefined);
    const name = new URL(db.url).pathname.slice(1);
    const admin = new pg.Client({ connectionString: infra.databaseUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
    await admin.end();
    step(`dropped database ${name}`);
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const seconds = flag('seconds', 20);
  const connections = flag('connections', 50);
  const poolSize = flag('pool-size', 20);
  const apiWorkers = flag('api-workers', 2);
  const batchSeconds = flag('batch-seconds', 15);
  const batchConnections = flag('batch-connections', 2);
  const warmupSeconds = flag('warmup-seconds', 3);
  const phaseArg = process.argv.find((a) => a.startsWith('--phases='))?.split('=')[1];
  // prepared: planned once per connection. extended: parsed and planned every time, as the API's
  // unnamed statements are (node-postgres prepares only queries given a name).
  const pgbenchMode = process.argv.find((a) => a.startsWith('--pgbench-mode='))?.split('=')[1] ?? 'prepared';
  if (!['prepared', 'extended', 'simple'].includes(pgbenchMode)) {
    step('--pgbench-mode is prepared, extended or simple');
    process.exit(2);
  }
  const apiNodeArgs = (process.argv.find((a) => a.startsWith('--api-node-args='))?.slice(16) ?? '')
    .split(' ')
    .filter(Boolean);
  const phases = new Set((phaseArg ?? 'single,pgbench,batch,floor').split(','));
  if ([...phases].some((p) => !['single', 'pgbench', 'batch', 'floor'].includes(p))) {
    step('--phases takes a comma-separated list of single, pgbench, batch, floor');
    process.exit(2);
  }

  step('creating and migrating a fresh database with 3 targets holding user_id');
  const db = await createTestDatabase();
  dbToDrop = db;
  await migrate(db.pool, SCHEMAS_SQL);
  await registerTargets(db.pool);

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const token = `bench_${randomBytes(24).toString('base64url')}`;
  step(`starting the API (own process) on ${url}, API_WORKERS=${apiWorkers}, DB_POOL_SIZE=${poolSize}`);
  const api = await startApi(
    {
      ...process.env,
      DATABASE_URL: db.url,
      HOST: '127.0.0.1',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      ERASURE_ADMIN_TOKEN: token,
      RATE_LIMIT_PER_SECOND: '1000000',
      DB_POOL_SIZE: String(poolSize),
      API_WORKERS: String(apiWorkers),
      TOKEN_CACHE_MS: '60000',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
    url,
    apiNodeArgs,
  );
  const apiPid = api.pid!;
  // The journal sealer runs as its own service, as in production; its CPU shows as "other".
  if (!process.argv.includes('--no-sealer')) {
    step('starting the journal sealer (own process)');
    track(
      spawn(process.execPath, ['--import', 'tsx', 'services/main.ts', 'journal-sealer'], {
        cwd: REPO_ROOT,
        env: { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'warn' },
        stdio: ['ignore', 2, 2],
      }),
    );
  }
  // The admin token the API bootstrapped: the owner and actor its requests are written with.
  const admin = (await db.pool.query<{ id: string; owner: string }>('SELECT id, owner FROM api_tokens'))
    .rows[0]!;

  const load = async (label: string, spec: Omit<LoadSpec, 'url' | 'token'>) => {
    step(`${label}: warming up ${warmupSeconds} s`);
    await runLoad({ ...spec, url, token, seconds: warmupSeconds }, apiPid);
    await emptyTables(db.pool);
    step(`${label}: ${spec.seconds} s, ${spec.connections} connections`);
    const r = await runLoad({ ...spec, url, token }, apiPid);
    step(
      `${label}: statuses ${JSON.stringify(r.statuses)}, ${r.errors} errors (${r.timeouts} timeouts), ${r.sent} sent`,
    );
    step(`${label}: cpu ${r.cpu}`);
    return r;
  };

  const single = phases.has('single')
    ? await load('single', { connections, seconds, batchSize: 0 })
    : undefined;
  const singleRows = single ? await countRows(db.pool) : undefined;
  if (singleRows) step(`single: rows ${JSON.stringify(singleRows)}`);

  let bench: PgbenchResult | undefined;
  if (phases.has('pgbench')) {
    await emptyTables(db.pool);
    step(`pgbench: the accept statement, ${connections} clients, ${seconds} s, -M ${pgbenchMode}`);
    const script = pgbenchScript(admin.owner, admin.id);
    bench = await runPgbench(db.url, { clients: connections, seconds, mode: pgbenchMode, script, apiPid });
    const rows = JSON.stringify(await countRows(db.pool));
    step(`pgbench: ${bench.transactions} transactions, ${bench.failed} failed, rows ${rows}`);
    step(`pgbench: cpu ${bench.cpu}, latency average ${bench.latencyMs} ms`);
  }

  let batch: (LoadResult & ApiCpu & { cpu: string; rows: number }) | undefined;
  if (phases.has('batch')) {
    await emptyTables(db.pool);
    const r = await load('batch', {
      connections: batchConnections,
      seconds: batchSeconds,
      batchSize: BATCH_SIZE,
    });
    const rows = await countRows(db.pool);
    step(`batch: rows ${JSON.stringify(rows)}, items accepted ${r.itemsAccepted}, failed ${r.itemsFailed}`);
    batch = { ...r, rows: rows.r };
  }

  const floors: Partial<Record<FloorShape, FloorFigures>> = {};
  if (phases.has('floor')) {
    const targets = (await db.pool.query<FloorTarget>('SELECT name, kind FROM targets ORDER BY name')).rows;
    for (const shape of ['accept', 'lean'] as const) {
      await emptyTables(db.pool);
      const spec = { shape, subjects: BATCH_SIZE, owner: admin.owner, actor: admin.id, targets };
      step(`floor (${shape}): COPY, ${batchConnections} connections, ${batchSeconds} s`);
      floors[shape] = await measureFloor(db.pool, spec, {
        connections: batchConnections,
        seconds: batchSeconds,
        apiPid,
      });
      const rows = await countRows(db.pool);
      step(`floor (${shape}): rows ${JSON.stringify(rows)}, cpu ${floors[shape]!.cpu}`);
    }
  }

  const accepted = single?.statuses['202'] ?? 0;
  const singleRate = single ? accepted / single.durationS : NaN;
  const non202 = Object.entries(single?.statuses ?? {}).filter(([code]) => code !== '202');
  const lines = [
    '',
    `intake benchmark (${seconds} s each, ${connections} connections, 3 targets per request, API_WORKERS=${apiWorkers})`,
    single
      ? `  single: ${int(singleRate)} req/s accepted, p50 ${ms(single.p50Ms)} ms, p99 ${ms(single.p99Ms)} ms, ` +
        `${single.errors} errors${non202.length > 0 ? ` (non-202: ${non202.map(([c, n]) => `${c}×${n}`).join(', ')})` : ''}` +
        `     goal ≥ 3000 req/s, p99 < 50 ms`
      : '  single: skipped',
    bench
      ? `  pgbench same transaction: ${int(bench.tps)} tps (${connections} clients)` +
        `                  ratio X/Y = ${single ? (singleRate / bench.tps).toFixed(2) : 'n/a'}   goal ≥ 0.7`
      : '  pgbench same transaction: skipped',
    batch
      ? `  batch: ${int(batch.rows / batch.durationS)} subjects/s (10,000 per batch), p50 ${ms(batch.p50Ms)} ms, ` +
        `p99 ${ms(batch.p99Ms)} ms  goal ≥ 50,000 subjects/s`
      : '  batch: skipped',
    ...floorLines(floors, batch, batchConnections),
    singleRows
      ? `  rows durable: ${singleRows.r} requests in PostgreSQL ${singleRows.r === accepted ? '=' : '≠'} ` +
        `${accepted} accepted responses`
      : '  rows durable: not checked (single skipped)',
    '',
    `cpu, % of one core (API_WORKERS=${apiWorkers}, DB_POOL_SIZE=${poolSize} per worker; batch ${batchConnections} connections, ${batchSeconds} s):`,
    ...(single ? [`  single:  ${single.cpu}`] : []),
    ...(bench ? [`  pgbench: ${bench.cpu}`] : []),
    ...(batch ? [`  batch:   ${batch.cpu}`] : []),
    ...(floors.accept ? [`  floor:   ${floors.accept.cpu}`] : []),
    ...(floors.lean ? [`  floor (request and outbox rows only): ${floors.lean.cpu}`] : []),
    '',
  ];
  process.stdout.write(lines.join('\n'));
}

if (process.argv[2] === '--load-worker') {
  runLoadWorker(JSON.parse(process.argv[3]!) as LoadSpec).catch((err: unknown) => {
    process.stderr.write(`bench load worker: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
} else {
  let interrupted = false;
  const onSignal = (code: number) => () => {
    interrupted = true;
    step('interrupted: stopping children and dropping the database');
    void cleanup().finally(() => process.exit(code));
  };
  process.once('SIGINT', onSignal(130));
  process.once('SIGTERM', onSignal(143));
  main().then(
    () => cleanup(),
    async (err: unknown) => {
      if (interrupted) return; // the signal handler cleans up and exits
      step(err instanceof Error ? (err.stack ?? err.message) : String(err));
      await cleanup().catch((e: unknown) => step(`cleanup failed: ${String(e)}`));
      process.exit(1);
    },
  );
}
