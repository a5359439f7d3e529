/** What a replaceable producer needs of a kafkajs producer. */
export interface Connectable {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
}

export interface ReplaceableProducer<P extends Connectable> {
  /** Connects the first producer now (start-up), so a Kafka that is down fails the start. */
  connect(): Promise<void>;
  /**
   * Runs `use` with the current producer, connecting a new one when there is none. Runs go
   * one at a time. If `use` throws, its producer is discarded before the error reaches the
   * caller, so the next run gets a new one.
   */
  run<T>(use: (producer: P) => Promise<T>): Promise<T>;
  /** Disconnects whichever producer is current; later runs fail. Does not wait for a run. */
  disconnect(): Promise<void>;
}

export interface ReplaceableProducerDeps<P extends Connectable> {
  /** A new, unconnected idempotent producer: each has a new producer id. */
  readonly create: () => P;
  /** Told after a producer was discarded, with the error that cost it and a failed disconnect's. */
  readonly onDiscard?: (cause: unknown, disconnectError: unknown) => void;
}

/**
 * An idempotent kafkajs producer that is replaced after every failed send. kafkajs 2.2.4
 * rolls a failed send's partition sequence numbers back but keeps the producer id. If the
 * broker did append (the answer was lost), the next send of the same record count to that
 * partition reuses the sequence range, and the broker answers DUPLICATE (errorCode 0,
 * nothing appended); a send of another count fails OUT_OF_ORDER_SEQUENCE_NUMBER for good. A
 * new producer has a new producer id, and its sequences start again at 0.
 *
 * Runs go one at a time: a send in flight on the old producer when another fails would carry
 * a rolled-back sequence and could be answered DUPLICATE. kafkajs' idempotent producer
 * already serialises requests per broker (maxInFlightRequests 1), so little is lost. Used by
 * the partner SDK (acks, dead letters) and the outbox relay.
 */
export function createReplaceableProducer<P extends Connectable>(
  deps: ReplaceableProducerDeps<P>,
): ReplaceableProducer<P> {
  let current: P | undefined;
  let closed = false;
  let queue: Promise<unknown> = Promise.resolve();

  async function connected(): Promise<P> {
    if (closed) throw new Error('the producer is disconnected');
    if (current) return current;
    const producer = deps.create();
    try {
      await producer.connect();
      // disconnect() ran meanwhile: nobody would close this one.
      if (closed) throw new Error('the producer is disconnected');
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw err;
    }
    current = producer;
    return producer;
  }

  function run<T>(use: (producer: P) => Promise<T>): Promise<T> {
    const result = queue.then(async () => {
      const producer = await connected();
      try {
        return await use(producer);
      } catch (err) {
        if (current === producer) current = undefined;
        const disconnectError = await producer.disconnect().then(
          () => undefined,
          (e: unknown) => e,
        );
        deps.onDiscard?.(err, disconnectError);
        throw err;
      }
    });
    queue = result.catch(() => undefined);
    return result;
  }

  return {
    connect: () => run(async () => undefined),
    run,
    async disconnect() {
      closed = true;
      const producer = current;
      current = undefined;
      await producer?.disconnect();
    },
  };
}
