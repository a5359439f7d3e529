/**
 * The exporter's fast path for privacy.erasure.requested.v1: reads an event's Avro bytes in
 * place and records where each field is (byte spans and numbers), without building a JS
 * object or decoding a string. The columnar builder then copies the spans' bytes straight
 * into its column buffers (`appendSpans`). Avro decoding through avsc made a third of the
 * exporter's loop (objects, UTF-8 decoding, and the garbage collection that follows).
 *
 * Only for the schema this file was written against: the decoder uses it when the writer
 * schema of a record has the same Parsing Canonical Form fingerprint as
 * schemas/avro/privacy.erasure.requested.v1.avsc (the same binary layout), and any other
 * schema goes through avsc. `parseRequested` checks every length against the buffer and that
 * the record ends exactly at the buffer's end; on any doubt it returns false and the caller
 * falls back to avsc, which reports the error properly. That includes strings of the
 * dataset's columns that are not valid UTF-8: copied as bytes they would make Parquet
 * STRING values readers refuse (and an HMAC over bytes no reader sees), while avsc decodes
 * them to U+FFFD; through avsc both paths write the same file.
 */
import { isUtf8 } from 'node:buffer';
import { readFileSync } from 'node:fs';
import avro from 'avsc';

const SCHEMA_FILE = new URL('../../schemas/avro/privacy.erasure.requested.v1.avsc', import.meta.url);

/** Parsing Canonical Form fingerprint (SHA-256, hex) of the layout `parseRequested` reads. */
export const REQUESTED_FINGERPRINT = avro.Type.forSchema(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')))
  .fingerprint('sha256')
  .toString('hex');

/** Where one event's fields are in its buffer. Reused from event to event (no allocation). */
export class RequestedSpans {
  buf: Buffer = Buffer.alloc(0);
  eventIdStart = 0;
  eventIdLen = 0;
  requestIdStart = 0;
  requestIdLen = 0;
  /** Identifiers: type start, type length, value start, value length; 4 entries each. */
  ids = new Int32Array(64);
  idCount = 0;
  reasonStart = 0;
  reasonLen = 0;
  priorityStart = 0;
  priorityLen = 0;
  requestedAt = 0;
  /** -1 when redelivery is null. */
  redeliveryTargetStart = -1;
  redeliveryTargetLen = 0;
}

// The parser's cursor, at module level: closures made per record would cost an allocation
// each (and tsx's name helper) on the exporter's hottest path. Single-threaded, synchronous.
let src: Buffer = Buffer.alloc(0);
let p = 0;
let end = 0;

/** Avro long: zig-zag varint. Arithmetic, not bit operations, so values up to 2^53 stay exact. */
function long(): number {
  let n = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (p >= end) return NaN;
    const b = src[p++]!;
    n += (b & 0x7f) * mul;
    if (b < 0x80) return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
    mul *= 128;
  }
  return NaN;
}

/**
 * b[start, start+n) is valid UTF-8. Nearly every span is ASCII (ids, types, reasons, most
 * values): OR-ing the bytes four at a time settles those in a few ns without a native call
 * and the subarray it needs; a span with a byte ≥ 0x80 goes to isUtf8.
 */
function utf8(b: Buffer, start: number, n: number): boolean {
  const e = start + n;
  let acc = 0;
  let i = start;
  for (; i + 4 <= e; i += 4) acc |= b[i]! | b[i + 1]! | b[i + 2]! | b[i + 3]!;
  for (; i < e; i++) acc |= b[i]!;
  return acc < 0x80 || isUtf8(b.subarray(start, e));
}

/** The dataset's string columns of a parsed record are valid UTF-8 (targets are not a column). */
function stringsValid(out: RequestedSpans): boolean {
  const b = out.buf;
  const ids = out.ids;
  for (let i = 0; i < 4 * out.idCount; i += 4)
    if (!utf8(b, ids[i]!, ids[i + 1]!) || !utf8(b, ids[i + 2]!, ids[i + 3]!)) return false;
  return (
    utf8(b, out.eventIdStart, out.eventIdLen) &&
    utf8(b, out.requestIdStart, out.requestIdLen) &&
    utf8(b, out.reasonStart, out.reasonLen) &&
    utf8(b, out.priorityStart, out.priorityLen) &&
    (out.redeliveryTargetStart < 0 || utf8(b, out.redeliveryTargetStart, out.redeliveryTargetLen))
  );
}

/** A string's length; its bytes start at p and are skipped. -1 if out of bounds. */
function str(): number {
  const n = long();
  if (!(n >= 0) || p + n > end) return -1;
  p += n;
  return n;
}

/**
 * Reads the record at buf[start, stop) into `out` (stop: the buffer's end unless given).
 * False if the bytes are not a well-formed record of this layout (the caller then decodes
 * with avsc).
 */
export function parseRequested(buf: Buffer, start: number, out: RequestedSpans, stop = buf.length): boolean {
  src = buf;
  p = start;
  end = stop;
  return parse(out);
}

function parse(out: RequestedSpans): boolean {
  out.buf = src;
  out.eventIdLen = str();
  out.eventIdStart = p - out.eventIdLen;
  out.requestIdLen = str();
  out.requestIdStart = p - out.requestIdLen;
  if (out.eventIdLen < 0 || out.requestIdLen < 0) return false;
  // identifiers: blocks of items; a negative count is followed by the block's byte size.
  let count = 0;
  for (;;) {
    let block = long();
    if (Number.isNaN(block)) return false;
    if (block === 0) break;
    if (block < 0) {
      block = -block;
      if (!(long() >= 0)) return false;
    }
    if ((count + block) * 4 > out.ids.length) {
      if (count + block > 100_000) return false;
      const grown = new Int32Array(Math.max(out.ids.length * 2, (count + block) * 4));
      grown.set(out.ids);
      out.ids = grown;
    }
    for (let i = 0; i < block; i++, count++) {
      const t = str();
      if (t < 0) return false;
      out.ids[4 * count] = p - t;
      out.ids[4 * count + 1] = t;
      const v = str();
      if (v < 0) return false;
      out.ids[4 * count + 2] = p - v;
      out.ids[4 * count + 3] = v;
    }
  }
  out.idCount = count;
  out.reasonLen = str();
  out.reasonStart = p - out.reasonLen;
  if (out.reasonLen < 0) return false;
  out.requestedAt = long();
  if (!Number.isSafeInteger(out.requestedAt)) return false;
  // targets: array of strings, skipped (not a dataset column).
  for (;;) {
    const block = long();
    if (Number.isNaN(block)) return false;
    if (block === 0) break;
    if (block < 0) {
      const size = long();
      if (!(size >= 0) || p + size > end) return false;
      p += size;
      continue;
    }
    for (let i = 0; i < block; i++) if (str() < 0) return false;
  }
  out.priorityLen = str();
  out.priorityStart = p - out.priorityLen;
  if (out.priorityLen < 0) return false;
  const notBefore = long(); // union index: 0 null, 1 long
  if (notBefore === 1) {
    if (Number.isNaN(long())) return false;
  } else if (notBefore !== 0) return false;
  if (Number.isNaN(long())) return false; // deadline
  const redelivery = long();
  if (redelivery === 1) {
    if (Number.isNaN(long())) return false; // attempt
    out.redeliveryTargetLen = str();
    out.redeliveryTargetStart = p - out.redeliveryTargetLen;
    if (out.redeliveryTargetLen < 0) return false;
  } else if (redelivery === 0) out.redeliveryTargetStart = -1;
  else return false;
  return p === end && stringsValid(out);
}
