// erasure_tasks' references against real PostgreSQL (schemas/sql/0007): checked once per
// statement instead of by per-row foreign keys, with the same guarantees for writers.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { migrate } from '../../services/shared/db/migrate.ts';
import { SCHEMAS_SQL } from '../helpers/api.ts';
import { createTestDatabase } from '../helpers/infra.ts';

const FK_VIOLATION = '23503';

describe('erasure_tasks references', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const requestIds: string[] = [];

  async function insertRequest(): Promise<string> {
    const id = randomUUID();
    await db.pool.query(
      `INSERT INTO erasure_requests (id, owner, idempotency_key, body_sha256, subject_hash, identifiers,
                                     reason, priority, status, deadline)
       VALUES ($1, 'o', $2, '\\x00', decode(md5($2), 'hex'), '[]', 'gdpr_art17', 'normal', 'scheduled',
               now() + interval '30 days')`,
      [id, `key-${id}`],
    );
    return id;
  }

  async function taskCount(): Promise<number> {
    const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM erasure_tasks');
    return rows[0]!.n;
  }

  const insertTasks = (rows: [string, string][]) =>
    db.pool.query(
      `INSERT INTO erasure_tasks (request_id, target, priority, next_attempt_at)
       SELECT r, t, 1, now() FROM unnest($1::uuid[], $2::text[]) AS x(r, t)`,
      [rows.map((r) => r[0]), rows.map((r) => r[1])],
    );

  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, SCHEMAS_SQL);
    await db.pool.query(
      `INSERT INTO targets (name, kind, identifier_types, ack_sla_seconds)
       VALUES ('refs-a', 'async_event', ARRAY['user_id'], 3600), ('refs-b', 'async_event', ARRAY['user_id'], 3600)`,
    );
    for (let i = 0; i < 3; i++) requestIds.push(await insertRequest());
  });
  after(async () => db.drop());

  it('accepts tasks whose request and target exist', async () => {
    await insertTasks([
      [requestIds[0]!, 'refs-a'],
      [requestIds[0]!, 'refs-b'],
    ]);
    assert.equal(await taskCount(), 2);
  });

  it('refuses a whole statement when one of its tasks names a missing request', async () => {
    const before = await taskCount();
    await assert.rejects(
      insertTasks([
        [requestIds[1]!, 'refs-a'],
        [randomUUID(), 'refs-a'],
        [requestIds[1]!, 'refs-b'],
      ]),
      (err: { code?: string }) => err.code === FK_VIOLATION,
    );
    assert.equal(await taskCount(), before, 'no row of the statement is left');
  });

  it('refuses a task naming a target that is not registered', async () => {
    await assert.rejects(
      insertTasks([[requestIds[1]!, 'refs-missing']]),
      (err: { code?: string }) => err.code === FK_VIOLATION,
    );
  });

  it('refuses deleting a request or a target that tasks name, or changing its key', async () => {
    const refused = (err: { code?: string }) => err.code === FK_VIOLATION;
    await assert.rejects(
      db.pool.query('DELETE FROM erasure_requests WHERE id = $1', [requestIds[0]]),
      refused,
    );
    await assert.rejects(
      db.pool.query('UPDATE erasure_requests SET id = $2 WHERE id = $1', [requestIds[0], randomUUID()]),
      refused,
    );
    await assert.rejects(db.pool.query(`DELETE FROM targets WHERE name = 'refs-a'`), refused);
    await assert.rejects(db.pool.query(`UPDATE targets SET name = 'refs-c' WHERE name = 'refs-a'`), refused);
    await assert.rejects(
      db.pool.query(`UPDATE erasure_tasks SET request_id = $2 WHERE request_id = $1`, [
        requestIds[0],
        requestIds[2],
      ]),
      refused,
    );
    // A request no task names is not held by the check.
    const { rowCount } = await db.pool.query('DELETE FROM erasure_requests WHERE id = $1', [requestIds[2]]);
    assert.equal(rowCount, 1);
    assert.equal(await taskCount(), 2);
  });
});
