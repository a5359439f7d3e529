// API_WORKERS > 1: the API runs in worker processes sharing one port. Started the way an
// operator starts it (`services/main.ts api` in its own process) against real PostgreSQL.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { migrate } from '../../services/shared/db/migrate.ts';
import { SCHEMAS_SQL } from '../helpers/api.ts';
import { createTestDatabase } from '../helpers/infra.ts';

const REPO_ROOT = join(import.meta.dirname, '..', '..');

interface Primary {
  child: ChildProcess;
  url: string;
  log: () => string;
  exited: Promise<number | null>;
}

function startPrimary(env: NodeJS.ProcessEnv): Promise<Primary> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'services/main.ts', 'api'], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "api workers listening" within 60 s:\n${out}`)),
      60_000,
    );
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the API exited with ${code} before listening:\n${out}`));
    });
    child.stdout!.on('data', () => {
      const m = /"message":"api workers listening".*?"url":"([^"]+)"/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({ child, url: m[1]!, log: () => out, exited });
    });
  });
}

/** Live processes whose parent is `pid` and whose command line runs the API worker. */
function workerPids(pid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (ppid === pid && cmd.includes('services/api/worker.ts')) found.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function until<T>(what: string, probe: () => T | undefined, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** POST over a fresh connection each time, so the primary hands them to different workers. */
function submit(
  url: string,
  token: string,
  key: string,
  value: string,
): Promise<{ status: number; body: any }> {
  const body = JSON.stringify({ identifiers: [{ type: 'user_id', value }], reason: 'gdpr_art17' });
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/v1/erasure-requests`,
      {
        method: 'POST',
        agent: new Agent({ keepAlive: false }),
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'idempotency-key': key,
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

describe('API workers (API_WORKERS=2)', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: NodeJS.ProcessEnv;
  const token = `adm_${randomBytes(24).toString('base64url')}`;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, SCHEMAS_SQL);
    await db.pool.query(
      `INSERT INTO targets (name, kind, identifier_types, ack_sla_seconds) VALUES ('cluster-t', 'async_event', ARRAY['user_id'], 3600)`,
    );
    env = {
      ...process.env,
      DATABASE_URL: db.url,
      PORT: '0',
      HOST: '127.0.0.1',
      API_WORKERS: '2',
      ERASURE_ADMIN_TOKEN: token,
      LOG_LEVEL: 'info',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
  });
  after(async () => db?.drop());

  it('serves from both workers, dedupes one key across them, sums metrics, restarts a dead worker and stops cleanly', async () => {
    const p = await startPrimary(env);
    try {
      assert.equal(workerPids(p.child.pid!).length, 2);

      // 50 submissions with one key over 50 connections (both workers): one request.
      const same = await Promise.all(
        Array.from({ length: 50 }, () => submit(p.url, token, 'cluster-same', 'u-1')),
      );
      assert.deepEqual(new Set(same.map((r) => r.status)), new Set([202]));
      assert.equal(new Set(same.map((r) => r.body.id)).size, 1);
      // 40 distinct ones: 40 requests.
      const distinct = await Promise.all(
        Array.from({ length: 40 }, (_, i) => submit(p.url, token, `cluster-${i}`, `u-${i + 2}`)),
      );
      assert.ok(distinct.every((r) => r.status === 202));
      const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM erasure_requests');
      assert.equal(Number(rows[0]!.n), 41);

      // Whichever worker answers the scrape, the count is the whole group's: 90 POSTs.
      for (let i = 0; i < 4; i++) {
        const text = await (await fetch(`${p.url}/metrics`, { headers: { connection: 'close' } })).text();
        const posts = [
          ...text.matchAll(
            /^erasure_api_http_request_duration_seconds_count\{method="POST",route="\/v1\/erasure-requests",status="202"\} (\d+)/gm,
          ),
        ].reduce((s, m) => s + Number(m[1]), 0);
        assert.equal(posts, 90, text.slice(0, 2000));
      }

      // A worker killed: the other keeps answering, and a new one takes its place.
      const [victim] = workerPids(p.child.pid!);
      process.kill(victim!, 'SIGKILL');
      // Once the primary knows (a connection handed to a worker in the instant it dies is
      // lost with it, as with any crashed server; the client retries).
      await until('the primary to see the exit', () =>
        p.log().includes('"code":"ERR_API_WORKER_EXIT"') ? true : undefined,
      );
      const r = await submit(p.url, token, 'cluster-after-kill', 'u-99');
      assert.equal(r.status, 202);
      await until('a replacement worker', () => {
        const now = workerPids(p.child.pid!);
        return now.length === 2 && !now.includes(victim!) ? now : undefined;
      });
      await until('it to listen', () =>
        p.log().match(/"message":"api listening"/g)?.length === 3 ? true : undefined,
      );
      assert.equal((await submit(p.url, token, 'cluster-after-restart', 'u-100')).status, 202);

      // SIGTERM to the primary: workers stop first, everything exits 0, nothing left behind.
      const workers = workerPids(p.child.pid!);
      p.child.kill('SIGTERM');
      assert.equal(await p.exited, 0);
      for (const w of workers) assert.throws(() => process.kill(w, 0), /ESRCH/);
      assert.match(p.log(), /"message":"api stopped".*"worker":/);
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it('keeps trying to replace a dead worker while the database refuses it, and succeeds once it is back', async () => {
    const p = await startPrimary(env);
    const dbName = new URL(db.url).pathname.slice(1);
    // ALTER DATABASE ... ALLOW_CONNECTIONS cannot run from inside that database.
    const other = new URL(db.url);
    other.pathname = '/postgres';
    const allow = async (yes: boolean) => {
      const c = new pg.Client({ connectionString: other.toString() });
      await c.connect();
      await c.query(`ALTER DATABASE "${dbName}" ALLOW_CONNECTIONS ${yes}`).finally(() => c.end());
    };
    try {
      // New connections to the test database are refused (superusers too); open ones stay.
      await allow(false);
      const [victim] = workerPids(p.child.pid!);
      process.kill(victim!, 'SIGKILL');
      await until('a failed replacement', () =>
        /"code":"ERR_API_WORKER_START".*"message":"API worker failed to start; trying again"|"message":"API worker failed to start; trying again".*"code":"ERR_API_WORKER_START"/.test(
          p.log(),
        )
          ? true
          : undefined,
      );
      await allow(true);
      await until('a replacement listening', () =>
        p.log().match(/"message":"api listening"/g)?.length === 3 ? true : undefined,
      );
      assert.equal(workerPids(p.child.pid!).length, 2);
      assert.equal((await submit(p.url, token, 'cluster-after-outage', 'u-200')).status, 202);
      p.child.kill('SIGTERM');
      assert.equal(await p.exited, 0);
    } finally {
      await allow(true).catch(() => undefined);
      p.child.kill('SIGKILL');
    }
  });

  it('a worker that cannot start fails the start with one line, and leaves no worker behind', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'services/main.ts', 'api'], {
      cwd: REPO_ROOT,
      // A port nothing listens on: every worker's first query fails.
      env: { ...env, DATABASE_URL: 'postgres://nobody:x@127.0.0.1:9/none' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1);
    assert.match(err, /^erasure: \S+: .*ECONNREFUSED/m);
    assert.deepEqual(workerPids(child.pid!), []);
  });
});
