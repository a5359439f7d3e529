/**
 * Every PostgreSQL connection the services and the CLI open, pooled or dedicated (LISTEN),
 * gets its options here, so none can wait forever: node-postgres has no timeout by default,
 * and a server (or a proxy, or a half-dead network path) that accepts the TCP connection and
 * never answers would hang a service's loop, and with it its shutdown, silently.
 */
import pg from 'pg';
import type { DatabaseTimeouts } from '../infra-config.ts';
import type { Logger } from '../logger.ts';

/**
 * Options for one connection. `connectionTimeoutMillis` covers TCP, start-up and
 * authentication; `query_timeout` is the client's own limit on each statement's answer
 * (`statement_timeout` would need a server that answers). A statement that times out leaves
 * its connection busy: callers that hold a client already discard it when its ROLLBACK fails
 * (it times out too), and pool.query discards it on any error.
 */
export function connectionOptions(connectionString: string, timeouts: DatabaseTimeouts): pg.ClientConfig {
  return {
    connectionString,
    connectionTimeoutMillis: timeouts.connectMs,
    ...(timeouts.queryMs > 0 ? { query_timeout: timeouts.queryMs } : {}),
    // A peer that vanished without a FIN is found by TCP keepalive, not by waiting on it.
    keepAlive: true,
  };
}

export interface PoolOptions {
  readonly connectionString: string;
  /** Most connections the pool opens. */
  readonly max: number;
  /** Connect and statement timeouts: the config's databaseTimeouts (infra-config.ts). */
  readonly timeouts: DatabaseTimeouts;
  /** Where an idle connection's failure is reported (ERR_PG_IDLE); the pool replaces it. */
  readonly logger?: Logger;
  /** Server settings for every connection, e.g. `-c jit=off` (the API's intake). Default none. */
  readonly options?: string;
}

export function createPool(opts: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    ...connectionOptions(opts.connectionString, opts.timeouts),
    max: opts.max,
    ...(opts.options ? { options: opts.options } : {}),
  });
  // Without a listener, an idle connection dropped by the server would crash the process.
  pool.on('error', (err) =>
    opts.logger?.warn('idle postgres client failed', { code: 'ERR_PG_IDLE', error: err }),
  );
  return pool;
}
