// The exporter's own Kafka wire code (kafka-fetch/fetch-wire.ts), checked against record batches
// (message format v2) and Fetch v11 responses written byte by byte here from the protocol spec,
// not by the code under test: offsets, timestamps, value positions, gzip, truncation, control
// and aborted batches, refusals, and the Fetch request's exact layout.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import {
  decodeFetchResponse,
  decodeRecordBatches,
  FETCH_API_KEY,
  FETCH_VERSION,
  fetchRequestBody,
  frameRequest,
  READ_COMMITTED,
  type FetchedPartition,
  type FetchedRecords,
} from '../../services/exporter/kafka-fetch/fetch-wire.ts';

/** A zig-zag varint/varlong; arithmetic, not bit ops, so values past 2^31 encode too. */
function varint(n: number): Buffer {
  let v = n >= 0 ? 2 * n : -2 * n - 1;
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Buffer.from(out);
}
const field = (b: Buffer | null) => (b === null ? varint(-1) : Buffer.concat([varint(b.length), b]));
const buf = (s: string) => Buffer.from(s);

interface Rec {
  offsetDelta: number;
  tsDelta?: number;
  key?: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, string>;
}
function record(r: Rec): Buffer {
  const headers = Object.entries(r.headers ?? {});
  const body = Buffer.concat([
    Buffer.from([0]), // attributes
    varint(r.tsDelta ?? 0),
    varint(r.offsetDelta),
    field(r.key ?? null),
    field(r.value),
    varint(headers.length),
    ...headers.map(([k, v]) => Buffer.concat([field(buf(k)), field(buf(v))])),
  ]);
  return Buffer.concat([varint(body.length), body]);
}

interface BatchSpec {
  baseOffset: number | bigint;
  records: Rec[] | Buffer; // a Buffer is the raw records region, for malformed records
  lastOffsetDelta?: number;
  attributes?: number;
  baseTimestamp?: number;
  maxTimestamp?: number;
  producerId?: number;
  count?: number;
}
const GZIP = 1;
const LOG_APPEND_TIME = 0x08;
const TRANSACTIONAL = 0x10;
const CONTROL = 0x20;

function batch(b: BatchSpec): Buffer {
  const recs = Array.isArray(b.records) ? b.records : [];
  const attributes = b.attributes ?? 0;
  let body = Array.isArray(b.records) ? Buffer.concat(recs.map(record)) : b.records;
  if ((attributes & 0x07) === GZIP) body = gzipSync(body);
  const producerId = b.producerId ?? -1;
  const h = Buffer.alloc(61);
  h.writeBigInt64BE(BigInt(b.baseOffset), 0);
  h.writeInt32BE(61 - 12 + body.length, 8); // batchLength: the bytes after this field
  h.writeInt8(2, 16); // magic; partition leader epoch (12) and crc (17) stay 0: not checked
  h.writeInt16BE(attributes, 21);
  h.writeInt32BE(b.lastOffsetDelta ?? Math.max(0, ...recs.map((r) => r.offsetDelta)), 23);
  h.writeBigInt64BE(BigInt(b.baseTimestamp ?? 0), 27);
  h.writeBigInt64BE(BigInt(b.maxTimestamp ?? b.baseTimestamp ?? 0), 35);
  h.writeBigInt64BE(BigInt(producerId), 43);
  h.writeInt16BE(producerId < 0 ? -1 : 0, 51); // producer epoch
  h.writeInt32BE(producerId < 0 ? -1 : 0, 53); // base sequence
  h.writeInt32BE(b.count ?? recs.length, 57);
  return Buffer.concat([h, body]);
}

/** A control batch of one marker record: key = version 0 + type, value = version 0 + epoch. */
function marker(baseOffset: number, producerId: number, type: 'abort' | 'commit'): Buffer {
  const key = Buffer.alloc(4);
  key.writeInt16BE(type === 'abort' ? 0 : 1, 2);
  const value = Buffer.alloc(6);
  value.writeInt32BE(5, 2); // coordinator epoch
  const records = [{ offsetDelta: 0, key, value }];
  return batch({ baseOffset, producerId, attributes: CONTROL | TRANSACTIONAL, records });
}

/** Decodes a record set placed between foreign bytes, so reads outside [start, end) would show. */
function decode(set: Buffer, aborted: { producerId: number; firstOffset: number }[] = [], hw = 1000) {
  const whole = Buffer.concat([Buffer.alloc(5, 0xee), set, Buffer.alloc(5, 0xee)]);
  return decodeRecordBatches(whole, 5, 5 + set.length, 3, hw, aborted);
}
const offsets = (r: FetchedRecords) => [...r.offsets.subarray(0, r.count)];
const values = (r: FetchedRecords) =>
  Array.from({ length: r.count }, (_, i) =>
    r.valueLens[i]! < 0
      ? null
      : r.buf.toString('utf8', r.valueStarts[i]!, r.valueStarts[i]! + r.valueLens[i]!),
  );
const long = 'x'.repeat(200); // record length and value length take two-byte varints
/** Value-only records at offset deltas 0, 1, ... */
const vals = (...vs: string[]): Rec[] => vs.map((v, i) => ({ offsetDelta: i, value: buf(v) }));
const tx = (baseOffset: number, producerId: number, v: string) =>
  batch({ baseOffset, producerId, attributes: TRANSACTIONAL, records: vals(v) });

describe('decodeRecordBatches', () => {
  it('reads offsets, timestamps and value positions of uncompressed batches; null value is -1', () => {
    const T = 1_700_000_000_000;
    const set = Buffer.concat([
      batch({
        baseOffset: 100,
        baseTimestamp: T,
        records: [
          { offsetDelta: 0, key: buf('k0'), value: buf('v0'), headers: { trace: 'abc' } },
          { offsetDelta: 1, tsDelta: 5, key: null, value: null },
          { offsetDelta: 2, tsDelta: -3, key: buf('k2'), value: buf(''), headers: { a: '', b: 'c' } },
        ],
      }),
      // Compaction left a gap: the batch's last offset (lastOffsetDelta) is past its last record.
      batch({
        baseOffset: 103,
        baseTimestamp: T + 60_000,
        lastOffsetDelta: 4,
        records: [
          { offsetDelta: 0, value: buf(long) },
          { offsetDelta: 2, tsDelta: 70_000, key: buf('k'), value: buf('last') },
        ],
      }),
    ]);
    const r = decode(set, [], 4242);
    assert.equal(r.count, 5);
    assert.equal(r.partition, 3);
    assert.deepEqual(offsets(r), [100, 101, 102, 103, 105]);
    assert.deepEqual([...r.timestamps], [T, T + 5, T - 3, T + 60_000, T + 130_000]);
    assert.deepEqual(values(r), ['v0', null, '', long, 'last']);
    assert.equal(r.valueLens[1], -1);
    assert.equal(r.nextOffset, 108); // 103 + lastOffsetDelta 4 + 1, not one past the last record
    assert.equal(r.highWatermark, 4242);
  });

  it('reads a gzip batch between two uncompressed ones, all values in one arena buffer', () => {
    const set = Buffer.concat([
      batch({ baseOffset: 0, records: vals('a', 'b') }),
      batch({
        baseOffset: 2,
        attributes: GZIP,
        records: [
          { offsetDelta: 0, key: buf('kc'), value: buf('c') },
          { offsetDelta: 1, value: null, headers: { h: 'v' } },
          { offsetDelta: 2, value: buf(long) },
        ],
      }),
      batch({ baseOffset: 5, records: vals('f') }),
    ]);
    const r = decode(set);
    assert.deepEqual(offsets(r), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(values(r), ['a', 'b', 'c', null, long, 'f']);
    assert.equal(r.nextOffset, 6);
    assert.ok(!set.includes(buf(long)), 'the gzip batch really is compressed');
  });

  it('gives every record of a LogAppendTime batch the batch maxTimestamp', () => {
    const records = [
      { offsetDelta: 0, tsDelta: 0, value: buf('a') },
      { offsetDelta: 1, tsDelta: 3, value: buf('b') },
    ];
    const set = Buffer.concat([
      batch({ baseOffset: 0, attributes: LOG_APPEND_TIME, baseTimestamp: 1000, maxTimestamp: 9999, records }),
      batch({ baseOffset: 2, baseTimestamp: 1000, maxTimestamp: 9999, records }), // CreateTime, for contrast
    ]);
    assert.deepEqual([...decode(set).timestamps], [9999, 9999, 1000, 1003]);
  });

  it('ignores a batch cut short at the end of the set; nextOffset is the end of the last whole one', () => {
    const whole = batch({ baseOffset: 10, records: vals('a', 'b') });
    const cut = batch({ baseOffset: 12, records: vals(long) });
    for (const keep of [cut.length - 1, 70, 61, 30, 11]) {
      const r = decode(Buffer.concat([whole, cut.subarray(0, keep)]));
      assert.deepEqual(values(r), ['a', 'b'], `cut to ${keep} bytes`);
      assert.equal(r.nextOffset, 12, `cut to ${keep} bytes`);
      const alone = decode(cut.subarray(0, keep));
      assert.equal(alone.count, 0);
      assert.equal(alone.nextOffset, undefined);
    }
  });

  it('leaves control batches out while they still move nextOffset', () => {
    const r = decode(Buffer.concat([tx(0, 9, 't'), marker(1, 9, 'commit')]));
    assert.deepEqual(values(r), ['t']);
    assert.equal(r.nextOffset, 2);
    const onlyMarker = decode(marker(7, 9, 'abort'));
    assert.equal(onlyMarker.count, 0);
    assert.equal(onlyMarker.nextOffset, 8);
  });

  it('drops an aborted producer from its first offset to its abort marker, and no other', () => {
    const P = 7;
    const Q = 8;
    const R = 9; // aborted a transaction whose records came before this fetch
    const set = Buffer.concat([
      tx(0, P, 'P0 committed before F'),
      marker(1, P, 'commit'),
      tx(2, P, 'P2 aborted'), // F = 2
      tx(3, Q, 'Q3'),
      marker(4, Q, 'commit'), // neither Q's commit nor R's abort may end P's aborted transaction
      marker(5, R, 'abort'),
      tx(6, P, 'P6 aborted'),
      marker(7, P, 'abort'),
      tx(8, P, 'P8 next transaction'),
      batch({ baseOffset: 9, records: vals('plain') }),
    ]);
    const aborted = [
      { producerId: R, firstOffset: 0 },
      { producerId: P, firstOffset: 2 },
    ];
    const r = decode(set, aborted);
    assert.deepEqual(values(r), ['P0 committed before F', 'Q3', 'P8 next transaction', 'plain']);
    assert.deepEqual(offsets(r), [0, 3, 8, 9]);
    assert.equal(r.nextOffset, 10);
    // Without the aborted list nothing is dropped but the markers: the filtering comes from it.
    assert.equal(decode(set).count, 6);
  });
});

describe('decodeRecordBatches refusals', () => {
  /** A message format v1 entry: offset, size, crc, magic 1, attributes, timestamp, key, value. */
  function v1Message(offset: number, value: string): Buffer {
    const v = buf(value);
    const m = Buffer.alloc(34 + v.length);
    m.writeBigInt64BE(BigInt(offset), 0);
    m.writeInt32BE(22 + v.length, 8);
    m.writeInt8(1, 16);
    m.writeInt32BE(-1, 26); // null key
    m.writeInt32BE(v.length, 30);
    v.copy(m, 34);
    return m;
  }

  it('refuses message format v1', () => {
    assert.throws(() => decode(v1Message(0, long)), /message format v1/);
  });

  // A whole v1 entry shorter than a v2 header (61 bytes) cannot be a cut v2 batch (its own size
  // field says it is complete), so it should be refused too, not read as "no whole batch":
  // the fetcher then re-fetches the same offset forever without a word.
  it('refuses a whole v1 message shorter than a v2 batch header', () => {
    assert.throws(() => decode(v1Message(0, 'short')), /message format v1/);
  });

  for (const [name, codec] of Object.entries({ snappy: 2, lz4: 3, zstd: 4 }))
    it(`refuses a ${name} batch, naming the codec`, () => {
      const set = batch({ baseOffset: 0, attributes: codec, records: vals('a') });
      assert.throws(() => decode(set), new RegExp(`compressed with ${name}`));
    });

  it('refuses a 64-bit offset beyond 2^53, and reads one just below exactly', () => {
    const at = (baseOffset: bigint) => batch({ baseOffset, records: [{ offsetDelta: 1, value: buf('a') }] });
    assert.throws(() => decode(at(2n ** 53n)), /beyond 2\^53/);
    const r = decode(at(2n ** 53n - 10n));
    assert.deepEqual(offsets(r), [2 ** 53 - 9]);
    assert.equal(r.nextOffset, 2 ** 53 - 8);
  });

  it('refuses a record whose length runs past its batch', () => {
    const rec: Rec = { offsetDelta: 0, value: buf('abc') };
    const body = record(rec).subarray(1); // the length is one byte here
    const lying = batch({ baseOffset: 0, records: Buffer.concat([varint(body.length + 4), body]), count: 1 });
    // A whole batch follows, so the bytes the record claims exist in the buffer, just not in its batch.
    const set = Buffer.concat([lying, batch({ baseOffset: 1, records: [rec] })]);
    assert.throws(() => decode(set), /runs past its batch/);
  });
});

describe('decodeFetchResponse', () => {
  const i16 = (v: number) => ((b) => (b.writeInt16BE(v), b))(Buffer.alloc(2));
  const i32 = (v: number) => ((b) => (b.writeInt32BE(v), b))(Buffer.alloc(4));
  const i64 = (v: number) => ((b) => (b.writeBigInt64BE(BigInt(v)), b))(Buffer.alloc(8));
  const str = (s: string) => Buffer.concat([i16(Buffer.byteLength(s)), buf(s)]);
  function response(topic: string, parts: Buffer[]): Buffer {
    const head = [i32(0x1234), i32(25), i16(0), i32(0)]; // correlation id, throttle, error, session
    return Buffer.concat([...head, i32(1), str(topic), i32(parts.length), ...parts]);
  }
  const part = (id: number, err: number, hw: number, aborted: number[][] | null, records: Buffer | null) =>
    Buffer.concat([
      i32(id),
      i16(err),
      i64(hw),
      i64(hw - 2), // last stable offset
      i64(3), // log start offset
      i32(aborted === null ? -1 : aborted.length),
      ...(aborted ?? []).flatMap(([producerId, firstOffset]) => [i64(producerId!), i64(firstOffset!)]),
      i32(-1), // preferred read replica
      records === null ? i32(-1) : Buffer.concat([i32(records.length), records]),
    ]);
  const records = Buffer.concat([tx(40, 5, 'gone'), batch({ baseOffset: 41, records: vals('kept') })]);
  const parts = [part(0, 6, -1, null, null), part(1, 0, 42, [[5, 40]], records)];

  it('decodes partitions with an error and null records, and with records (aborted ones left out)', () => {
    const res = decodeFetchResponse(response('erasure.requested', parts), 4, 'erasure.requested');
    assert.deepEqual([res.errorCode, res.throttleMs, res.partitions.length], [0, 25, 2]);
    // partition, error, high watermark, log start; records: count, next offset, high watermark
    const summary = (p: FetchedPartition) => {
      const r = p.records;
      return [
        p.partition,
        p.errorCode,
        p.highWatermark,
        p.logStartOffset,
        r.count,
        r.nextOffset,
        r.highWatermark,
      ];
    };
    assert.deepEqual(res.partitions.map(summary), [
      [0, 6, -1, 3, 0, undefined, -1],
      [1, 0, 42, 3, 1, 42, 42],
    ]);
    assert.deepEqual(values(res.partitions[1]!.records), ['kept']);
    assert.deepEqual(offsets(res.partitions[1]!.records), [41]);
  });

  it('refuses a response for another topic', () => {
    assert.throws(
      () => decodeFetchResponse(response('someone.else', parts), 4, 'erasure.requested'),
      /another topic/,
    );
  });
});

describe('fetchRequestBody + frameRequest', () => {
  it('writes a size-prefixed Fetch v11 request, field by field', () => {
    const body = fetchRequestBody(
      'erasure.requested',
      [
        { partition: 0, offset: 5, maxBytes: 1 << 20 },
        { partition: 3, offset: 2 ** 40 + 1, maxBytes: 2048 },
      ],
      { maxWaitMs: 500, minBytes: 1, maxBytes: 50 << 20, isolationLevel: READ_COMMITTED },
    );
    const b = frameRequest(FETCH_API_KEY, FETCH_VERSION, 77, 'exportér-1', body);
    let at = 0;
    const int = (n: 1 | 2 | 4) => ((at += n), b.readIntBE(at - n, n));
    const i64 = () => ((at += 8), Number(b.readBigInt64BE(at - 8)));
    const str = () => {
      const n = int(2);
      return ((at += n), b.toString('utf8', at - n, at));
    };
    assert.equal(int(4), b.length - 4);
    assert.deepEqual([int(2), int(2), int(4), str()], [1, 11, 77, 'exportér-1']);
    assert.deepEqual([int(4), int(4), int(4), int(4), int(1)], [-1, 500, 1, 50 << 20, 1]);
    assert.deepEqual([int(4), int(4)], [0, -1]); // session id, epoch: a full, sessionless fetch
    assert.deepEqual([int(4), str(), int(4)], [1, 'erasure.requested', 2]);
    assert.deepEqual([int(4), int(4), i64(), i64(), int(4)], [0, -1, 5, -1, 1 << 20]);
    assert.deepEqual([int(4), int(4), i64(), i64(), int(4)], [3, -1, 2 ** 40 + 1, -1, 2048]);
    assert.deepEqual([int(4), str()], [0, '']); // forgotten topics, rack id
    assert.equal(at, b.length);
  });
});
