// A dependency that accepts connections and never answers (a black hole: a TCP port that
// accepts and stays silent) must fail calls within their timeout, never hang a service or
// its shutdown (each test has a timeout of its own, so a client without one fails the test
// instead of hanging it). Each client the services build is pointed at one; so is services/main.ts,
// which must stop within SHUTDOWN_TIMEOUT_MS and say which service did not.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  createDatasetStore,
  createS3Client,
  DatasetStoreError,
} from '../../services/shared/dataset/dataset-store.ts';
import { createPool } from '../../services/shared/db/create-pool.ts';
import { ensureDatabase } from '../../services/shared/ensure-database.ts';
import { createEventCodec, isRetriableRegistryError } from '../../services/shared/event-codec.ts';
import { createRequestedDecoder } from '../../services/exporter/decode-requested.ts';
import { listenForOutbox } from '../../services/shared/listen-for-outbox.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { nameDependency } from '../../services/shared/name-dependency.ts';
import { createTestDatabase, uniqueName } from '../helpers/infra.ts';

const REPO_ROOT = join(import.meta.dirname, '..', '..');
const quiet = createLogger({ service: 'test', level: 'error' });

/** Accepts TCP connections and never answers; closes them all on close(). */
async function blackHole(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** How long `p` took to reject, and with what. */
async function rejection(p: Promise<unknown>): Promise<{ ms: number; err: unknown }> {
  const t0 = Date.now();
  try {
    await p;
  } catch (err) {
    return { ms: Date.now() - t0, err };
  }
  assert.fail('expected a rejection');
}

// One black hole for the whole file.
let hole: Awaited<ReturnType<typeof blackHole>>;
before(async () => (hole = await blackHole()));
after(async () => hole?.close());
const holeDb = () => `postgres://u:p@127.0.0.1:${hole.port}/db`;

describe('clients against a dependency that never answers', () => {
  it(
    'a pool from createPool gives up connecting after the connect timeout',
    { timeout: 10_000 },
    async () => {
      const pool = createPool({
        connectionString: holeDb(),
        max: 1,
        timeouts: { connectMs: 300, queryMs: 1000 },
        logger: quiet,
      });
      const { ms, err } = await rejection(pool.query('SELECT 1'));
      assert.ok(ms >= 250 && ms < 2000, `rejected after ${ms} ms`);
      assert.match(String(err), /connection timeout/);
      assert.equal(nameDependency(err)?.variable, 'DATABASE_URL');
      await pool.end();
    },
  );

  it('ensureDatabase (the example partners) gives up connecting too', { timeout: 10_000 }, async () => {
    const { ms } = await rejection(ensureDatabase(holeDb(), 'partner_x', { connectMs: 300, queryMs: 1000 }));
    assert.ok(ms < 2000, `rejected after ${ms} ms`);
  });

  it(
    'the LISTEN connection settles `ready` after the connect timeout and keeps polling',
    { timeout: 10_000 },
    async () => {
      const listener = listenForOutbox({
        connectionString: holeDb(),
        timeouts: { connectMs: 300, queryMs: 1000 },
        onNotify: () => undefined,
        logger: quiet,
        listener: 'test',
        errorCode: 'ERR_TEST_LISTEN',
        reconnect: { initialMs: 60_000, maxMs: 60_000, multiplier: 1 },
      });
      const t0 = Date.now();
      try {
        await listener.ready;
        assert.ok(Date.now() - t0 < 2000, `ready after ${Date.now() - t0} ms`);
        assert.equal(listener.listening(), false);
      } finally {
        // Also after a failed check: its reconnect timer would keep the test process alive.
        await listener.stop();
      }
    },
  );

  it(
    'S3 calls fail after the socket timeout (retried by the SDK), as a retriable S3 error',
    { timeout: 20_000 },
    async () => {
      const s3 = createS3Client({
        endpoint: `http://127.0.0.1:${hole.port}`,
        region: 'us-east-1',
        accessKeyId: 'k',
        secretAccessKey: 's',
        connectTimeoutMs: 500,
        socketTimeoutMs: 1000,
      });
      try {
        const { ms, err } = await rejection(createDatasetStore(s3, 'bucket').get('x/_manifest.json'));
        // Three attempts of ~1 s each, with the SDK's short backoff between them.
        assert.ok(ms >= 1000 && ms < 8000, `rejected after ${ms} ms`);
        assert.ok(err instanceof DatasetStoreError);
        assert.match(err.message, /^GetObject failed: TimeoutError: .*timed out after 1000 ms of inactivity/);
        assert.equal(err.retriable, true);
        assert.equal(nameDependency(err)?.variable, 'S3_ENDPOINT');
      } finally {
        s3.destroy();
      }
    },
  );

  it('registry lookups fail after the timeout, as retriable', { timeout: 10_000 }, async () => {
    const url = `http://127.0.0.1:${hole.port}/apis/ccompat/v7`;
    const value = Buffer.from([0, 0, 0, 0, 42, 2, 4]);
    for (const decode of [
      (v: Buffer) => createEventCodec(url, { timeoutMs: 400 }).decode(v),
      (v: Buffer) => createRequestedDecoder(url, { timeoutMs: 400 }).decode(v),
    ]) {
      const { ms, err } = await rejection(decode(value));
      assert.ok(ms >= 350 && ms < 3000, `rejected after ${ms} ms`);
      assert.match(String(err), /Timeout \(400ms\)/);
      assert.equal(isRetriableRegistryError(err), true);
      assert.equal(nameDependency(err)?.variable, 'SCHEMA_REGISTRY_URL');
    }
  });
});

describe('timeouts that must not cut legitimate work short', () => {
  it('a statement over DATABASE_QUERY_TIMEOUT_MS fails, and the pool carries on', async () => {
    const db = await createTestDatabase();
    const pool = createPool({
      connectionString: db.url,
      max: 1,
      timeouts: { connectMs: 5000, queryMs: 1000 },
      options: '-c jit=off',
    });
    try {
      assert.equal((await pool.query('SHOW jit')).rows[0].jit, 'off', 'server settings reach the connection');
      assert.deepEqual((await pool.query('SELECT pg_sleep(0.5) AS slept')).rowCount, 1);
      const { ms, err } = await rejection(pool.query('SELECT pg_sleep(5)'));
      assert.ok(ms >= 900 && ms < 3000, `rejected after ${ms} ms`);
      assert.match(String(err), /Query read timeout/);
      assert.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1);
    } finally {
      await pool.end();
      await db.drop();
    }
  });

  it('an S3 upload slower in all than the socket timeout succeeds while data keeps moving', async () => {
    // An S3 stand-in that reads the body slowly: 32 MiB at about 16 MB/s, so the upload takes
    // longer than the 1.5 s socket timeout but is never silent that long (node holds the idle
    // timer while the write drains). A cap on the whole call would fail it.
    const size = 32 * 1024 * 1024;
    let received = 0;
    const server = createHttpServer((req, res) => {
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        req.pause();
        setTimeout(() => req.resume(), 4);
      });
      req.on('end', () => res.writeHead(200, { ETag: '"x"' }).end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const s3 = createS3Client({
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      region: 'us-east-1',
      accessKeyId: 'k',
      secretAccessKey: 's',
      connectTimeoutMs: 500,
      socketTimeoutMs: 1500,
    });
    try {
      const t0 = Date.now();
      await createDatasetStore(s3, 'bucket').put('slow/file.parquet', Buffer.alloc(size, 1), 'x');
      assert.ok(Date.now() - t0 > 1500, `the upload took ${Date.now() - t0} ms: not slow enough to prove it`);
      assert.equal(received, size);
    } finally {
      s3.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

interface Child {
  output(): { stdout: string; stderr: string };
  waitFor(pattern: RegExp, ms: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  kill(signal: NodeJS.Signals): number;
}

/** Children still running when the file ends (a failed test) are killed then. */
const children = new Set<ReturnType<typeof spawn>>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** `node --import tsx <args>` with `env` added, its output collected. */
function run(args: string[], env: NodeJS.ProcessEnv): Child {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', ...env };
  delete childEnv['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'];
  delete childEnv['NODE_NO_WARNINGS'];
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: REPO_ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return {
    output: () => ({ stdout, stderr }),
    exited,
    kill(signal) {
      child.kill(signal);
      return Date.now();
    },
    waitFor: (pattern, ms) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`no ${pattern} within ${ms} ms:\n${stdout}\n${stderr}`));
        }, ms);
        const check = () => {
          if (!pattern.test(stdout + stderr)) return;
          clearTimeout(timer);
          resolve();
        };
        child.stdout.on('data', check);
        child.stderr.on('data', check);
        void exited.then(() => {
          clearTimeout(timer);
          if (pattern.test(stdout + stderr)) resolve();
          else reject(new Error(`exited before ${pattern}:\n${stdout}\n${stderr}`));
        });
      }),
  };
}

const logLines = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('services/main.ts against a database that never answers', () => {
  it(
    'a stop that hangs past SHUTDOWN_TIMEOUT_MS is named (ERR_SHUTDOWN_TIMEOUT) and the process exits 1',
    { timeout: 40_000 },
    async () => {
      const p = run(['services/main.ts', 'journal-sealer'], {
        DATABASE_URL: holeDb(),
        DATABASE_CONNECT_TIMEOUT_MS: '60000',
        SHUTDOWN_TIMEOUT_MS: '1000',
      });
      await p.waitFor(/journal sealer started/, 30_000);
      const sent = p.kill('SIGTERM');
      const { code, at } = await p.exited;
      assert.equal(code, 1);
      assert.ok(at - sent < 4000, `exited ${at - sent} ms after SIGTERM`);
      const line = logLines(p.output().stdout).find((l) => l['code'] === 'ERR_SHUTDOWN_TIMEOUT');
      assert.deepEqual(line?.['services'], ['journal-sealer'], p.output().stdout);
    },
  );

  it(
    'a signal during a slow start stops what has started, then what was starting, and exits 0',
    { timeout: 40_000 },
    async () => {
      // The sync dispatcher's start waits for its LISTEN connection, here for the 2 s timeout.
      const p = run(['services/main.ts', 'journal-sealer', 'sync-dispatcher'], {
        DATABASE_URL: holeDb(),
        DATABASE_CONNECT_TIMEOUT_MS: '2000',
        SHUTDOWN_TIMEOUT_MS: '20000',
        SYNC_SHUTDOWN_GRACE_MS: '0',
        SYNC_DISPATCHER_ID: uniqueName('timeouts'),
      });
      await p.waitFor(/journal sealer started/, 30_000);
      const sent = p.kill('SIGTERM');
      const { code, at } = await p.exited;
      const { stdout, stderr } = p.output();
      assert.equal(code, 0, `${stdout}\n${stderr}`);
      // The dispatcher finishes starting (≤ 2 s), then its stop waits for its pass (≤ 2 s).
      assert.ok(at - sent < 10_000, `exited ${at - sent} ms after SIGTERM`);
      const messages = logLines(stdout).map((l) => l['message']);
      assert.ok(messages.includes('journal sealer stopped'), stdout);
      assert.ok(messages.includes('sync dispatcher stopped'), stdout);
      assert.ok(
        messages.indexOf('journal sealer stopped') < messages.indexOf('sync dispatcher stopped'),
        'what had started stops first',
      );
    },
  );

  it('refuses LOG_LEVEL=loud at start with one ERR_CONFIG line', async () => {
    const p = run(['services/main.ts', 'journal-sealer'], { DATABASE_URL: holeDb(), LOG_LEVEL: 'loud' });
    const { code } = await p.exited;
    assert.equal(code, 1);
    assert.match(p.output().stderr, /^erasure: ERR_CONFIG: invalid configuration: LOG_LEVEL must be/m);
  });
});

describe('AWS SDK notice and dependency names on the command line', () => {
  it('`erasure dataset sweep` with S3 refusing names S3 and S3_ENDPOINT, without the SDK notice', async () => {
    const closed = await blackHole();
    await closed.close(); // nothing listens there now: connections are refused
    const child = spawn(process.execPath, ['bin/erasure.mjs', 'dataset', 'sweep', '--date', '2020-01-01'], {
      cwd: REPO_ROOT,
      env: {
        ...Object.fromEntries(
          Object.entries(process.env).filter(
            ([k]) => k !== 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED',
          ),
        ),
        S3_ENDPOINT: `http://127.0.0.1:${closed.port}`,
        DATASET_PREFIX: `timeouts-${randomBytes(4).toString('hex')}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    assert.equal(code, 1, stderr);
    assert.doesNotMatch(stderr, /NodeVersionSupportWarning/);
    assert.match(stderr, /erasure: dataset sweep failed: S3 \(check S3_ENDPOINT\): \S+ failed: ECONNREFUSED/);
  });

  it('services/main.ts starts the exporter (an S3 client) without the SDK notice', async () => {
    const p = run(['services/main.ts', 'exporter'], {
      EXPORTER_GROUP: uniqueName('timeouts-exporter'),
      EXPORTER_FROM_BEGINNING: 'false',
      DATASET_PREFIX: `timeouts-${randomBytes(4).toString('hex')}`,
    });
    await p.waitFor(/exporter started/, 60_000);
    p.kill('SIGTERM');
    const { code } = await p.exited;
    assert.equal(code, 0, p.output().stderr);
    assert.doesNotMatch(p.output().stderr, /NodeVersionSupportWarning/);
  });
});
