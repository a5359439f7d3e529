import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, type Admin, type Consumer, type Producer } from 'kafkajs';
import { TOPICS, createEventCodec } from '../../../services/shared/event-codec.ts';
import { BoundedSet } from './bounded-set.ts';
import { fetchLag } from './compute-lag.ts';
import { ensureDeadLetterTopic } from './dead-letter.ts';
import { isKafka, resolveOptions, type ErasurePartnerOptions, type PartnerLogger } from './options.ts';
import { createMessageProcessor, type PartnerStats } from './process-message.ts';

export interface ErasurePartner {
  /** Connects, ensures the dead-letter topic, joins the group and starts consuming. */
  start(): Promise<void>;
  /** Finishes the message in hand (its ack and commit), then leaves the group and disconnects. */
  stop(): Promise<void>;
  /** Events not yet committed by this group, summed over partitions; works while stopped. */
  lag(): Promise<number>;
  stats(): PartnerStats;
}

/** kafkajs' own log lines, routed to the partner's logger (they carry no payloads). */
function kafkaLogCreator(logger: PartnerLogger) {
  return () =>
    ({ level, log }: { level: number; log: { message: string } & Record<string, unknown> }) => {
      const { message, ...meta } = log;
      if (level <= logLevel.ERROR) logger.error(`kafkajs: ${message}`, meta);
      else if (level === logLevel.WARN) logger.warn(`kafkajs: ${message}`, meta);
    };
}

export function createErasurePartner(input: ErasurePartnerOptions): ErasurePartner {
  const o = resolveOptions(input);
  const kafka = isKafka(o.kafka)
    ? o.kafka
    : new Kafka({
        clientId: o.kafka.clientId ?? `erasure-partner-${o.target}`,
        brokers: o.kafka.brokers,
        logLevel: logLevel.WARN,
        logCreator: kafkaLogCreator(o.logger),
      });
  const stats: PartnerStats = {
    processed: 0,
    acked: 0,
    failed: 0,
    skipped: 0,
    duplicates: 0,
    deadLettered: 0,
    lastProgressAt: null,
  };
  let admin: Admin | undefined;
  let producer: Producer | undefined;
  let consumer: Consumer | undefined;

  let started = false;

  async function start(): Promise<void> {
    if (started) throw new Error('erasure partner already started');
    started = true;
    try {
      await connectAndRun();
    } catch (err) {
      // Half a start leaves no open sockets behind.
      await stop().catch(() => undefined);
      throw err;
    }
    o.logger.info('erasure partner started', { target: o.target, groupId: o.groupId });
  }

  async function connectAndRun(): Promise<void> {
    // Created in dependency order, stopped in reverse (STYLE: explicit shutdown).
    admin = kafka.admin();
    await admin.connect();
    if (await ensureDeadLetterTopic(admin, o.deadLetterTopic))
      o.logger.info('dead-letter topic created', { topic: o.deadLetterTopic });
    // Idempotent: a retried send after a lost broker answer is not written twice; acks=-1
    // (all in-sync replicas) so an ack we commit past cannot vanish with one broker.
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    consumer = kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeoutMs,
      maxWaitTimeInMs: o.fetchMaxWaitMs,
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [TOPICS.requested], fromBeginning: o.fromBeginning });

    const processMessage = createMessageProcessor({
      options: o,
      codec: createEventCodec(o.schemaRegistryUrl),
      producer,
      stats,
      seen: new BoundedSet(o.dedupeCapacity),
      sleep: (ms) => sleep(ms),
    });
    const running = consumer;
    // eachMessage with autoCommit off, committing offset+1 only once processMessage resolved,
    // i.e. once the ack (or dead letter + failed ack) is acknowledged by all in-sync replicas.
    // Chosen over eachBatch + resolveOffset because resolveOffset only marks an offset for
    // kafkajs' own auto-commit, whose timing we would then have to reason about; one explicit
    // commit per message costs a round trip but makes "ack before commit" a line of code.
    // A crash between ack and commit re-delivers the event: a duplicate ack, which the
    // pipeline dedupes; never a lost one. So is a stop mid-message: kafkajs skips the commit of
    // a consumer that is no longer running. If processMessage throws, nothing is committed and
    // kafkajs seeks back to the message and retries it (then restarts the consumer).
    await consumer.run({
      autoCommit: false,
      partitionsConsumedConcurrently: o.partitionsConsumedConcurrently,
      eachMessage: async ({ topic, partition, message, heartbeat }) => {
        await processMessage({ topic, partition, message, heartbeat });
        const next = (BigInt(message.offset) + 1n).toString();
        await running.commitOffsets([{ topic, partition, offset: next }]);
        stats.processed++;
        stats.lastProgressAt = new Date(o.now());
      },
    });
  }

  async function stop(): Promise<void> {
    const [c, p, a] = [consumer, producer, admin];
    consumer = producer = admin = undefined;
    started = false;
    // The consumer first: it waits for the message in hand, whose commit needs the producer.
    await c?.disconnect();
    await p?.disconnect();
    await a?.disconnect();
    if (c) o.logger.info('erasure partner stopped', { target: o.target, groupId: o.groupId });
  }

  async function lag(): Promise<number> {
    if (admin) return fetchLag(admin, o.groupId, TOPICS.requested, o.fromBeginning);
    // Stopped: a short-lived admin, so lag can be watched while the partner is down.
    const temporary = kafka.admin();
    await temporary.connect();
    try {
      return await fetchLag(temporary, o.groupId, TOPICS.requested, o.fromBeginning);
    } finally {
      await temporary.disconnect();
    }
  }

  return { start, stop, lag, stats: () => ({ ...stats }) };
}
