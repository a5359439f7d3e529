// The hash-chained journal against real PostgreSQL: concurrent appends, one sealer at a
// time, tamper detection past the append-only trigger, and the `erasure journal verify` CLI.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { migrate } from '../../services/shared/db/migrate.ts';
import {
  appendJournal,
  canonicalEntryBytes,
  entryHash,
  JOURNAL_SEAL_LOCK_KEY,
  type JournalEntryInput,
  sealJournal,
  startJournalSealer,
  verifyJournal,
} from '../../services/shared/journal.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { createTestDatabase } from '../helpers/infra.ts';

const repoRoot = join(import.meta.dirname, '..', '..');
const sqlDir = join(repoRoot, 'schemas', 'sql');
type TestDb = Awaited<ReturnType<typeof createTestDatabase>>;

async function freshJournal(): Promise<TestDb> {
  const db = await createTestDatabase();
  await migrate(db.pool, sqlDir);
  return db;
}

function entries(n: number, tag: string): JournalEntryInput[] {
  return Array.from({ length: n }, (_, i) => ({
    requestId: i % 3 === 0 ? null : randomUUID(),
    kind: 'test.step',
    actor: i % 2 === 0 ? null : `writer-${tag}`,
    // Key order, unicode and quotes: the chain must not depend on how JS printed this.
    detail: { z: i, a: `"${tag}" ✓ \\ ${i}`, nested: { b: [1, 2.5, null], a: true } },
  }));
}

async function sealAll(pool: pg.Pool, batchSize?: number): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await sealJournal(pool, batchSize === undefined ? {} : { batchSize });
    if (n === 0) return total;
    total += n;
  }
}

async function inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  } finally {
    c.release();
  }
}

async function chainRows(pool: pg.Pool) {
  const { rows } = await pool.query<{ id: string; chain_seq: string; prev_hash: Buffer; hash: Buffer }>(
    'SELECT id::text AS id, chain_seq::text AS chain_seq, prev_hash, hash FROM journal WHERE chain_seq IS NOT NULL ORDER BY journal.chain_seq',
  );
  return rows;
}

function assertContiguousChain(rows: Awaited<ReturnType<typeof chainRows>>): void {
  rows.forEach((r, i) => {
    assert.equal(r.chain_seq, String(i + 1), 'chain_seq runs 1, 2, 3, … without gaps');
    const prev = i === 0 ? Buffer.alloc(32) : rows[i - 1]?.hash;
    assert.ok(prev && r.prev_hash.equals(prev), `prev_hash of ${r.chain_seq} is the hash before it`);
  });
  assert.equal(new Set(rows.map((r) => r.id)).size, rows.length, 'no entry sealed twice');
}

function runErasure(
  args: string[],
  databaseUrl: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin', 'erasure.mjs'), ...args], {
      cwd: repoRoot,
      env: { ...process.env, DATABASE_URL: databaseUrl, NODE_NO_WARNINGS: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('journal canonical form', () => {
  it('is a JSON array of text values in a fixed order', () => {
    const bytes = canonicalEntryBytes({
      id: '7',
      requestId: null,
      kind: 'k',
      actor: 'a',
      detailText: '{"a": 1}',
      atMicros: '1700000000123456',
      chainSeq: '3',
    });
    assert.equal(bytes.toString('utf8'), '["7",null,"k","a","{\\"a\\": 1}","1700000000123456","3"]');
  });
});

describe('journal append, seal and verify', () => {
  let db: TestDb;
  before(async () => {
    db = await freshJournal();
  });
  after(async () => db.drop());

  it('seals entries from concurrent transactions into one chain that verifies', async () => {
    await appendJournal(db.pool, []); // no-op
    await Promise.all(
      Array.from({ length: 8 }, (_, w) =>
        inTransaction(db.pool, async (c) => {
          await appendJournal(c, entries(20, `w${w}`));
          await appendJournal(c, entries(5, `w${w}-b`));
        }),
      ),
    );
    // A rolled-back transaction leaves nothing to seal.
    await assert.rejects(
      inTransaction(db.pool, async (c) => {
        await appendJournal(c, entries(3, 'lost'));
        throw new Error('abort');
      }),
      /abort/,
    );
    assert.equal(await sealAll(db.pool, 37), 200, 'several partial batches');
    const chain = await chainRows(db.pool);
    assertContiguousChain(chain);
    // Everything committed before sealing, so chain order is id order.
    chain.slice(1).forEach((r, i) => assert.ok(BigInt(r.id) > BigInt(chain[i]?.id ?? 0), 'ids ascend'));
    const progress: number[] = [];
    const verified = await verifyJournal(db.pool, { onProgress: (n) => progress.push(n) });
    assert.deepEqual(verified, { ok: true, checked: 200, unsealed: 0 });
    assert.deepEqual(progress, [200]);

    await appendJournal(db.pool, entries(4, 'late'));
    const pending = await verifyJournal(db.pool);
    assert.deepEqual(pending, { ok: true, checked: 200, unsealed: 4 });
  });

  it('two sealers on two pools racing while writers append build one contiguous chain', async () => {
    const other = new pg.Pool({ connectionString: db.url, max: 2 });
    try {
      let writing = true;
      const writers = (async () => {
        for (let i = 0; i < 20; i += 1) await appendJournal(db.pool, entries(50, `race${i}`));
        writing = false;
      })();
      const sealer = async (pool: pg.Pool) => {
        let sealed = 0;
        for (;;) {
          sealed += await sealJournal(pool, { batchSize: 64 });
          const left = await pool.query<{ n: string }>(
            'SELECT count(*)::text AS n FROM journal WHERE chain_seq IS NULL',
          );
          if (!writing && left.rows[0]?.n === '0') return sealed;
        }
      };
      const [, a, b] = await Promise.all([writers, sealer(db.pool), sealer(other)]);
      const rows = await chainRows(db.pool);
      assert.equal(rows.length, 1204, 'every entry of both tests sealed once');
      // 1000 appended here plus the 4 the previous test left unsealed.
      assert.equal(a + b, 1004, 'the two sealers together sealed each entry exactly once');
      assertContiguousChain(rows);
      assert.deepEqual(await verifyJournal(db.pool), { ok: true, checked: 1204, unsealed: 0 });
    } finally {
      await other.end();
    }
  });

  it('a sealer that cannot take the lock returns 0 at once', async () => {
    await appendJournal(db.pool, entries(2, 'locked'));
    await inTransaction(db.pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [JOURNAL_SEAL_LOCK_KEY]);
      assert.equal(await sealJournal(db.pool), 0);
    });
    assert.equal(await sealJournal(db.pool), 2);
  });

  it('the trigger refuses UPDATE and DELETE of sealed entries but lets the sealer seal', async () => {
    const sealed = await db.pool.query<{ id: string }>(
      'SELECT id::text AS id FROM journal WHERE chain_seq = 1',
    );
    const id = sealed.rows[0]?.id;
    const refused = { code: '42501' };
    await assert.rejects(db.pool.query(`UPDATE journal SET detail = '{}' WHERE id = $1`, [id]), refused);
    await assert.rejects(db.pool.query('UPDATE journal SET hash = NULL WHERE id = $1', [id]), refused);
    await assert.rejects(db.pool.query('DELETE FROM journal WHERE id = $1', [id]), refused);

    await appendJournal(db.pool, entries(1, 'unsealed'));
    await inTransaction(db.pool, async (c) => {
      const row = await c.query<{ id: string }>('SELECT id::text AS id FROM journal WHERE chain_seq IS NULL');
      const uid = row.rows[0]?.id;
      await assert.rejects(c.query(`SAVEPOINT s; UPDATE journal SET kind = 'x' WHERE id = ${uid}`), refused);
      await c.query('ROLLBACK TO SAVEPOINT s');
      await assert.rejects(c.query(`SAVEPOINT s; DELETE FROM journal WHERE id = ${uid}`), refused);
      await c.query('ROLLBACK TO SAVEPOINT s');
    });
    assert.equal(await sealJournal(db.pool), 1, 'setting the chain fields of an unsealed entry is allowed');
    assert.equal((await verifyJournal(db.pool)).ok, true);
  });

  it('`erasure journal verify` prints OK and exits 0', async () => {
    await appendJournal(db.pool, entries(3, 'cli'));
    const res = await runErasure(['journal', 'verify'], db.url);
    assert.equal(res.stdout, 'journal OK: 1207 entries verified (3 not yet sealed)\n');
    assert.equal(res.code, 0, res.stderr);
  });
});

describe('journal sealer loop', () => {
  it('logs ERR_JOURNAL_SEAL and keeps going until it can seal, then drains a backlog', async () => {
    const db = await createTestDatabase(); // not migrated yet: every seal fails
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger({ service: 'test', level: 'debug', stream });
    const sealer = startJournalSealer({
      pool: db.pool,
      logger,
      intervalMs: 10,
      batchSize: 100,
      maxBackoffMs: 40,
    });
    try {
      const failures = () => lines.map((l) => JSON.parse(l)).filter((l) => l.code === 'ERR_JOURNAL_SEAL');
      while (failures().length < 2) await setTimeout(10);
      assert.equal(failures()[0]?.errorCode, '42P01', 'the SQLSTATE is logged with the code');

      await migrate(db.pool, sqlDir);
      await appendJournal(db.pool, entries(250, 'marker7f3a'));
      const deadline = Date.now() + 10_000;
      while ((await verifyJournal(db.pool)).checked < 250 && Date.now() < deadline) await setTimeout(20);
      assert.deepEqual(await verifyJournal(db.pool), { ok: true, checked: 250, unsealed: 0 });
      assert.ok(
        lines.every((l) => !l.includes('marker7f3a')),
        'entry details never reach the log',
      );
    } finally {
      await sealer.stop();
      await db.drop();
    }
  });
});

describe('journal tamper detection (superuser with the trigger disabled)', () => {
  async function sealedJournal(n: number): Promise<TestDb> {
    const db = await freshJournal();
    await appendJournal(db.pool, entries(n, 'tamper'));
    assert.equal(await sealAll(db.pool), n);
    await db.pool.query('ALTER TABLE journal DISABLE TRIGGER journal_append_only');
    return db;
  }
  const idAt = async (db: TestDb, seq: number) =>
    (await db.pool.query<{ id: string }>('SELECT id::text AS id FROM journal WHERE chain_seq = $1', [seq]))
      .rows[0]?.id;

  it('a changed entry breaks at its own hash; undoing the change heals it', async () => {
    const db = await sealedJournal(10);
    try {
      const id5 = await idAt(db, 5);
      await db.pool.query(`UPDATE journal SET detail = detail || '{"z": 999}' WHERE chain_seq = 5`);
      const r = await verifyJournal(db.pool);
      assert.equal(r.ok, false);
      assert.equal(r.checked, 4);
      assert.equal(r.firstBroken?.chainSeq, 5);
      assert.equal(r.firstBroken?.id, id5);
      assert.match(r.firstBroken?.reason ?? '', /^hash mismatch/);

      const cli = await runErasure(['journal', 'verify'], db.url);
      assert.equal(
        cli.stdout,
        `journal BROKEN at chain_seq 5 (entry id ${id5}): hash mismatch: entry content changed\n`,
      );
      assert.equal(cli.code, 1, cli.stderr);

      // Undoing the change restores the chain: the hash depends only on stored values.
      await db.pool.query(`UPDATE journal SET detail = detail || '{"z": 4}' WHERE chain_seq = 5`);
      assert.equal((await verifyJournal(db.pool)).ok, true);

      // One microsecond is enough.
      await db.pool.query(`UPDATE journal SET at = at + interval '1 microsecond' WHERE chain_seq = 7`);
      assert.equal((await verifyJournal(db.pool)).firstBroken?.chainSeq, 7);
      await db.pool.query(`UPDATE journal SET at = at - interval '1 microsecond' WHERE chain_seq = 7`);
    } finally {
      await db.drop();
    }
  });

  it('an attacker who re-hashes a changed entry is caught at the next link', async () => {
    const db = await sealedJournal(10);
    try {
      await db.pool.query(`UPDATE journal SET actor = 'someone-else' WHERE chain_seq = 3`);
      // A careful attacker recomputes entry 3's hash for its new content (the canonical form
      // is public), but cannot change entry 4's prev_hash without breaking entry 4.
      const { rows } = await db.pool.query<{
        id: string;
        request_id: string | null;
        kind: string;
        actor: string | null;
        detail_text: string;
        at_micros: string;
        prev_hash: Buffer;
      }>(
        `SELECT id::text AS id, request_id::text AS request_id, kind, actor, detail::text AS detail_text,
                (extract(epoch FROM at) * 1000000)::bigint::text AS at_micros, prev_hash
           FROM journal WHERE chain_seq = 3`,
      );
      const e = rows[0];
      assert.ok(e);
      const rehashed = entryHash(e.prev_hash, {
        id: e.id,
        requestId: e.request_id,
        kind: e.kind,
        actor: e.actor,
        detailText: e.detail_text,
        atMicros: e.at_micros,
        chainSeq: '3',
      });
      await db.pool.query('UPDATE journal SET hash = $1 WHERE chain_seq = 3', [rehashed]);
      const r = await verifyJournal(db.pool);
      assert.equal(r.checked, 3, 'entry 3 itself now verifies');
      assert.equal(r.firstBroken?.chainSeq, 4);
      assert.equal(r.firstBroken?.reason, 'prev_hash does not match the previous entry');
    } finally {
      await db.drop();
    }
  });

  it('a deleted middle entry shows as a gap at the entry after it', async () => {
    const db = await sealedJournal(10);
    try {
      await db.pool.query('DELETE FROM journal WHERE chain_seq = 5');
      const id6 = await idAt(db, 6);
      const r = await verifyJournal(db.pool);
      assert.deepEqual(r, {
        ok: false,
        checked: 4,
        unsealed: 0,
        firstBroken: { chainSeq: 6, id: id6, reason: 'chain_seq gap: entry missing before this one' },
      });
      const cli = await runErasure(['journal', 'verify'], db.url);
      assert.equal(
        cli.stdout,
        `journal BROKEN at chain_seq 6 (entry id ${id6}): chain_seq gap: entry missing before this one\n`,
      );
      assert.equal(cli.code, 1, cli.stderr);
    } finally {
      await db.drop();
    }
  });
});

describe('erasure CLI', () => {
  it('cannot connect: exit 2, one line naming the host, never the password', async () => {
    const res = await runErasure(
      ['journal', 'verify'],
      'postgres://someone:hunter2-secret@127.0.0.1:1/nowhere',
    );
    assert.equal(res.code, 2);
    assert.equal(res.stdout, '');
    assert.match(
      res.stderr,
      /^erasure journal verify: cannot connect to DATABASE_URL host 127\.0\.0\.1:1\/nowhere: /,
    );
    assert.equal(res.stderr.trim().split('\n').length, 1);
    assert.doesNotMatch(res.stderr, /hunter2/);
  });

  it('help lists the commands; an unknown command exits 2 with usage', async () => {
    const help = await runErasure(['help'], 'postgres://x@127.0.0.1:1/x');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /journal verify/);
    const unknown = await runErasure(['journal', 'frobnicate'], 'postgres://x@127.0.0.1:1/x');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command: journal frobnicate[\s\S]*journal verify/);
  });
});
