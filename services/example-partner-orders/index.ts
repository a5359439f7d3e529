/**
 * Example partner (composition root): an orders service that keeps user rows in its own
 * PostgreSQL database and erases them on erasure events through the partner SDK. It shows
 * what a partner team writes: a delete by any identifier, a proof, and an ack with counts.
 */
import { createErasurePartner, type PartnerStats } from '../../packages/partner-sdk/src/index.ts';
import { createPool } from '../shared/db/create-pool.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import type { OrdersPartnerConfig } from './config.ts';
import { ensureDatabase } from '../shared/ensure-database.ts';
import { createOrdersHandler, matchFor } from './erase-orders.ts';
import { createOrdersStore, ensureOrdersSchema, type OrderRow } from './orders-store.ts';

export { loadOrdersPartnerConfig, type OrdersPartnerConfig } from './config.ts';
export type { OrderRow } from './orders-store.ts';

export interface RunningOrdersPartner {
  /** The partner's database, without credentials. */
  readonly url: string;
  /** Inserts rows (demo and tests). */
  seed(rows: readonly OrderRow[]): Promise<number>;
  /** Rows matching any of these identifiers (demo and tests check erasure with it). */
  count(identifiers: readonly { type: string; value: string }[]): Promise<number>;
  /** The SDK's counters (processed, acked, duplicates, …): progress, not liveness. */
  stats(): PartnerStats;
  stop(): Promise<void>;
}

export async function start(
  cfg: OrdersPartnerConfig,
  logger: Logger = createLogger({ service: 'example-partner-orders', level: cfg.logLevel }),
): Promise<RunningOrdersPartner> {
  const dbUrl = await ensureDatabase(cfg.adminDatabaseUrl, cfg.database, cfg.databaseTimeouts);
  const pool = createPool({ connectionString: dbUrl, max: 3, timeouts: cfg.databaseTimeouts, logger });
  const store = createOrdersStore(pool);
  const partner = createErasurePartner({
    target: cfg.target,
    groupId: cfg.groupId,
    fromBeginning: cfg.fromBeginning,
    kafka: { brokers: [...cfg.kafkaBrokers], clientId: 'example-partner-orders' },
    schemaRegistryUrl: cfg.schemaRegistryUrl,
    handler: createOrdersHandler(store),
    logger,
  });
  try {
    await ensureOrdersSchema(pool);
    await partner.start();
  } catch (err) {
    await pool.end();
    throw err;
  }
  const shown = new URL(dbUrl);
  shown.username = shown.password = '';
  return {
    url: shown.toString(),
    seed: (rows) => store.seed(rows),
    count: (identifiers) => store.countMatching(matchFor(identifiers)),
    stats: () => partner.stats(),
    async stop() {
      // Reverse order: the consumer finishes the event in hand (which needs the pool) first.
      await partner.stop();
      await pool.end();
    },
  };
}
