import type pg from 'pg';

export interface ContactRow {
  readonly userId: string;
  readonly email: string;
  readonly name: string;
}

/** The identifier values of one subject this store can match on. Emails are compared lowercased. */
export interface ContactsMatch {
  readonly userIds: readonly string[];
  readonly emails: readonly string[];
}

/** What an erase call answered; stored per Idempotency-Key so a repeat gets the same answer. */
export interface EraseAnswer {
  readonly status: 200 | 404;
  readonly rowsDeleted: number;
  readonly remaining: number;
}

export type EraseOutcome =
  | { kind: 'done'; answer: EraseAnswer; replayed: boolean }
  /** The key was used before for a different body: not the same call, so no answer is reused. */
  | { kind: 'key_reused' };

// One WHERE clause for delete and count, so the proof checks exactly what the delete removed:
// a row goes if ANY identifier matches (a partner must erase by each, not only by all).
const MATCHES = 'user_id = ANY($1::text[]) OR lower(email) = ANY($2::text[])';
const params = (m: ContactsMatch) => [[...m.userIds], m.emails.map((e) => e.toLowerCase())];

/**
 * The partner's own tables: the contacts an erasure must reach, and the answers already
 * given per Idempotency-Key (counts only, never identifier values). Keys are kept in the
 * database, not in memory, because a repeat can come after this process restarted: the
 * dispatcher calls again with the same key when its answer was lost to a timeout or a crash.
 */
export async function ensureContactsSchema(pool: pg.Pool): Promise<void> {
  await pool.query(`
    CREATE TABLE IF NOT EXISTS contacts (
      id bigserial PRIMARY KEY,
      user_id text NOT NULL,
      email text NOT NULL,
      name text NOT NULL
    );
    CREATE INDEX IF NOT EXISTS contacts_user_id ON contacts (user_id);
    CREATE INDEX IF NOT EXISTS contacts_email ON contacts (lower(email));
    CREATE TABLE IF NOT EXISTS erase_calls (
      idempotency_key text PRIMARY KEY,
      body_sha256 text NOT NULL,
      status int NOT NULL,
      rows_deleted int NOT NULL,
      remaining int NOT NULL,
      answered_at timestamptz NOT NULL DEFAULT now()
    );
  `);
}

export function createContactsStore(pool: pg.Pool) {
  return {
    async seed(rows: readonly ContactRow[]): Promise<number> {
      if (rows.length === 0) return 0;
      const { rowCount } = await pool.query(
        `INSERT INTO contacts (user_id, email, name)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[])`,
        [rows.map((r) => r.userId), rows.map((r) => r.email), rows.map((r) => r.name)],
      );
      return rowCount ?? 0;
    },
    async countMatching(m: ContactsMatch): Promise<number> {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM contacts WHERE ${MATCHES}`,
        params(m),
      );
      return rows[0]?.n ?? 0;
    },
    /**
     * Deletes the subject's contacts, counts again, and records the answer under `key`, all in
     * one transaction: either the rows are gone and the answer is stored, or neither. A repeat
     * of `key` gets the stored answer and deletes nothing (rows seeded since are not touched by
     * an old call). Throws when rows remain after the delete (the caller answers 500 and the
     * dispatcher retries with the same key, which then finds no stored answer and tries again).
     */
    async eraseOnce(key: string, bodySha256: string, m: ContactsMatch): Promise<EraseOutcome> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        // Serialises calls with the same key (two dispatcher replicas after a lease ran out, or
        // a retry racing a slow first call): the second waits here, then finds the first's
        // answer. A row lock cannot do this, since the row does not exist yet.
        await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [key]);
        const prior = await client.query<{
          body_sha256: string;
          status: 200 | 404;
          rows_deleted: number;
          remaining: number;
        }>(
          'SELECT body_sha256, status, rows_deleted, remaining FROM erase_calls WHERE idempotency_key = $1',
          [key],
        );
        const p = prior.rows[0];
        if (p) {
          await client.query('COMMIT');
          if (p.body_sha256 !== bodySha256) return { kind: 'key_reused' };
          const answer = { status: p.status, rowsDeleted: p.rows_deleted, remaining: p.remaining };
          return { kind: 'done', answer, replayed: true };
        }
        const deleted = await client.query(`DELETE FROM contacts WHERE ${MATCHES}`, params(m));
        const rowsDeleted = deleted.rowCount ?? 0;
        const left = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM contacts WHERE ${MATCHES}`,
          params(m),
        );
        const remaining = left.rows[0]?.n ?? 0;
        // A row committed by another writer between the two statements: never claim a deletion
        // this store cannot show.
        if (remaining !== 0) throw new Error(`${remaining} matching row(s) remain after the delete`);
        const answer: EraseAnswer = { status: rowsDeleted > 0 ? 200 : 404, rowsDeleted, remaining };
        await client.query(
          `INSERT INTO erase_calls (idempotency_key, body_sha256, status, rows_deleted, remaining)
           VALUES ($1, $2, $3, $4, $5)`,
          [key, bodySha256, answer.status, rowsDeleted, remaining],
        );
        await client.query('COMMIT');
        return { kind: 'done', answer, replayed: false };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    },
  };
}

export type ContactsStore = ReturnType<typeof createContactsStore>;
