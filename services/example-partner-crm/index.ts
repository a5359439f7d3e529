/**
 * Example partner (composition root): a CRM that keeps contacts in its own PostgreSQL
 * database and exposes a synchronous delete API, called by the sync dispatcher for its
 * `sync_http` target. It shows what a partner team writes for that path: check the
 * dispatcher's credentials, honour the Idempotency-Key, delete by any identifier, re-count
 * to prove it, and answer with counts as evidence.
 *
 * A database rather than an in-memory map: the answers per Idempotency-Key must outlive a
 * restart (the dispatcher repeats a call whose answer it lost), and a real store is what
 * makes the delete-then-count proof mean something.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPool } from '../shared/db/create-pool.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import type { CrmPartnerConfig } from './config.ts';
import { createContactsStore, ensureContactsSchema, type ContactRow } from './contacts-store.ts';
import { ensureDatabase } from '../shared/ensure-database.ts';
import { createEraseApi } from './handle-erase-call.ts';

export { loadCrmPartnerConfig, type CrmAuthType, type CrmPartnerConfig } from './config.ts';
export type { ContactRow } from './contacts-store.ts';

export interface RunningCrmPartner {
  /** The delete API's base URL (`http://host:port`); the target's urlTemplate is `<url>/erase`. */
  readonly url: string;
  /** The partner's database, without credentials. */
  readonly databaseUrl: string;
  /** Inserts contacts (demo and tests). */
  seed(rows: readonly ContactRow[]): Promise<number>;
  /** Contacts matching any of these identifiers (demo and tests check erasure with it). */
  count(identifiers: readonly { type: string; value: string }[]): Promise<number>;
  stop(): Promise<void>;
}

export interface CrmPartnerDeps {
  /** Epoch milliseconds, for HMAC timestamp checks. Default Date.now. */
  readonly now?: () => number;
}

const matchFor = (identifiers: readonly { type: string; value: string }[]) => ({
  userIds: identifiers.filter((i) => i.type === 'user_id').map((i) => i.value),
  emails: identifiers.filter((i) => i.type === 'email').map((i) => i.value),
});

/** Lets calls in flight finish this long on stop before their connections are cut. */
const SHUTDOWN_GRACE_MS = 5000;

export async function start(
  cfg: CrmPartnerConfig,
  logger: Logger = createLogger({ service: 'example-partner-crm', level: cfg.logLevel }),
  deps: CrmPartnerDeps = {},
): Promise<RunningCrmPartner> {
  const dbUrl = await ensureDatabase(cfg.adminDatabaseUrl, cfg.database, cfg.databaseTimeouts);
  const pool = createPool({ connectionString: dbUrl, max: 5, timeouts: cfg.databaseTimeouts, logger });
  const store = createContactsStore(pool);
  const server = http.createServer(
    createEraseApi({
      store,
      auth: { type: cfg.authType, secret: cfg.secret, maxSkewSeconds: cfg.hmacMaxSkewSeconds },
      logger,
      now: deps.now ?? Date.now,
    }),
  );
  try {
    await ensureContactsSchema(pool);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(cfg.port, cfg.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await pool.end();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const host = cfg.host.includes(':') ? `[${cfg.host}]` : cfg.host;
  const url = `http://${host}:${port}`;
  logger.info('crm delete API listening', { url, target: cfg.target, auth: cfg.authType });
  const shownDb = new URL(dbUrl);
  shownDb.username = shownDb.password = '';
  return {
    url,
    databaseUrl: shownDb.toString(),
    seed: (rows) => store.seed(rows),
    count: (identifiers) => store.countMatching(matchFor(identifiers)),
    async stop() {
      // Reverse order: stop intake, let calls in flight finish (they need the pool), then close.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const cut = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
      await closed;
      clearTimeout(cut);
      await pool.end();
      logger.info('crm delete API stopped');
    },
  };
}
