import {
  Partitioners,
  type Admin,
  type Message,
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
import { createPartitionLookup } from './partition-lookup.ts';
import { createReplaceableProducer } from './replaceable-producer.ts';

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
 * The SDK's one producer (acks and dead letters): a replaceable producer
 * (replaceable-producer.ts: replaced after any failed or incomplete send, sends one at a
 * time), whose resolved sends are checked too. Partitions are assigned here (same
 * partitioner, so an ack stays keyed like its event), and each must be in the answer
 * (find-unacknowledged-partitions.ts).
 */
export function createVerifiedProducer(deps: VerifiedProducerDeps): VerifiedProducer {
  const metadata = createPartitionLookup(deps.admin, { now: deps.now });
  const producer = createReplaceableProducer({
    create: deps.create,
    onDiscard(cause) {
      // Leaders or partition counts may have moved too.
      metadata.forget();
      const error = cause as PartnerSendError;
      deps.logger.warn(
        error.code === 'ERR_PARTNER_SEND_INCOMPLETE'
          ? 'send incomplete, producer replaced'
          : 'send failed, producer replaced',
        { code: error.code, error: error.message },
      );
    },
  });

  return {
    connect: producer.connect,
    disconnect: producer.disconnect,
    async send(record) {
      // Outside `run`: metadata that cannot be read says nothing against the producer.
      const { topic } = record;
      const partitionMetadata = await metadata.partitionsFor(topic);
      const partitions = new Set<number>();
      const messages = record.messages.map((message): Message => {
        const partition = message.partition ?? partitionOf({ topic, partitionMetadata, message });
        partitions.add(partition);
        return { ...message, partition };
      });
      return producer.run(async (current) => {
        let answered: RecordMetadata[];
        try {
          answered = await current.send({ ...record, messages });
        } catch (err) {
          throw new SendFailedError(topic, err);
        }
        const missing = findUnacknowledgedPartitions(new Map([[topic, partitions]]), answered);
        if (missing.length > 0) throw new IncompleteSendError(missing);
        return answered;
      });
    },
  };
}
