/**
 * Reads a dataset file back into columns (hyparquet): compaction merges files, backfill
 * looks up the event ids a neighbouring day already holds.
 */
import { parquetReadObjects } from 'hyparquet';
import { DATASET_COLUMNS, emptyColumns, type ColumnBuffer } from './dataset-schema.ts';

/** A copy in an ArrayBuffer of its own: hyparquet takes no SharedArrayBuffer (the exporter's). */
const asArrayBuffer = (b: Uint8Array): ArrayBuffer =>
  Uint8Array.prototype.slice.call(b).buffer as ArrayBuffer;

/** Every row of a file, as columns in the writer's types (timestamps as epoch ms). */
export async function readDatasetFile(bytes: Uint8Array): Promise<ColumnBuffer> {
  const rows = await parquetReadObjects({ file: asArrayBuffer(bytes) });
  const cols = emptyColumns() as unknown as Record<string, unknown[]>;
  for (const r of rows) {
    for (const c of DATASET_COLUMNS) {
      let v = r[c.name];
      if (v instanceof Date) v = v.getTime();
      else if (c.kind === 'int64' && typeof v === 'number') v = BigInt(v);
      else if (c.kind === 'bytes32' && typeof v === 'string') v = Buffer.from(v, 'hex');
      cols[c.name]!.push(v ?? null);
    }
  }
  return cols as unknown as ColumnBuffer;
}

/**
 * The event ids of a file (one column read), or with `eventTimeFrom` only those of rows
 * whose event_time is at or after it (epoch ms; two columns read).
 */
export async function readEventIds(bytes: Uint8Array, eventTimeFrom?: number): Promise<string[]> {
  const columns = eventTimeFrom === undefined ? ['event_id'] : ['event_id', 'event_time'];
  const rows = await parquetReadObjects({ file: asArrayBuffer(bytes), columns });
  const since = (t: unknown) => eventTimeFrom === undefined || Number(t) >= eventTimeFrom; // Date → ms
  return rows.filter((r) => since(r['event_time'])).map((r) => String(r['event_id']));
}
