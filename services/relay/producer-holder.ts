import type { Producer } from 'kafkajs';
import {
  createReplaceableProducer,
  type ReplaceableProducer,
} from '../../packages/partner-sdk/src/replaceable-producer.ts';
import type { Logger } from '../shared/logger.ts';
import { RelayPublishError } from './publish-batch.ts';
import type { RelayMetrics } from './relay-metrics.ts';

/** What the relay needs of a kafkajs producer. */
export type ManagedProducer = Pick<Producer, 'connect' | 'disconnect' | 'sendBatch'>;

/**
 * The relay's producer, replaced by a new one (a new producer id) after every failed or
 * incomplete send: publishBatch sends and checks the answer inside `run`
 * (replaceable-producer.ts says why kafkajs 2.2.4 needs this).
 */
export type ProducerHolder = ReplaceableProducer<ManagedProducer>;

export interface ProducerHolderDeps {
  /** A new, unconnected idempotent producer (RELAY_PRODUCER_CONFIG). */
  readonly create: () => ManagedProducer;
  readonly logger: Logger;
  readonly metrics: Pick<RelayMetrics, 'producerResets'>;
}

/** The relay's replaceable producer, counting and logging each replacement. */
export function createProducerHolder(deps: ProducerHolderDeps): ProducerHolder {
  const logger = deps.logger.child({ component: 'relay-producer' });
  return createReplaceableProducer({
    create: deps.create,
    onDiscard(cause, disconnectError) {
      deps.metrics.producerResets.inc();
      // Error names and kafkajs messages only: they name brokers and topics, never keys or values.
      logger.warn('relay producer discarded; a new one (new producer id) connects before the next send', {
        code: 'WARN_RELAY_PRODUCER_RESET',
        reason: cause instanceof RelayPublishError ? 'send answered incompletely' : 'send failed',
        kafkaError: cause instanceof RelayPublishError ? undefined : (cause as { name?: unknown })?.name,
        disconnectError: disconnectError instanceof Error ? disconnectError.message : disconnectError,
      });
    },
  });
}
