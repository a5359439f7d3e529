/**
 * The exporter's Parquet builder (services/exporter/columnar-file.ts): what it writes reads
 * back (hyparquet, a reader independent of the writer code) as exactly the rows the
 * dataset contract defines (dataset-schema.ts appendEventRows), across row groups, nulls,
 * non-ASCII values and repeated ids. pyarrow reads the exporter's files in the integration
 * tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parquetMetadata } from 'hyparquet';
import { ColumnarFileBuilder, fileDigests, inlineEncoder } from '../../services/exporter/columnar-file.ts';
import { workerEncoder } from '../../services/exporter/group-encoder.ts';
import {
  appendEventRows,
  DATASET_COLUMNS,
  emptyColumns,
  utcDate,
  type EventForDataset,
} from '../../services/shared/dataset/dataset-schema.ts';
import { readDatasetFile } from '../../services/shared/dataset/read-dataset-file.ts';

const KEY = Buffer.from('unit-dataset-hmac-key-0123456789abcdef');

const eventArb = fc.record({
  eventId: fc.uuid(),
  requestId: fc.uuid(),
  identifiers: fc.array(
    fc.record({
      type: fc.constantFrom('user_id', 'email', 'phone', 'device_id', 'tÿpe'),
      value: fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
    }),
    { minLength: 1, maxLength: 4 },
  ),
  reason: fc.constantFrom('gdpr_art17', 'ccpa', 'account_deletion'),
  priority: fc.constantFrom('legal', 'normal', 'bulk'),
  requestedAt: fc.integer({ min: 0, max: 4_102_444_800_000 }),
  redelivery: fc.option(fc.record({ target: fc.constantFrom('orders', 'profiles', 'bi') }), { nil: null }),
}) satisfies fc.Arbitrary<EventForDataset>;

async function roundTrip(
  events: EventForDataset[],
  rowGroupRows: number,
  partition: number | null,
  encoder = inlineEncoder(KEY),
) {
  const b = new ColumnarFileBuilder(encoder, rowGroupRows, { 'erasure.dataset.source': 'exporter' });
  const want = emptyColumns();
  let offset = 1000n;
  for (const [i, e] of events.entries()) {
    const eventTime = 1_768_435_200_000 + i * 3_600_000; // crosses days
    const pos = {
      eventTime,
      dt: utcDate(eventTime),
      partition,
      offset: partition === null ? null : offset,
      source: partition === null ? ('backfill' as const) : ('exporter' as const),
    };
    b.appendEvent(e, pos);
    appendEventRows(want, KEY, e, pos);
    offset += 3n;
  }
  assert.equal(b.rows, want.event_id.length);
  const { bytes, ...digests } = await b.finish();
  return { bytes, digests, want, got: await readDatasetFile(bytes) };
}

describe('exporter columnar Parquet builder', () => {
  it('writes exactly the contract rows, whatever the events and row group size', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(eventArb, { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 50 }),
        fc.option(fc.nat(11), { nil: null }),
        async (events, rowGroupRows, partition) => {
          const { got, want } = await roundTrip(events, rowGroupRows, partition);
          for (const c of DATASET_COLUMNS)
            assert.deepEqual(
              (got[c.name] as unknown[]).map((v) => (v instanceof Uint8Array ? Buffer.from(v) : v)),
              (want[c.name] as unknown[]).map((v) => (v instanceof Uint8Array ? Buffer.from(v) : v)),
              c.name,
            );
        },
      ),
      { numRuns: 60 },
    );
  });

  it('records the schema version, row groups and min/max of event_time in the footer', async () => {
    const events = Array.from({ length: 100 }, (_, i) => ({
      eventId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      requestId: `10000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      identifiers: [{ type: 'user_id', value: String(i) }],
      reason: 'gdpr_art17',
      priority: 'normal',
      requestedAt: 1_768_435_200_000 + i,
      redelivery: null,
    }));
    const { bytes } = await roundTrip(events, 30, 3);
    const md = parquetMetadata(
      Uint8Array.prototype.slice.call(bytes).buffer as ArrayBuffer, // the builder's is shared
    );
    assert.equal(md.num_rows, 100n);
    assert.equal(md.row_groups.length, 4);
    const kv = Object.fromEntries((md.key_value_metadata ?? []).map((k) => [k.key, k.value]));
    assert.equal(kv['erasure.dataset.schema_version'], '1');
    assert.equal(kv['erasure.dataset.source'], 'exporter');
    const et = md.row_groups[0]!.columns.find((c) => c.meta_data?.path_in_schema[0] === 'event_time')!;
    assert.equal(et.meta_data!.codec, 'SNAPPY');
    assert.ok(et.meta_data!.statistics?.min_value !== undefined);
    const h = md.row_groups[0]!.columns.find((c) => c.meta_data?.path_in_schema[0] === 'identifier_hmac')!;
    assert.equal(h.meta_data!.codec, 'UNCOMPRESSED');
  });

  it('encodes the same bytes on the encoder thread as in-line', async () => {
    const events = fc.sample(eventArb, { numRuns: 300, seed: 42 });
    let fallback: string | undefined;
    const worker = workerEncoder(KEY, (reason) => (fallback = reason));
    try {
      const inThread = await roundTrip(events, 64, 5, worker);
      const inline = await roundTrip(events, 64, 5);
      assert.deepEqual(Buffer.from(inThread.bytes), Buffer.from(inline.bytes));
      // The thread's digests, fed group by group, are the whole file's.
      assert.deepEqual(inThread.digests, fileDigests(inThread.bytes));
      assert.deepEqual(inline.digests, inThread.digests);
      assert.equal(inThread.got.event_id.length, inline.want.event_id.length);
      assert.equal(fallback, undefined, 'the encoder thread did the work');
    } finally {
      await worker.close();
    }
  });

  it('refuses appends after finish', async () => {
    const b = new ColumnarFileBuilder(inlineEncoder(KEY), 10);
    await b.finish();
    assert.throws(() =>
      b.appendEvent(
        {
          eventId: 'e',
          requestId: 'r',
          identifiers: [{ type: 'user_id', value: '1' }],
          reason: 'ccpa',
          priority: 'normal',
          requestedAt: 0,
          redelivery: null,
        },
        { eventTime: 0, dt: '1970-01-01', partition: 0, offset: 0n, source: 'exporter' },
      ),
    );
  });
});
