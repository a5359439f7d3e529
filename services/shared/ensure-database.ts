import pg from 'pg';
import { connectionOptions } from './db/create-pool.ts';
import type { DatabaseTimeouts } from './infra-config.ts';

/**
 * Creates `name` through the admin connection unless it exists, and returns its URL.
 * PostgreSQL has no CREATE DATABASE IF NOT EXISTS, so the check and create can race with a
 * second replica starting; the loser's 42P04 (duplicate_database) means the same as success.
 * `name` must already be validated as a plain identifier (config.ts).
 */
export async function ensureDatabase(
  adminUrl: string,
  name: string,
  timeouts: DatabaseTimeouts,
): Promise<string> {
  const admin = new pg.Client(connectionOptions(adminUrl, timeouts));
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount === 0) {
      await admin.query(`CREATE DATABASE ${name}`).catch((err: { code?: string }) => {
        if (err.code !== '42P04') throw err;
      });
    }
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
