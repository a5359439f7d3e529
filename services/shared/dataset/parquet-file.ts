/**
 * Writes the dataset's Parquet files with hyparquet-writer (chosen on evidence: see the
 * README's "Parquet writer comparison" and scripts/bench/bench-parquet-writers.ts).
 *
 * A file is built row group by row group: rows wait in a small columnar buffer, and each
 * full row group is encoded (dictionary + snappy) into the file's byte buffer at once, so a
 * file being filled holds compressed bytes, not JS strings. That keeps the exporter's memory
 * proportional to open files × one row group, whatever the file size.
 */
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import type { SchemaElement } from 'hyparquet';
import {
  appendEventRows,
  columnLength,
  DATASET_COLUMNS,
  DATASET_SCHEMA_VERSION,
  emptyColumns,
  type ColumnBuffer,
  type DatasetColumn,
  type EventForDataset,
  type RowOrigin,
} from './dataset-schema.ts';

/** Rows per row group: large enough to scan efficiently (~4–8 MiB compressed), small enough to buffer. */
export const DEFAULT_ROW_GROUP_ROWS = 131_072;

function schemaElement(c: DatasetColumn): SchemaElement {
  const repetition_type = c.nullable ? 'OPTIONAL' : 'REQUIRED';
  switch (c.kind) {
    case 'string':
      return {
        name: c.name,
        type: 'BYTE_ARRAY',
        converted_type: 'UTF8',
        logical_type: { type: 'STRING' },
        repetition_type,
      };
    case 'timestamp':
      // Parquet TIMESTAMP(isAdjustedToUTC=true, MILLIS): pyarrow reads timestamp[ms, tz=UTC].
      return {
        name: c.name,
        type: 'INT64',
        logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MILLIS' },
        repetition_type,
      };
    case 'int32':
      return { name: c.name, type: 'INT32', repetition_type };
    case 'int64':
      return { name: c.name, type: 'INT64', repetition_type };
    case 'bytes32':
      return { name: c.name, type: 'FIXED_LEN_BYTE_ARRAY', type_length: 32, repetition_type };
  }
}

const UNIQUE_COLUMNS = new Set<string>(['event_id', 'request_id', 'identifier_value', 'identifier_hmac']);

export const PARQUET_SCHEMA: SchemaElement[] = [
  { name: 'schema', num_children: DATASET_COLUMNS.length },
  ...DATASET_COLUMNS.map(schemaElement),
];

/** Key-value metadata in every file: readers check the version before trusting the layout. */
export function fileMetadata(extra: Record<string, string> = {}): { key: string; value: string }[] {
  return [
    { key: 'erasure.dataset.schema_version', value: String(DATASET_SCHEMA_VERSION) },
    { key: 'erasure.dataset.columns', value: DATASET_COLUMNS.map((c) => c.name).join(',') },
    ...Object.entries(extra).map(([key, value]) => ({ key, value })),
  ];
}

/** One Parquet file being filled. `append` rows, then `finish` for the file's bytes. */
export class ParquetFileBuilder {
  private readonly bytes = new ByteWriter(1 << 20);
  private readonly writer: ParquetWriter;
  private pending: ColumnBuffer = emptyColumns();
  private pendingBytes = 0;
  private rowCount = 0;

  constructor(
    private readonly rowGroupRows = DEFAULT_ROW_GROUP_ROWS,
    metadata: Record<string, string> = {},
  ) {
    this.writer = new ParquetWriter({
      writer: this.bytes,
      schema: PARQUET_SCHEMA,
      codec: 'SNAPPY',
      kvMetadata: fileMetadata(metadata),
      createdBy: `erasure-pipeline dataset v${DATASET_SCHEMA_VERSION} (hyparquet-writer)`,
    });
  }

  /** Rows appended so far (encoded or pending). */
  get rows(): number {
    return this.rowCount;
  }

  /** Bytes encoded so far (compressed row groups), not counting pending rows. */
  get encodedBytes(): number {
    return this.bytes.offset;
  }

  /** Estimated memory held: encoded bytes plus the rows waiting for their row group. */
  get memoryBytes(): number {
    return this.bytes.offset + this.pendingBytes;
  }

  /** Appends one event's rows (one per identifier); encodes a row group when one fills. */
  appendEvent(hmacKey: Buffer, event: EventForDataset, origin: RowOrigin): void {
    const before = columnLength(this.pending);
    this.pendingBytes += appendEventRows(this.pending, hmacKey, event, origin);
    this.rowCount += columnLength(this.pending) - before;
    if (columnLength(this.pending) >= this.rowGroupRows) this.encodePending();
  }

  /** Takes rows `from`..`to` (exclusive) of `cols`; encodes a row group whenever one fills. */
  append(cols: ColumnBuffer, from = 0, to = columnLength(cols)): void {
    for (let i = from; i < to;) {
      const room = this.rowGroupRows - columnLength(this.pending);
      const n = Math.min(room, to - i);
      for (const c of DATASET_COLUMNS) {
        const src = cols[c.name] as unknown[];
        const dst = this.pending[c.name] as unknown[];
        for (let k = i; k < i + n; k++) dst.push(src[k]);
      }
      i += n;
      this.rowCount += n;
      if (columnLength(this.pending) >= this.rowGroupRows) this.encodePending();
    }
  }

  private encodePending(): void {
    if (columnLength(this.pending) === 0) return;
    const cols = this.pending;
    this.pending = emptyColumns();
    this.pendingBytes = 0;
    void this.writer.write({
      columnData: DATASET_COLUMNS.map((c) => ({
        name: c.name,
        data: cols[c.name] as unknown[],
        // Unique per row: a dictionary cannot help and min/max statistics of random ids or
        // hashes prune nothing, so skip both (a third of the encoding time).
        ...(UNIQUE_COLUMNS.has(c.name) ? { encoding: 'PLAIN' as const, statistics: false } : {}),
      })),
      rowGroupSize: this.rowGroupRows,
    });
  }

  /** Encodes what is pending and the footer; the builder is done after this. */
  finish(): Uint8Array {
    this.encodePending();
    this.writer.finish();
    return this.bytes.getBytes();
  }
}

/** A whole file in one call (compaction, backfill, tests). */
export function encodeParquet(
  cols: ColumnBuffer,
  rowGroupRows = DEFAULT_ROW_GROUP_ROWS,
  metadata: Record<string, string> = {},
): Uint8Array {
  const b = new ParquetFileBuilder(rowGroupRows, metadata);
  b.append(cols);
  return b.finish();
}
