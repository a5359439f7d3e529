import type { Producer } from 'kafkajs';
import type { Logger } from '../shared/logger.ts';
import type { RelayMetrics } from './relay-metrics.ts';

/** What the holder needs of a kafkajs producer. */
export type ManagedProducer = Pick<Producer, 'connect' | 'disconnect' | 'sendBatch'>;

/**
 * The relay's producer, replaced after every failed send. Publish through `sendBatch` as
 * through a producer.
 */
export interface ProducerHolder extends Pick<Producer, 'sendBatch'> {
  /** Connects the first producer now (start-up), so a Kafka that is down fails the start. */
  connect(): Promise<void>;
  /**
   * Discards the current producer although its send resolved: the answer did not cover
   * every partition (packages/partner-sdk/src/find-unacknowledged-partitions.ts), so its state is not trusted.
   */
  discard(): Promise<void>;
  /** Disconnects whichever producer is current; later sends fail. */
  disconnect(): Promise<void>;
}

export interface ProducerHolderDeps {
  /** A new, unconnected idempotent producer (RELAY_PRODUCER_CONFIG): each gets a new producer id. */
  readonly create: () => ManagedProducer;
  readonly logger: Logger;
  readonly metrics: Pick<RelayMetrics, 'producerResets'>;
}

/**
 * Why a failed send ends its producer: when a produce request fails (every retry timed
 * out, the connection dropped after the broker appended), kafkajs 2.2.4 rolls the
 * partition's sequence number back (producer/sendMessages.js) but keeps the producer id.
 * The relay retries those rows later, so the next send to that partition reuses the
 * sequence range: with the same record count the broker answers DUPLICATE (errorCode 0,
 * the old offset) without appending, and the relay would mark rows sent that are not in
 * Kafka; with another count every send fails OUT_OF_ORDER_SEQUENCE_NUMBER for good. A new
 * producer has a new producer id, and its sequences start again at 0.
 *
 * The replacement connects lazily, in the next sendBatch: if Kafka is still down that send
 * fails like any other (the rows stay pending) and the relay loop's backoff retries it.
 * Sends run one at a time, so no send can go out on a producer after one of its sends failed.
 */
export function createProducerHolder(deps: ProducerHolderDeps): ProducerHolder {
  const logger = deps.logger.child({ component: 'relay-producer' });
  let current: ManagedProducer | undefined;
  let connecting: Promise<ManagedProducer> | undefined;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  function connected(): Promise<ManagedProducer> {
    if (closed) return Promise.reject(new Error('the relay producer is disconnected'));
    if (current) return Promise.resolve(current);
    connecting ??= (async () => {
      const producer = deps.create();
      try {
        await producer.connect();
      } catch (err) {
        await producer.disconnect().catch(() => undefined);
        throw err;
      }
      current = producer;
      return producer;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  }

  async function reset(producer: ManagedProducer, reason: string, cause?: unknown): Promise<void> {
    if (producer !== current) return;
    current = undefined;
    deps.metrics.producerResets.inc();
    const disconnectError = await producer.disconnect().then(
      () => undefined,
      (err: unknown) => (err instanceof Error ? err.message : String(err)),
    );
    // Error names and kafkajs messages only: they name brokers and topics, never keys or values.
    logger.warn('relay producer discarded; a new one (new producer id) connects before the next send', {
      code: 'WARN_RELAY_PRODUCER_RESET',
      reason,
      kafkaError: (cause as { name?: unknown } | undefined)?.name,
      disconnectError,
    });
  }

  /** Runs `task` after every earlier send has settled (and its producer, if failed, is discarded). */
  function exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = queue.then(task);
    queue = run.catch(() => undefined);
    return run;
  }

  return {
    async connect() {
      await connected();
    },
    sendBatch(batch) {
      return exclusive(async () => {
        const producer = await connected();
        try {
          return await producer.sendBatch(batch);
        } catch (err) {
          await reset(producer, 'send failed', err);
          throw err;
        }
      });
    },
    discard() {
      return exclusive(async () => {
        if (current) await reset(current, 'send answered incompletely');
      });
    },
    async disconnect() {
      closed = true;
      await connecting?.catch(() => undefined);
      const producer = current;
      current = undefined;
      await producer?.disconnect();
    },
  };
}
