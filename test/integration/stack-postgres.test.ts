// Smoke test: PostgreSQL is real; migrations apply once, even from two processes at once.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { migrate } from '../../services/shared/db/migrate.ts';
import { MigrationError } from '../../services/shared/errors.ts';
import { createTestDatabase } from '../helpers/infra.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'migrations');

describe('PostgreSQL migrations', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => db.drop());

  it('applies each migration exactly once when two migrators race', async () => {
    const other = new pg.Pool({ connectionString: db.url, max: 2 });
    const [a, b] = await Promise.all([migrate(db.pool, fixtures), migrate(other, fixtures)]);
    await other.end();
    assert.deepEqual([...a, ...b].sort(), [1, 2], 'each id applied by exactly one of them');
    const { rows } = await db.pool.query<{ name: string }>('SELECT name FROM widgets ORDER BY id');
    assert.deepEqual(
      rows.map((r) => r.name),
      ['first', 'second'],
    );
    assert.deepEqual(await migrate(db.pool, fixtures), [], 'nothing left to apply');
  });

  it('refuses a migration edited after it was applied', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
    cpSync(fixtures, dir, { recursive: true });
    writeFileSync(
      join(dir, '0002_seed_widgets.sql'),
      "INSERT INTO widgets (id, name) VALUES (3, 'third');\n",
    );
    await assert.rejects(migrate(db.pool, dir), (err: MigrationError) => {
      assert.equal(err.code, 'ERR_MIGRATION');
      assert.match(err.message, /0002_seed_widgets\.sql was edited/);
      return true;
    });
  });

  it('rolls back a failing migration completely', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'migrations-'));
    cpSync(fixtures, dir, { recursive: true });
    writeFileSync(
      join(dir, '0003_broken.sql'),
      'CREATE TABLE gadgets (id int); SELECT no_such_function();\n',
    );
    await assert.rejects(migrate(db.pool, dir), /0003_broken\.sql failed/);
    const { rows } = await db.pool.query("SELECT to_regclass('gadgets') AS t");
    assert.equal(rows[0].t, null, 'no table left by the failed migration');
    const ids = await db.pool.query('SELECT id FROM schema_migrations ORDER BY id');
    assert.deepEqual(
      ids.rows.map((r) => r.id),
      [1, 2],
    );
  });
});
