/**
 * Example partner (composition root): a profile service whose store is a compacted Kafka
 * topic. It erases with tombstones through the partner SDK and proves the erasure by
 * reading the log back, which is what a team keeping user data in Kafka has to do.
 */
import { Kafka, logLevel, type logCreator } from 'kafkajs';
import { createErasurePartner, type PartnerStats } from '../../packages/partner-sdk/src/index.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import type { ProfilesPartnerConfig } from './config.ts';
import { createProfilesHandler } from './erase-profile.ts';
import { ensureProfilesTopic } from './ensure-profiles-topic.ts';
import { createProfilesStore, type Profile } from './profiles-store.ts';

export { loadProfilesPartnerConfig, type ProfilesPartnerConfig } from './config.ts';
export type { Profile } from './profiles-store.ts';

export interface RunningProfilesPartner {
  /** The store, as kafka://<brokers>/<topic>. */
  readonly url: string;
  /** Writes profiles, keyed by userId (demo and tests). */
  seed(profiles: readonly Profile[]): Promise<void>;
  /** The latest profile per user id, null when erased or absent (demo and tests). */
  latest(userIds: readonly string[]): Promise<Map<string, Profile | null>>;
  /** The SDK's counters (processed, acked, duplicates, …): progress, not liveness. */
  stats(): PartnerStats;
  stop(): Promise<void>;
}

/** kafkajs' warnings and errors into our logger (they name brokers and topics, never values). */
function kafkaLogs(logger: Logger): logCreator {
  return () =>
    ({ level, log }) => {
      const { message, ...extra } = log;
      const meta = { component: 'kafkajs', broker: extra['broker'], error: extra['error'] };
      if (level === logLevel.ERROR) logger.error(String(message), meta);
      else if (level === logLevel.WARN) logger.warn(String(message), meta);
    };
}

export async function start(
  cfg: ProfilesPartnerConfig,
  logger: Logger = createLogger({ service: 'example-partner-profiles', level: cfg.logLevel }),
): Promise<RunningProfilesPartner> {
  // One client for the SDK, the store's producer and the proof reads.
  const kafka = new Kafka({
    clientId: 'example-partner-profiles',
    brokers: [...cfg.kafkaBrokers],
    logLevel: logLevel.WARN,
    logCreator: kafkaLogs(logger),
  });
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const store = createProfilesStore({ kafka, producer, topic: cfg.topic, scanTimeoutMs: cfg.scanTimeoutMs });
  const partner = createErasurePartner({
    target: cfg.target,
    groupId: cfg.groupId,
    fromBeginning: cfg.fromBeginning,
    kafka,
    schemaRegistryUrl: cfg.schemaRegistryUrl,
    handler: createProfilesHandler(store),
    logger,
  });
  try {
    await admin.connect();
    if (await ensureProfilesTopic(admin, cfg.topic))
      logger.info('profile topic created', { topic: cfg.topic });
    await producer.connect();
    await partner.start();
  } catch (err) {
    await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    throw err;
  }
  return {
    url: `kafka://${cfg.kafkaBrokers.join(',')}/${cfg.topic}`,
    seed: (profiles) => store.seed(profiles),
    latest: (userIds) => store.latest(userIds),
    stats: () => partner.stats(),
    async stop() {
      // Reverse order: the consumer finishes the event in hand, which needs the producer.
      await partner.stop();
      await producer.disconnect();
      await admin.disconnect();
    },
  };
}
