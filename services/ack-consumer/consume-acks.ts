/**
 * The ack consumer's loop: privacy.erasure.acks.v1 → decode → validate → applyAcks, a
 * chunk of up to `batchSize` acks per transaction (one COMMIT for hundreds of acks is what
 * lets one consumer keep up with several partners acknowledging thousands of events/s).
 *
 * Offsets never run ahead of the database. We use eachBatch with `eachBatchAutoResolve:
 * false` and resolve a message's offset only after its chunk's COMMIT has returned (or the
 * message was judged invalid, which writes nothing). kafkajs commits only resolved offsets
 * (autoCommit on, so also on rebalance and stop), so a crash between COMMIT and the offset
 * commit redelivers the message, and applyAck's idempotency turns it into a duplicate. The
 * reverse (offset committed, effect lost) cannot happen. eachMessage would resolve as soon
 * as the handler returns too, but gives no way to stop mid-batch without resolving.
 */
import type { Consumer, KafkaMessage } from 'kafkajs';
import pg from 'pg';
import { Counter, type Registry } from 'prom-client';
import { applyAck, applyAcks, type AckInput, type AckResult } from '../shared/apply-ack.ts';
import { createStoppableRetry, STOPPED } from '../shared/stoppable-retry.ts';
import { isRetriableRegistryError, type EventCodec } from '../shared/event-codec.ts';
import type { Logger } from '../shared/logger.ts';
import { validateAckEvent } from './validate-ack-event.ts';

export interface AckConsumerDeps {
  consumer: Consumer;
  codec: EventCodec;
  pool: pg.Pool;
  logger: Logger;
  metrics: Registry;
  topic: string;
  /** Journal actor for applied acks. Default 'ack-consumer'. */
  actor?: string;
  /** Longest pause between retries of a failing database or registry call, in ms. Default 10 000. */
  maxBackoffMs?: number;
  /** Where a NEW consumer group starts: the oldest retained ack (default) or only new ones. */
  fromBeginning?: boolean;
  /** Most acks applied in one transaction. Default 500. */
  batchSize?: number;
  /** Partitions worked on at once (kafkajs partitionsConsumedConcurrently). Default 1. */
  concurrency?: number;
  /** For the retry jitter (full jitter, services/shared/compute-backoff.ts). Default Math.random. */
  random?: () => number;
}

type Outcome = AckResult['result'] | 'invalid' | 'error';

/** SQLSTATEs worth retrying: connection (08), resources (53), shutdown (57P), serialization, lock. */
export function isRetriablePgError(err: unknown): boolean {
  // Not the server's answer (refused or dropped connection, pool timeout): try again.
  if (!(err instanceof pg.DatabaseError)) return true;
  const code = err.code ?? '';
  return /^(08|53|57P)/.test(code) || ['40001', '40P01', '55P03'].includes(code);
}

export async function runAckConsumer(deps: AckConsumerDeps): Promise<{ stop(): Promise<void> }> {
  const {
    consumer,
    codec,
    pool,
    topic,
    actor = 'ack-consumer',
    maxBackoffMs = 10_000,
    batchSize = 500,
  } = deps;
  const logger = deps.logger.child({ component: 'ack-consumer', topic });
  const acks = new Counter({
    name: 'erasure_acks_consumed_total',
    help: 'Ack events consumed, by result (applied, duplicate, refused, unknown_request, invalid, error)',
    labelNames: ['result'],
    registers: [deps.metrics],
  });
  let stopping = false;
  const { retrying, wakeAll, interrupted } = createStoppableRetry({
    logger,
    code: 'ERR_ACK_RETRY',
    maxBackoffMs,
    isStopping: () => stopping,
    random: deps.random,
  });

  /** The database refused the call for good (retrying gives up on nothing else of its own). */
  const refused = (err: unknown) => err instanceof pg.DatabaseError && !interrupted(err);

  type Parsed = { kind: 'invalid' } | { kind: 'ack'; ack: AckInput; about: Record<string, unknown> };

  /** One message to an ack to apply, or invalid; STOPPED leaves its offset unresolved. */
  async function parse(m: KafkaMessage, heartbeat: () => Promise<void>): Promise<Parsed | typeof STOPPED> {
    const where = { offset: m.offset };
    const invalid = (reason: string) => {
      logger.warn('ack event skipped', { code: 'ERR_ACK_INVALID', reason, ...where });
      return { kind: 'invalid' as const };
    };
    // Confluent wire format: magic byte 0, a 4-byte schema id, then Avro.
    if (!m.value || m.value.length < 6 || m.value[0] !== 0)
      return invalid('not in the Confluent wire format');
    const value = m.value;
    let event: unknown;
    try {
      const decoded = await retrying(
        'decoding',
        () => codec.decode(value),
        isRetriableRegistryError,
        heartbeat,
      );
      if (decoded === STOPPED) return STOPPED;
      event = decoded;
    } catch (err) {
      // The heartbeat between retries failed (a rebalance): the event may be fine. Thrown to
      // kafkajs with the offset unresolved, so it is read again.
      if (interrupted(err)) throw err;
      return invalid(`undecodable: ${err instanceof Error ? err.name : 'error'}`);
    }
    const check = validateAckEvent(event);
    if (!check.ok) return invalid(check.reason);
    const about = { requestId: check.ack.requestId, target: check.ack.target, ...where };
    if (check.warning) {
      logger.warn('ack event with an unknown status', {
        code: 'ERR_ACK_INVALID',
        reason: check.warning,
        ...about,
      });
      acks.inc({ result: 'invalid' });
    }
    return { kind: 'ack', ack: check.ack, about };
  }

  /**
   * Applies a chunk's acks in one transaction (applyAcks), retrying while the database is
   * unavailable. When the database refuses the batch for good (a bug or data the checks
   * missed), each ack is tried alone, so one bad ack is skipped instead of the chunk: a
   * skipped ack leaves its task open and the ack SLA's redelivery asks the partner again;
   * blocking would stall the partition. Returns an outcome per ack, or STOPPED.
   *
   * Only the database's own answer is a refusal. Anything else `retrying` throws (the
   * heartbeat between retries failing because the group is rebalancing) propagates to
   * kafkajs with no offset of the chunk resolved: the acks were not applied, and the
   * partition's next owner reads them again.
   */
  async function applyChunk(
    items: { ack: AckInput; about: Record<string, unknown> }[],
    heartbeat: () => Promise<void>,
  ): Promise<Outcome[] | typeof STOPPED> {
    if (items.length === 0) return [];
    let results: (AckResult | 'error')[];
    try {
      const applied = await retrying(
        'applying acks',
        () =>
          applyAcks(
            pool,
            items.map((i) => i.ack),
            actor,
          ),
        isRetriablePgError,
        heartbeat,
      );
      if (applied === STOPPED) return STOPPED;
      results = applied;
    } catch (err) {
      if (!refused(err)) throw err;
      results = [];
      for (const { ack, about } of items) {
        try {
          const one = await retrying(
            'applying ack',
            () => applyAck(pool, ack, actor),
            isRetriablePgError,
            heartbeat,
          );
          if (one === STOPPED) return STOPPED;
          results.push(one);
        } catch (err) {
          if (!refused(err)) throw err;
          logger.error('ack could not be applied', {
            code: 'ERR_ACK_APPLY',
            errorCode: (err as { code?: unknown }).code,
            error: err instanceof Error ? err.message : String(err),
            ...about,
          });
          results.push('error');
        }
      }
    }
    return results.map((r, i) => {
      if (r === 'error') return 'error';
      const about = items[i]!.about;
      if (r.result === 'refused')
        logger.warn('ack refused: target is not one of the request’s', { code: 'ERR_ACK_REFUSED', ...about });
      else if (r.result === 'unknown_request')
        logger.warn('ack for an unknown request', { code: 'ERR_ACK_UNKNOWN_REQUEST', ...about });
      else logger.debug('ack consumed', { result: r.result, requestStatus: r.requestStatus, ...about });
      return r.result;
    });
  }

  consumer.on(consumer.events.CRASH, (e) =>
    logger.error('kafka consumer crashed', {
      code: 'ERR_KAFKA',
      error: e.payload.error,
      restart: e.payload.restart,
    }),
  );
  await consumer.connect();
  // From the beginning for a new group: a missed ack costs an erasure, a re-read one nothing.
  await consumer.subscribe({ topics: [topic], fromBeginning: deps.fromBeginning ?? true });
  await consumer.run({
    autoCommit: true,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: deps.concurrency ?? 1,
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }) => {
      const live = () => !stopping && isRunning() && !isStale();
      for (let from = 0; from < batch.messages.length && live(); from += batchSize) {
        const chunk = batch.messages.slice(from, from + batchSize);
        // Decoded in order; a stop mid-chunk keeps only the messages before it.
        const parsed: Parsed[] = [];
        for (const m of chunk) {
          if (!live()) break;
          const p = await parse(m, heartbeat);
          if (p === STOPPED) break;
          parsed.push(p);
        }
        const outcomes = await applyChunk(
          parsed.flatMap((p) => (p.kind === 'ack' ? [p] : [])),
          heartbeat,
        );
        if (outcomes === STOPPED) break;
        let next = 0;
        parsed.forEach((p, i) => {
          acks.inc({ result: p.kind === 'invalid' ? 'invalid' : outcomes[next++]! });
          resolveOffset(chunk[i]!.offset); // only now: the effects are committed in Postgres
        });
        await commitOffsetsIfNecessary();
        await heartbeat();
        if (parsed.length < chunk.length) break;
      }
    },
  });
  logger.info('ack consumer running');

  return {
    async stop() {
      stopping = true;
      wakeAll();
      // Waits for the batch in hand, then commits the resolved offsets and leaves the group.
      await consumer.disconnect();
    },
  };
}
