import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { MigrationError } from '../errors.ts';
import type { Logger } from '../logger.ts';

export interface Migration {
  id: number;
  name: string;
  sql: string;
  sha256: string;
}

/** Reads schemas/sql/NNNN_name.sql files in order. Numbers must be unique and contiguous. */
export function readMigrations(dir: string): Migration[] {
  const files = readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
  const out = files.map((f) => {
    const sql = readFileSync(join(dir, f), 'utf8');
    return {
      id: Number(f.slice(0, 4)),
      name: f,
      sql,
      sha256: createHash('sha256').update(sql).digest('hex'),
    };
  });
  out.forEach((m, i) => {
    if (m.id !== i + 1)
      throw new MigrationError(`migration ${m.name} is out of sequence (expected ${i + 1})`);
  });
  return out;
}

// Any constant works; it only has to be the same for every process migrating this database.
const MIGRATION_LOCK_KEY = 727_310_001;

/**
 * Applies pending migrations, each in its own transaction. Safe when several processes
 * start at once: each transaction first takes a transaction-scoped advisory lock, then
 * re-reads what is applied, so the second process waits and then finds nothing to do.
 * A migration whose file changed after it was applied is refused (they are immutable).
 */
export async function migrate(pool: pg.Pool, dir: string, logger?: Logger): Promise<number[]> {
  const migrations = readMigrations(dir);
  const applied: number[] = [];
  const client = await pool.connect();
  try {
    for (const m of migrations) {
      await client.query('BEGIN');
      try {
        await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
        await client.query(`
          CREATE TABLE IF NOT EXISTS schema_migrations (
            id         integer PRIMARY KEY,
            name       text NOT NULL,
            sha256     text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
          )`);
        const { rows } = await client.query<{ sha256: string }>(
          'SELECT sha256 FROM schema_migrations WHERE id = $1',
          [m.id],
        );
        if (rows[0]) {
          if (rows[0].sha256 !== m.sha256) {
            throw new MigrationError(
              `migration ${m.name} was edited after it was applied; add a new migration instead`,
            );
          }
          await client.query('COMMIT');
          continue;
        }
        // Recorded first, in the same transaction, so a failed apply leaves no trace.
        await client.query('INSERT INTO schema_migrations (id, name, sha256) VALUES ($1, $2, $3)', [
          m.id,
          m.name,
          m.sha256,
        ]);
        await client.query(m.sql);
        await client.query('COMMIT');
        applied.push(m.id);
        logger?.info('migration applied', { migration: m.name });
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        if (err instanceof MigrationError) throw err;
        throw new MigrationError(`migration ${m.name} failed: ${(err as Error).message}`);
      }
    }
  } finally {
    client.release();
  }
  return applied;
}
