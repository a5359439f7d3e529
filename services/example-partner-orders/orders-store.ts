import type pg from 'pg';

export interface OrderRow {
  readonly userId: string;
  readonly email: string;
  readonly item: string;
}

/** The identifier values of one subject this store can match on. Emails are compared lowercased. */
export interface OrdersMatch {
  readonly userIds: readonly string[];
  readonly emails: readonly string[];
}

// One WHERE clause for delete and count, so the proof checks exactly what the delete removed:
// a row goes if ANY identifier matches (a partner must erase by each, not only by all).
const MATCHES = 'user_id = ANY($1::text[]) OR lower(email) = ANY($2::text[])';
const params = (m: OrdersMatch) => [[...m.userIds], m.emails.map((e) => e.toLowerCase())];

/** The partner's own table: the kind of data an erasure must reach. */
export async function ensureOrdersSchema(pool: pg.Pool): Promise<void> {
  await pool.query(`
    CREATE TABLE IF NOT EXISTS orders (
      id bigserial PRIMARY KEY,
      user_id text NOT NULL,
      email text NOT NULL,
      item text NOT NULL
    );
    CREATE INDEX IF NOT EXISTS orders_user_id ON orders (user_id);
    CREATE INDEX IF NOT EXISTS orders_email ON orders (lower(email));
  `);
}

export function createOrdersStore(pool: pg.Pool) {
  return {
    async seed(rows: readonly OrderRow[]): Promise<number> {
      if (rows.length === 0) return 0;
      const { rowCount } = await pool.query(
        `INSERT INTO orders (user_id, email, item)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[])`,
        [rows.map((r) => r.userId), rows.map((r) => r.email), rows.map((r) => r.item)],
      );
      return rowCount ?? 0;
    },
    /** One statement: the delete is atomic and durable when it returns (autocommit). */
    async deleteMatching(m: OrdersMatch): Promise<number> {
      const { rowCount } = await pool.query(`DELETE FROM orders WHERE ${MATCHES}`, params(m));
      return rowCount ?? 0;
    },
    async countMatching(m: OrdersMatch): Promise<number> {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM orders WHERE ${MATCHES}`,
        params(m),
      );
      return rows[0]?.n ?? 0;
    },
  };
}

export type OrdersStore = ReturnType<typeof createOrdersStore>;
