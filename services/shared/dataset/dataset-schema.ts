/**
 * The offline dataset's layout (issue 6): one Parquet row per (erasure event, identifier).
 * This module is the Parquet contract: the README's column table, the writer's schema and
 * the key-value metadata all come from DATASET_COLUMNS, so they cannot drift apart.
 * A published version is never changed; a new column or meaning is a new SCHEMA_VERSION.
 */
import { createHmac } from 'node:crypto';

/** Recorded in every file's key-value metadata (`erasure.dataset.schema_version`) and in a column. */
export const DATASET_SCHEMA_VERSION = 1;

export type ColumnKind = 'string' | 'timestamp' | 'int32' | 'int64' | 'bytes32';

export interface DatasetColumn {
  readonly name: string;
  readonly kind: ColumnKind;
  readonly nullable: boolean;
  readonly doc: string;
}

export const DATASET_COLUMNS = [
  {
    name: 'event_id',
    kind: 'string',
    nullable: false,
    doc: 'The erasure event (Avro `eventId`, a UUID); unique per event, repeated on each of its identifier rows.',
  },
  {
    name: 'request_id',
    kind: 'string',
    nullable: false,
    doc: 'The erasure request (UUID); a redelivery repeats it with a new event_id.',
  },
  {
    name: 'identifier_type',
    kind: 'string',
    nullable: false,
    doc: 'user_id, email, phone, device_id or an admin-registered type.',
  },
  {
    name: 'identifier_value',
    kind: 'string',
    nullable: false,
    doc: 'The identifier as normalised by the intake API (e.g. lower-case email): personal data, join on it and purge.',
  },
  {
    name: 'identifier_hmac',
    kind: 'bytes32',
    nullable: false,
    doc: 'HMAC-SHA256 of `type NUL value` (UTF-8) under DATASET_HMAC_KEY: 32 raw bytes (FIXED_LEN_BYTE_ARRAY(32); `hex()` in SQL for text). Joins tables that keep only keyed hashes.',
  },
  {
    name: 'reason',
    kind: 'string',
    nullable: false,
    doc: 'gdpr_art17, ccpa, account_deletion, tester_cleanup, retention_expiry (more may come: treat unknown like account_deletion).',
  },
  { name: 'priority', kind: 'string', nullable: false, doc: 'legal, normal or bulk.' },
  {
    name: 'requested_at',
    kind: 'timestamp',
    nullable: false,
    doc: 'When the intake API accepted the request. TIMESTAMP(MILLIS), adjusted to UTC.',
  },
  {
    name: 'event_time',
    kind: 'timestamp',
    nullable: false,
    doc: 'When the event was published: the Kafka record timestamp (exporter) or the outbox `sent_at` (backfill). TIMESTAMP(MILLIS), adjusted to UTC. `dt` is its UTC date.',
  },
  {
    name: 'dt',
    kind: 'string',
    nullable: false,
    doc: 'UTC date of event_time, YYYY-MM-DD; also the `dt=` directory.',
  },
  {
    name: 'redelivery_target',
    kind: 'string',
    nullable: true,
    doc: 'Set on a redelivery (the one late target it was re-published for); null on the first publication.',
  },
  {
    name: 'kafka_partition',
    kind: 'int32',
    nullable: true,
    doc: 'Partition of privacy.erasure.requested.v1 the event was read from; null for backfilled rows.',
  },
  {
    name: 'kafka_offset',
    kind: 'int64',
    nullable: true,
    doc: 'Offset in that partition; null for backfilled rows.',
  },
  {
    name: 'source',
    kind: 'string',
    nullable: false,
    doc: '`exporter` (read from Kafka) or `backfill` (rebuilt from the request store).',
  },
  {
    name: 'schema_version',
    kind: 'int32',
    nullable: false,
    doc: 'Dataset schema version (1); also in the file metadata.',
  },
] as const satisfies readonly DatasetColumn[];

export type ColumnName = (typeof DATASET_COLUMNS)[number]['name'];

/** One row, as the writer takes it. Timestamps are epoch milliseconds. */
export interface DatasetRow {
  event_id: string;
  request_id: string;
  identifier_type: string;
  identifier_value: string;
  identifier_hmac: Uint8Array;
  reason: string;
  priority: string;
  requested_at: number;
  event_time: number;
  dt: string;
  redelivery_target: string | null;
  kafka_partition: number | null;
  kafka_offset: bigint | null;
  source: 'exporter' | 'backfill';
  schema_version: number;
}

/** Rows in columnar form: what Parquet writers take, and far fewer objects than rows. */
export type ColumnBuffer = { [K in ColumnName]: DatasetRow[K][] };

export function emptyColumns(): ColumnBuffer {
  const out = {} as Record<string, unknown[]>;
  for (const c of DATASET_COLUMNS) out[c.name] = [];
  return out as ColumnBuffer;
}

export function columnLength(cols: ColumnBuffer): number {
  return cols.event_id.length;
}

/** The UTC date of an instant, YYYY-MM-DD. */
export function utcDate(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 10);
}

/** The erasure event fields a row needs (Avro ErasureRequested, or the outbox payload). */
export interface EventForDataset {
  eventId: string;
  requestId: string;
  identifiers: readonly { type: string; value: string }[];
  reason: string;
  priority: string;
  requestedAt: number;
  redelivery: { target: string } | null;
}

export interface RowOrigin {
  eventTime: number;
  partition: number | null;
  offset: bigint | null;
  source: 'exporter' | 'backfill';
}

/**
 * Appends the rows of one event (one per identifier) and returns an estimate of the bytes
 * they hold in memory, for rolling files by size and bounding the exporter's buffers.
 * The HMAC is the same construction as services/shared/subject-hash's identifierHash.
 */
export function appendEventRows(
  cols: ColumnBuffer,
  hmacKey: Buffer,
  event: EventForDataset,
  origin: RowOrigin,
): number {
  const dt = utcDate(origin.eventTime);
  let bytes = 0;
  for (const id of event.identifiers) {
    cols.event_id.push(event.eventId);
    cols.request_id.push(event.requestId);
    cols.identifier_type.push(id.type);
    cols.identifier_value.push(id.value);
    cols.identifier_hmac.push(identifierHmac(hmacKey, id.type, id.value));
    cols.reason.push(event.reason);
    cols.priority.push(event.priority);
    cols.requested_at.push(event.requestedAt);
    cols.event_time.push(origin.eventTime);
    cols.dt.push(dt);
    cols.redelivery_target.push(event.redelivery?.target ?? null);
    cols.kafka_partition.push(origin.partition);
    cols.kafka_offset.push(origin.offset);
    cols.source.push(origin.source);
    cols.schema_version.push(DATASET_SCHEMA_VERSION);
    // Strings are UTF-16 in V8 and the ids and hmac are shared per event; 2 bytes a char
    // plus ~16 bytes per array slot is a conservative estimate of what the row holds.
    bytes += 2 * (id.type.length + id.value.length) + 120 + 16 * DATASET_COLUMNS.length;
  }
  return bytes + 2 * (event.eventId.length + event.requestId.length + event.reason.length);
}

/** HMAC-SHA256 over `type NUL value`. Warehouses compute the same with the dataset key. */
export function identifierHmac(key: Buffer, type: string, value: string): Buffer {
  return createHmac('sha256', key).update(`${type}\u0000${value}`).digest();
}
