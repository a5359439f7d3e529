import type { KafkaMessage, Message, Producer } from 'kafkajs';
import {
  TOPICS,
  isRetriableRegistryError,
  type AckEvent,
  type EventCodec,
  type RequestedEvent,
} from '../../../services/shared/event-codec.ts';
import type { BoundedSet } from './bounded-set.ts';
import { retryWithBackoff } from './compute-backoff.ts';
import { deadLetterMessage } from './dead-letter.ts';
import { describeError, redactValues, truncate } from './describe-error.ts';
import type { ErasureEvent, HandlerResult, ResolvedOptions } from './options.ts';
import { selectEvent } from './select-event.ts';

export interface PartnerStats {
  /** Messages finished and committed, whatever the outcome. */
  processed: number;
  /** Acks published with status deleted or not_found. */
  acked: number;
  /** Acks published with status failed. */
  failed: number;
  /** Events for other targets. */
  skipped: number;
  /** Events already acked in this run (same eventId), not handled again. */
  duplicates: number;
  deadLettered: number;
  /** Last commit: health is this moving while lag is above 0. */
  lastProgressAt: Date | null;
}

export interface IncomingMessage {
  readonly topic: string;
  readonly partition: number;
  readonly message: KafkaMessage;
  readonly heartbeat: () => Promise<void>;
}

interface Deps {
  readonly options: ResolvedOptions;
  readonly codec: EventCodec;
  /** The SDK passes its verified producer (create-verified-producer.ts), shared by acks and dead letters. */
  readonly producer: Pick<Producer, 'send'>;
  readonly stats: PartnerStats;
  readonly seen: BoundedSet;
  readonly sleep: (ms: number) => Promise<void>;
  /**
   * Where acks go. Absent: each ack is sent on its own (acks=-1) before processMessage
   * resolves, and the eventId is then added to `seen`. Present: the ack record is handed
   * over instead, and the caller must publish every handed-over record (acks=-1) before it
   * commits the message's offset, and add the eventId to `seen` only once that send has
   * succeeded: the batch consumer does, one send per batch. An id in `seen` whose ack never
   * went out would turn the event's redelivery into a "duplicate": no ack, offset committed.
   */
  readonly ackSink?: AckSink;
}

export interface AckSink {
  /** Takes an ack record to publish. */
  add(record: Message, eventId: string): void;
  /** An ack for this event was handed over and is not sent yet: another copy is a duplicate. */
  has(eventId: string): boolean;
}

const STATUSES = new Set(['deleted', 'not_found']);

/**
 * One message to a durable outcome: an ack (deleted / not_found), or the dead-letter copy
 * plus a failed ack, or a deliberate skip. Resolves only once that outcome is durable
 * (every send awaited, acks=-1) or, with an ackSink, handed to the sink after everything
 * else is durable; throws when it is not, so the caller must not commit and the message is
 * delivered again.
 */
export function createMessageProcessor(deps: Deps) {
  const { options: o, codec, producer, stats, seen, sleep } = deps;
  const backoff = { sleep, random: o.random };

  const deadLetter = async (m: IncomingMessage, error: string, attempts: number, event?: RequestedEvent) => {
    const { topic, partition, message } = m;
    const cause = {
      error,
      attempts,
      target: o.target,
      sourceTopic: topic,
      partition,
      offset: message.offset,
    };
    const ids = event ? { eventId: event.eventId, requestId: event.requestId } : {};
    await producer.send({
      topic: o.deadLetterTopic,
      acks: -1,
      messages: [deadLetterMessage(message, { ...cause, ...ids, failedAt: o.now() })],
    });
    stats.deadLettered++;
    o.logger.error('erasure event dead-lettered', {
      ...ids,
      partition,
      offset: message.offset,
      attempts,
      error,
    });
  };

  /**
   * The ack is keyed like the event it answers (the relay derives that key from the subject),
   * so one subject's acks stay in order on one partition, as DESIGN's event log requires. An
   * event without a key (not written by the relay) is answered under its request id.
   */
  const ack = async (m: IncomingMessage, event: RequestedEvent, status: string, detail: string | null) => {
    const value: AckEvent = {
      requestId: event.requestId,
      target: o.target,
      status,
      detail,
      ackedAt: o.now(),
      eventId: event.eventId,
    };
    const record = { key: m.message.key ?? event.requestId, value: await codec.encode(TOPICS.acks, value) };
    if (deps.ackSink) deps.ackSink.add(record, event.eventId);
    else {
      await producer.send({ topic: TOPICS.acks, acks: -1, messages: [record] });
      seen.add(event.eventId);
    }
  };

  return async function processMessage(m: IncomingMessage): Promise<void> {
    const { message, partition } = m;
    const value = message.value;
    // Not in the Confluent wire format (magic byte 0, 4-byte schema id): no retry can decode
    // it, and leaving it would stop every later erasure on this partition.
    if (!value || value.length < 5 || value[0] !== 0) {
      await deadLetter(m, 'not in the Confluent wire format', 0);
      return;
    }
    // The registry unreachable or failing: retry here, then throw so the message is not
    // committed; lag and lastProgressAt show the stall until the registry is back. Any other
    // decode error (an unknown schema id, a corrupt body) fails the same way every time:
    // dead-lettered like the bytes above, or the partition would stop on it for good.
    const decoded = await retryWithBackoff(() => codec.decode<RequestedEvent>(value), o.retry, {
      ...backoff,
      retriable: isRetriableRegistryError,
    });
    if (!decoded.ok && !isRetriableRegistryError(decoded.error)) {
      // Avro and registry messages may quote what they read: quoted spans are cut out.
      await deadLetter(m, `not decodable: ${describeError(decoded.error, [])}`, decoded.attempts);
      return;
    }
    if (!decoded.ok || !decoded.value) {
      o.logger.error('erasure event not decodable, will be redelivered', {
        partition,
        offset: message.offset,
        error: describeError(decoded.error, []),
      });
      throw decoded.error;
    }
    const event = decoded.value;
    const ids = { requestId: event.requestId, eventId: event.eventId, partition, offset: message.offset };

    if (selectEvent(event, o.target) !== 'handle') {
      stats.skipped++;
      return;
    }
    if (seen.has(event.eventId) || deps.ackSink?.has(event.eventId)) {
      stats.duplicates++;
      return;
    }

    const values = event.identifiers.map((i) => i.value);
    const handlerEvent: ErasureEvent = {
      requestId: event.requestId,
      eventId: event.eventId,
      identifiers: event.identifiers.map((i) => ({ type: i.type, value: i.value })),
      reason: event.reason,
      requestedAt: new Date(event.requestedAt),
      deadline: new Date(event.deadline),
      redelivery: event.redelivery,
    };
    const outcome = await retryWithBackoff<HandlerResult>(
      async () => {
        const result = await o.handler(handlerEvent);
        if (!result || !STATUSES.has(result.status))
          throw new TypeError('handler must return { status: "deleted" | "not_found" }');
        return result;
      },
      o.retry,
      {
        ...backoff,
        between: async (attempt, err) => {
          o.logger.warn('erasure handler failed, retrying', {
            ...ids,
            attempt,
            error: describeError(err, values),
          });
          // A retry's wait must not cost the partition: the group would think us dead.
          await m.heartbeat();
        },
      },
    );

    if (outcome.ok && outcome.value) {
      const detail =
        outcome.value.detail === undefined ? null : truncate(redactValues(outcome.value.detail, values));
      await ack(m, event, outcome.value.status, detail);
      stats.acked++;
      o.logger.debug?.('erasure acked', { ...ids, status: outcome.value.status, attempts: outcome.attempts });
    } else {
      const error = describeError(outcome.error, values);
      // Dead letter first: once a failed ack is out, the event is already where a person can replay it.
      await deadLetter(m, error, outcome.attempts, event);
      await ack(m, event, 'failed', truncate(`failed after ${outcome.attempts} attempts: ${error}`));
      stats.failed++;
    }
  };
}
