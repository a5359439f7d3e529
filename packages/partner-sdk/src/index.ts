/** @erasure/partner-sdk: consume erasure events, delete, acknowledge. See ../README.md. */
export { createErasurePartner, type ErasurePartner } from './create-erasure-partner.ts';
export type {
  ErasureEvent,
  ErasureHandler,
  ErasurePartnerOptions,
  HandlerResult,
  PartnerLogger,
} from './options.ts';
export type { PartnerStats } from './process-message.ts';
export type { RetryPolicy } from './compute-backoff.ts';
export { DLQ_HEADERS } from './dead-letter.ts';
