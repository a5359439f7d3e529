import {
  Partitioners,
  type Admin,
  type Message,
  type PartitionMetadata,
  type Producer,
  type ProducerRecord,
  type RecordMetadata,
} from 'kafkajs';
import { describeError } from './describe-error.ts';
import {
  findUnacknowledgedPartitions,
  type UnacknowledgedPartition,
} from './find-unacknowledged-partitions.ts';
import type { PartnerLogger } from './options.ts';

/**
 * A send that does not count: nothing in it is durable, and the producer was replaced.
 * Always retriable, whatever kafkajs said of the cause: a non-retriable error thrown out of
 * eachBatch crashes a kafkajs consumer for good (no restart), while the send is worth
 * retrying on the new producer, with the batch redelivered.
 */
export class PartnerSendError extends Error {
  readonly retriable = true;
  constructor(
    readonly code: 'ERR_PARTNER_SEND_FAILED' | 'ERR_PARTNER_SEND_INCOMPLETE',
    message: string,
    options?: { cause: unknown },
  ) {
    super(message, options);
    this.name = 'PartnerSendError';
  }
}

/** kafkajs rejected the send (its cause kept), possibly after the broker appended. */
export class SendFailedError extends PartnerSendError {
  constructor(topic: string, cause: unknown) {
    super('ERR_PARTNER_SEND_FAILED', `send to ${topic} failed: ${describeError(cause, [])}`, { cause });
  }
}

/** send() resolved, but not every partition it wrote to answered cleanly. */
export class IncompleteSendError extends PartnerSendError {
  constructor(readonly missing: readonly UnacknowledgedPartition[]) {
    super(
      'ERR_PARTNER_SEND_INCOMPLETE',
      `send resolved but ${missing.length} partition(s) were not acknowledged`,
    );
  }
}

export interface VerifiedProducerDeps {
  /** A new, unconnected idempotent producer: called on connect and after every failed send. */
  readonly create: () => Producer;
  /** Where partition counts come from (the SDK's admin client). */
  readonly admin: Pick<Admin, 'fetchTopicMetadata'>;
  readonly logger: PartnerLogger;
  readonly now: () => number;
  /** How long a topic's partition metadata is reused, milliseconds. Default 60 000. */
  readonly metadataMaxAgeMs?: number;
}

/** The subset of a kafkajs Producer the SDK uses; every send is verified. */
export interface VerifiedProducer {
  connect(): Promise<void>;
  /** Resolves once every partition written to answered with errorCode 0; else throws PartnerSendError. */
  send(record: ProducerRecord): Promise<RecordMetadata[]>;
  disconnect(): Promise<void>;
}

/** Kafka's Java-compatible murmur2 partitioner, the one the relay and kafkajs' default use. */
const partitionOf = Partitioners.DefaultPartitioner();

/**
 * The SDK's one producer (acks and dead letters), with two guards a plain kafkajs 2.2.4
 * idempotent producer lacks:
 *
 * - A resolved send is checked: partitions are assigned here (same partitioner, so an ack
 *   stays keyed like its event), and each must be in the answer (find-unacknowledged-partitions.ts).
 * - After any failed or incomplete send the producer is thrown away and the next send gets a
 *   new one (a new producer id). kafkajs rolls a failed send's partition sequence numbers
 *   back but keeps the producer id, so if the broker did append (the answer was lost), the
 *   next send of the same record count to that partition reuses the sequence range: the
 *   broker answers DUPLICATE (errorCode 0, nothing appended) or OUT_OF_ORDER_SEQUENCE_NUMBER
 *   on every send after. A new producer id starts its sequences afresh.
 *
 * Sends run one at a time: a send in flight on the old producer when another fails would
 * carry a rolled-back sequence and could be answered DUPLICATE. kafkajs' idempotent producer
 * already serialises requests per broker (maxInFlightRequests 1), so little is lost.
 */
export function createVerifiedProducer(deps: VerifiedProducerDeps): VerifiedProducer {
  const maxAgeMs = deps.metadataMaxAgeMs ?? 60_000;
  const metadata = new Map<string, { at: number; partitions: PartitionMetadata[] }>();
  let current: Producer | undefined;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  async function connected(): Promise<Producer> {
    if (closed) throw new Error('producer disconnected');
    if (current) return current;
    const producer = deps.create();
    try {
      await producer.connect();
      // disconnect() ran meanwhile: nobody would close this one.
      if (closed) throw new Error('producer disconnected');
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw err;
    }
    current = producer;
    return producer;
  }

  async function discard(producer: Producer): Promise<void> {
    if (current === producer) current = undefined;
    // Leaders or partition counts may have moved too.
    metadata.clear();
    await producer.disconnect().catch(() => undefined);
  }

  async function partitionsFor(topic: string): Promise<PartitionMetadata[]> {
    const hit = metadata.get(topic);
    if (hit && deps.now() - hit.at < maxAgeMs) return hit.partitions;
    const { topics } = await deps.admin.fetchTopicMetadata({ topics: [topic] });
    const partitions = topics.find((t) => t.name === topic)?.partitions ?? [];
    if (partitions.length === 0) throw new Error(`topic ${topic} has no partitions`);
    metadata.set(topic, { at: deps.now(), partitions });
    return partitions;
  }

  async function sendNow(record: ProducerRecord): Promise<RecordMetadata[]> {
    const producer = await connected();
    const { topic } = record;
    const partitionMetadata = await partitionsFor(topic);
    const partitions = new Set<number>();
    const messages = record.messages.map((message): Message => {
      const partition = message.partition ?? partitionOf({ topic, partitionMetadata, message });
      partitions.add(partition);
      return { ...message, partition };
    });
    let answered: RecordMetadata[];
    try {
      answered = await producer.send({ ...record, messages });
    } catch (err) {
      await discard(producer);
      const error = new SendFailedError(topic, err);
      deps.logger.warn('send failed, producer replaced', { topic, code: error.code, error: error.message });
      throw error;
    }
    const missing = findUnacknowledgedPartitions(new Map([[topic, partitions]]), answered);
    if (missing.length > 0) {
      await discard(producer);
      const error = new IncompleteSendError(missing);
      deps.logger.warn('send incomplete, producer replaced', { topic, code: error.code, missing });
      throw error;
    }
    return answered;
  }

  return {
    connect: async () => {
      await connected();
    },
    send(record) {
      const run = queue.then(() => sendNow(record));
      queue = run.catch(() => undefined);
      return run;
    },
    // Does not wait for a send in flight (stop() already waited for the batch in hand): one
    // stuck on an unreachable cluster would hold up shutdown. It fails once disconnected.
    async disconnect() {
      closed = true;
      const producer = current;
      current = undefined;
      await producer?.disconnect();
    },
  };
}
