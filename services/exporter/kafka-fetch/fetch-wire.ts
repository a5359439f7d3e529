/**
 * The Kafka wire format the exporter's own fetcher needs, and nothing more: a Fetch request
 * (v11, the last version without tagged fields; brokers from 2.3 to 4.x take it), its
 * response, and the record batches (message format v2) in it. Pure functions over buffers,
 * unit-tested on bytes written by hand.
 *
 * Why not kafkajs' fetch: kafkajs turns every record into an object (key and value Buffers,
 * headers, offsets and timestamps as strings through a Long class), about a quarter of the
 * exporter's CPU, and its garbage more. Here a partition's records become four typed arrays:
 * offset, timestamp, and where the value's bytes are in the response buffer, which the Avro
 * reader (requested-spans.ts) then reads in place. kafkajs still runs the consumer group
 * (membership, heartbeats, assignment, commits).
 *
 * Offsets and timestamps are JavaScript numbers: exact below 2^53 (a partition writing a
 * million records a second reaches that in 285 years); a larger one is refused, never rounded.
 */
import { gunzipSync } from 'node:zlib';

export const FETCH_API_KEY = 1;
export const FETCH_VERSION = 11;
/** Kafka's READ_COMMITTED: records of aborted transactions are left out (kafkajs' default too). */
export const READ_COMMITTED = 1;

/** Logged under ERR_EXPORTER_FETCH; the fetcher reconnects and reads the metadata again. */
export class KafkaWireError extends Error {}

/** A growable buffer for requests (they are small: one topic, its partitions). */
export class RequestWriter {
  private buf = Buffer.allocUnsafe(256);
  private pos = 0;
  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  int8(v: number): this {
    this.room(1);
    this.buf.writeInt8(v, this.pos);
    this.pos += 1;
    return this;
  }
  int16(v: number): this {
    this.room(2);
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }
  int32(v: number): this {
    this.room(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }
  int64(v: number): this {
    this.room(8);
    this.buf.writeBigInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }
  /** A string: int16 length, UTF-8 bytes. */
  string(s: string): this {
    const n = Buffer.byteLength(s);
    this.int16(n);
    this.room(n);
    this.buf.write(s, this.pos);
    this.pos += n;
    return this;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** A whole request: size, header v1 (api key, version, correlation id, client id), body. */
export function frameRequest(
  apiKey: number,
  apiVersion: number,
  correlationId: number,
  clientId: string,
  body: Buffer,
): Buffer {
  const head = new RequestWriter()
    .int32(0)
    .int16(apiKey)
    .int16(apiVersion)
    .int32(correlationId)
    .string(clientId)
    .bytes();
  const out = Buffer.concat([head, body]);
  out.writeInt32BE(out.length - 4, 0);
  return out;
}

export interface FetchPartitionRequest {
  partition: number;
  offset: number;
  maxBytes: number;
}

/** The body of a sessionless Fetch v11 for one topic (session id 0, epoch -1: full fetch). */
export function fetchRequestBody(
  topic: string,
  partitions: readonly FetchPartitionRequest[],
  opts: { maxWaitMs: number; minBytes: number; maxBytes: number; isolationLevel: number },
): Buffer {
  const w = new RequestWriter()
    .int32(-1) // replica id: a consumer
    .int32(opts.maxWaitMs)
    .int32(opts.minBytes)
    .int32(opts.maxBytes)
    .int8(opts.isolationLevel)
    .int32(0) // session id
    .int32(-1) // session epoch
    .int32(1) // topics
    .string(topic)
    .int32(partitions.length);
  for (const p of partitions)
    w.int32(p.partition)
      .int32(-1) // current leader epoch: not checked
      .int64(p.offset)
      .int64(-1) // log start offset: only followers send it
      .int32(p.maxBytes);
  return w
    .int32(0) // forgotten topics
    .string('') // rack id
    .bytes();
}

/**
 * One partition's records from a fetch, in offset order: record i is at offsets[i], was
 * written at timestamps[i] (epoch ms), and its value is buf[valueStarts[i], +valueLens[i])
 * (valueLens[i] is -1 for a null value). Records of aborted transactions and control records
 * are not in it.
 */
export interface FetchedRecords {
  partition: number;
  buf: Buffer;
  count: number;
  offsets: Float64Array;
  timestamps: Float64Array;
  valueStarts: Int32Array;
  valueLens: Int32Array;
  highWatermark: number;
  /**
   * Where the next fetch starts: one past the last offset of the last whole batch read,
   * records left out included; undefined when the response held no whole batch.
   */
  nextOffset: number | undefined;
}

export interface FetchedPartition {
  partition: number;
  /** Kafka's error code for the partition, 0 for none. */
  errorCode: number;
  highWatermark: number;
  logStartOffset: number;
  records: FetchedRecords;
}

export interface FetchResponse {
  /** Kafka's top-level error code, 0 for none. */
  errorCode: number;
  throttleMs: number;
  partitions: FetchedPartition[];
}

/** A cursor over a response; every read is bounds-checked by Buffer itself. */
class Reader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
  ) {}
  int16(): number {
    return this.buf.readInt16BE((this.pos += 2) - 2);
  }
  int32(): number {
    return this.buf.readInt32BE((this.pos += 4) - 4);
  }
  int64(): number {
    return int64At(this.buf, (this.pos += 8) - 8);
  }
  string(): string {
    const n = this.int16();
    if (n < 0) return '';
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}

/** A big-endian int64 as a number; throws if it is not exact. */
function int64At(buf: Buffer, at: number): number {
  const hi = buf.readInt32BE(at);
  const v = hi * 4294967296 + buf.readUInt32BE(at + 4);
  if (hi >= 2097152 || hi < -2097152) throw new KafkaWireError('a 64-bit offset or time beyond 2^53');
  return v;
}

/**
 * Decodes a Fetch v11 response body (after the correlation id) for one topic. `expectTopic`
 * guards against a response that is not ours.
 */
export function decodeFetchResponse(buf: Buffer, start: number, expectTopic: string): FetchResponse {
  const r = new Reader(buf, start);
  const throttleMs = r.int32();
  const errorCode = r.int16();
  r.int32(); // session id
  const partitions: FetchedPartition[] = [];
  const topics = r.int32();
  for (let t = 0; t < topics; t++) {
    const topic = r.string();
    const n = r.int32();
    for (let i = 0; i < n; i++) {
      const partition = r.int32();
      const pErr = r.int16();
      const highWatermark = r.int64();
      r.int64(); // last stable offset
      const logStartOffset = r.int64();
      const abortedCount = r.int32();
      const aborted: { producerId: number; firstOffset: number }[] = [];
      for (let a = 0; a < abortedCount; a++) aborted.push({ producerId: r.int64(), firstOffset: r.int64() });
      r.int32(); // preferred read replica
      const size = r.int32();
      const recStart = r.pos;
      const recEnd = size < 0 ? recStart : recStart + size;
      if (recEnd > buf.length) throw new KafkaWireError('records run past the response');
      r.pos = recEnd;
      if (topic !== expectTopic) throw new KafkaWireError('a fetch response for another topic');
      partitions.push({
        partition,
        errorCode: pErr,
        highWatermark,
        logStartOffset,
        records: decodeRecordBatches(buf, recStart, recEnd, partition, highWatermark, aborted),
      });
    }
  }
  return { errorCode, throttleMs, partitions };
}

/** A record batch's header fields the decoder uses. */
interface BatchHead {
  at: number;
  end: number;
  baseOffset: number;
  lastOffset: number;
  attributes: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  count: number;
}

const BATCH_HEADER = 61;
const COMPRESSION_MASK = 0x07;
const LOG_APPEND_TIME = 0x08;
const TRANSACTIONAL = 0x10;
const CONTROL = 0x20;
const CODECS = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

/** The whole batches in buf[start, end); a batch cut short by the fetch size ends the list. */
function batchHeads(buf: Buffer, start: number, end: number): BatchHead[] {
  const heads: BatchHead[] = [];
  let at = start;
  // The format version first: an old-format message can be shorter than a v2 header, and
  // taken for a batch cut short it would be asked for again forever.
  while (at + 17 <= end) {
    const magic = buf.readInt8(at + 16);
    if (magic !== 2)
      throw new KafkaWireError(
        `message format v${magic}: the exporter reads format v2 (Kafka 0.11 and later)`,
      );
    if (at + BATCH_HEADER > end) break;
    const length = buf.readInt32BE(at + 8);
    const batchEnd = at + 12 + length;
    if (batchEnd > end) break;
    const baseOffset = int64At(buf, at);
    heads.push({
      at,
      end: batchEnd,
      baseOffset,
      lastOffset: baseOffset + buf.readInt32BE(at + 23),
      attributes: buf.readInt16BE(at + 21),
      baseTimestamp: int64At(buf, at + 27),
      maxTimestamp: int64At(buf, at + 35),
      producerId: int64At(buf, at + 43),
      count: buf.readInt32BE(at + 57),
    });
    at = batchEnd;
  }
  return heads;
}

/** A control batch's type: 0 abort, 1 commit (the key of its one record). */
function controlType(buf: Buffer, h: BatchHead): number {
  cur = buf;
  pos = h.at + BATCH_HEADER;
  varint(); // length
  pos += 1; // attributes
  varlong(); // timestamp delta
  varint(); // offset delta
  const keyLen = varint();
  if (keyLen < 4) return -1;
  return buf.readInt16BE(pos + 2);
}

// The record cursor, at module level (no closure per record on the exporter's hottest path).
let cur: Buffer = Buffer.alloc(0);
let pos = 0;

/** A zig-zag varint of up to 32 bits. */
function varint(): number {
  let v = 0;
  let shift = 0;
  for (;;) {
    const b = cur[pos++]!;
    v |= (b & 0x7f) << shift;
    if (b < 0x80) return (v >>> 1) ^ -(v & 1);
    shift += 7;
    if (shift > 28) {
      const last = cur[pos++]!;
      v |= (last & 0x0f) << 28;
      return (v >>> 1) ^ -(v & 1);
    }
  }
}

/** A zig-zag varlong, as a number (exact to 2^53). */
function varlong(): number {
  let n = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    const b = cur[pos++]!;
    n += (b & 0x7f) * mul;
    if (b < 0x80) return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
    mul *= 128;
  }
  throw new KafkaWireError('a varlong longer than 10 bytes');
}

const EMPTY = Buffer.alloc(0);

/**
 * The records of one partition's record set (message format v2). Leaves out control batches
 * and, for READ_COMMITTED, batches of transactions the response lists as aborted (Kafka's
 * consumer rule: a producer is aborted from its first aborted offset until its abort marker).
 * Decompresses gzip batches; other codecs are refused (the relay does not compress).
 */
export function decodeRecordBatches(
  buf: Buffer,
  start: number,
  end: number,
  partition: number,
  highWatermark: number,
  aborted: readonly { producerId: number; firstOffset: number }[] = [],
): FetchedRecords {
  const heads = batchHeads(buf, start, end);
  const nextOffset = heads.length > 0 ? heads[heads.length - 1]!.lastOffset + 1 : undefined;
  const pending = [...aborted].sort((a, b) => a.firstOffset - b.firstOffset);
  const abortedProducers = new Set<number>();
  // The record regions kept: [buffer, first record byte, end, batch head].
  const regions: [Buffer, number, number, BatchHead][] = [];
  let total = 0;
  let compressed = false;
  for (const h of heads) {
    while (pending.length > 0 && pending[0]!.firstOffset <= h.lastOffset)
      abortedProducers.add(pending.shift()!.producerId);
    if (h.attributes & CONTROL) {
      if (controlType(buf, h) === 0) abortedProducers.delete(h.producerId);
      continue;
    }
    if (h.attributes & TRANSACTIONAL && abortedProducers.has(h.producerId)) continue;
    const codec = h.attributes & COMPRESSION_MASK;
    if (codec === 0) regions.push([buf, h.at + BATCH_HEADER, h.end, h]);
    else if (codec === 1) {
      const inflated = gunzipSync(buf.subarray(h.at + BATCH_HEADER, h.end));
      regions.push([inflated, 0, inflated.length, h]);
      compressed = true;
    } else
      throw new KafkaWireError(
        `record batch compressed with ${CODECS[codec] ?? `codec ${codec}`}: the exporter reads uncompressed and gzip batches`,
      );
    total += h.count;
  }
  // Uncompressed batches are read where they are; with a decompressed one, every kept
  // region is copied into one buffer so that the records share one.
  let arena = regions.length > 0 ? buf : EMPTY;
  if (compressed) {
    arena = Buffer.concat(regions.map(([b, s, e]) => b.subarray(s, e)));
    let at = 0;
    for (const r of regions) {
      const len = r[2] - r[1];
      r[0] = arena;
      r[1] = at;
      r[2] = at + len;
      at += len;
    }
  }
  const offsets = new Float64Array(total);
  const timestamps = new Float64Array(total);
  const valueStarts = new Int32Array(total);
  const valueLens = new Int32Array(total);
  let n = 0;
  cur = arena;
  for (const [, s, e, h] of regions) {
    pos = s;
    const logAppend = (h.attributes & LOG_APPEND_TIME) !== 0;
    for (let i = 0; i < h.count; i++) {
      const length = varint();
      const recordEnd = pos + length;
      if (length < 0 || recordEnd > e) throw new KafkaWireError('a record runs past its batch');
      pos += 1; // attributes
      const tsDelta = varlong();
      const offsetDelta = varint();
      const keyLen = varint();
      if (keyLen > 0) pos += keyLen;
      const valueLen = varint();
      offsets[n] = h.baseOffset + offsetDelta;
      timestamps[n] = logAppend ? h.maxTimestamp : h.baseTimestamp + tsDelta;
      valueStarts[n] = pos;
      valueLens[n] = valueLen;
      if (pos + Math.max(0, valueLen) > recordEnd)
        throw new KafkaWireError('a record value runs past its record');
      n++;
      pos = recordEnd; // headers are not read
    }
  }
  cur = EMPTY;
  return {
    partition,
    buf: arena,
    count: n,
    offsets,
    timestamps,
    valueStarts,
    valueLens,
    highWatermark,
    nextOffset,
  };
}
