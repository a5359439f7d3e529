/**
 * The exporter's fast path (services/exporter/requested-spans.ts): an event appended from its
 * Avro bytes makes the same Parquet file, byte for byte, as the same event decoded by avsc
 * and appended as an object; bytes that are not a whole record of the layout are refused
 * (false, never a throw), so the loop falls back to avsc.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import avro from 'avsc';
import fc from 'fast-check';
import { ColumnarFileBuilder, inlineEncoder } from '../../services/exporter/columnar-file.ts';
import {
  parseRequested,
  REQUESTED_FINGERPRINT,
  RequestedSpans,
} from '../../services/exporter/requested-spans.ts';
import { utcDate } from '../../services/shared/dataset/dataset-schema.ts';
import type { RequestedEvent } from '../../services/shared/event-codec.ts';

const schema = JSON.parse(
  readFileSync(new URL('../../schemas/avro/privacy.erasure.requested.v1.avsc', import.meta.url), 'utf8'),
) as { fields: { name: string }[] };
const type = avro.Type.forSchema(schema as avro.Schema);
const KEY = Buffer.from('unit-dataset-hmac-key-0123456789abcdef');

const text = (max: number) => fc.string({ unit: 'binary', minLength: 0, maxLength: max });
const eventArb: fc.Arbitrary<RequestedEvent> = fc.record({
  eventId: fc.uuid(),
  requestId: fc.uuid(),
  identifiers: fc.array(
    fc.record({
      type: fc.oneof(fc.constantFrom('user_id', 'email', 'phone', 'tÿpe'), text(12)),
      value: text(120), // across the 64-byte hand-copy limit
    }),
    { minLength: 0, maxLength: 5 },
  ),
  reason: fc.oneof(fc.constantFrom('gdpr_art17', 'ccpa'), text(20)),
  requestedAt: fc.integer({ min: -8_640_000_000_000, max: 8_640_000_000_000 }),
  targets: fc.array(text(15), { maxLength: 4 }),
  priority: fc.constantFrom('legal', 'normal', 'bulk'),
  notBefore: fc.option(fc.integer({ min: 0, max: 4_102_444_800_000 }), { nil: null }),
  deadline: fc.integer({ min: 0, max: 4_102_444_800_000 }),
  redelivery: fc.option(fc.record({ attempt: fc.integer({ min: 2, max: 1000 }), target: text(20) }), {
    nil: null,
  }),
});

/** The Confluent wire format: magic byte, a schema id, then Avro. */
const wire = (e: RequestedEvent) => Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), type.toBuffer(e)]);

async function fileOf(events: RequestedEvent[], fast: boolean): Promise<Buffer> {
  const b = new ColumnarFileBuilder(inlineEncoder(KEY), 7, { 'erasure.dataset.source': 'exporter' });
  const spans = new RequestedSpans();
  for (const [i, e] of events.entries()) {
    const eventTime = 1_768_435_200_000 + i * 3_600_000;
    const pos = {
      eventTime,
      dt: utcDate(eventTime),
      partition: 3,
      offset: BigInt(i),
      source: 'exporter' as const,
    };
    if (fast) {
      assert.ok(parseRequested(wire(e), 5, spans), 'a well-formed record parses');
      b.appendSpans(spans, pos);
    } else b.appendEvent(type.fromBuffer(type.toBuffer(e)) as RequestedEvent, pos);
  }
  return Buffer.from((await b.finish()).bytes);
}

describe('exporter fast path: requested events from their Avro bytes', () => {
  it('makes the same file, byte for byte, as the avsc path', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(eventArb, { minLength: 1, maxLength: 25 }), async (events) => {
        assert.deepEqual(await fileOf(events, true), await fileOf(events, false));
      }),
      { numRuns: 60 },
    );
  });

  it('refuses strings that are not valid UTF-8, so the avsc path writes them: the same file either way', async () => {
    // Avro strings and bytes share one encoding (a length, then the bytes): a copy of the
    // schema with bytes for strings writes arbitrary bytes where the reader expects UTF-8.
    const rawType = avro.Type.forSchema(
      JSON.parse(
        JSON.stringify(schema)
          .replaceAll('{"type":"string","logicalType":"uuid"}', '"bytes"')
          .replaceAll('"type":"string"', '"type":"bytes"')
          .replaceAll('"items":"string"', '"items":"bytes"'),
      ) as avro.Schema,
    );
    // Mostly valid text, sometimes bytes with invalid sequences (lone continuation bytes,
    // truncated sequences, overlong forms, surrogates, 0xFE/0xFF).
    const bytes = (max: number) =>
      fc.oneof(
        text(max).map((x) => Buffer.from(x, 'utf8')),
        fc
          .tuple(
            text(max),
            fc.constantFrom(
              [0xff],
              [0xfe, 0x41],
              [0x80],
              [0xc3],
              [0xe2, 0x82],
              [0xc0, 0xaf],
              [0xed, 0xa0, 0x80],
            ),
            text(4),
          )
          .map(([a, bad, b]) => Buffer.concat([Buffer.from(a), Buffer.from(bad), Buffer.from(b)])),
      );
    const rawArb = fc.record({
      eventId: bytes(36),
      requestId: bytes(36),
      identifiers: fc.array(fc.record({ type: bytes(12), value: bytes(120) }), {
        minLength: 1,
        maxLength: 4,
      }),
      reason: bytes(20),
      requestedAt: fc.integer({ min: 0, max: 4_102_444_800_000 }),
      targets: fc.array(bytes(15), { maxLength: 3 }),
      priority: bytes(8),
      notBefore: fc.constant(null),
      deadline: fc.integer({ min: 0, max: 4_102_444_800_000 }),
      redelivery: fc.option(fc.record({ attempt: fc.integer({ min: 2, max: 9 }), target: bytes(20) }), {
        nil: null,
      }),
    });
    /** As the export loop does: the fast path when it accepts the record, else avsc. */
    async function fileOfRaw(wires: Buffer[], fast: boolean): Promise<Buffer> {
      const b = new ColumnarFileBuilder(inlineEncoder(KEY), 7, { 'erasure.dataset.source': 'exporter' });
      const spans = new RequestedSpans();
      for (const [i, w] of wires.entries()) {
        const pos = { eventTime: 1_768_435_200_000, dt: '2026-01-15', partition: 3, offset: BigInt(i) };
        if (fast && parseRequested(w, 5, spans)) b.appendSpans(spans, { ...pos, source: 'exporter' });
        else b.appendEvent(type.fromBuffer(w.subarray(5)) as RequestedEvent, { ...pos, source: 'exporter' });
      }
      return Buffer.from((await b.finish()).bytes);
    }
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(rawArb, { minLength: 1, maxLength: 12 }), async (raws) => {
        const wires = raws.map((r) => Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), rawType.toBuffer(r)]));
        for (const w of wires) if (!parseRequested(w, 5, new RequestedSpans())) refused++;
        assert.deepEqual(await fileOfRaw(wires, true), await fileOfRaw(wires, false));
      }),
      { numRuns: 80 },
    );
    assert.ok(refused > 0, 'some records had invalid UTF-8');
    const one = {
      eventId: Buffer.from('e'),
      requestId: Buffer.from('r'),
      identifiers: [{ type: Buffer.from('email'), value: Buffer.from([0xff, 0xfe, 0x41, 0xc3]) }],
      reason: Buffer.from('ccpa'),
      requestedAt: 5,
      targets: [],
      priority: Buffer.from('legal'),
      notBefore: null,
      deadline: 9,
      redelivery: null,
    };
    const w = Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), rawType.toBuffer(one)]);
    assert.equal(parseRequested(w, 5, new RequestedSpans()), false, 'invalid UTF-8 in a value is refused');
    assert.ok(
      parseRequested(
        Buffer.concat([
          Buffer.from([0, 0, 0, 0, 7]),
          rawType.toBuffer({
            ...one,
            identifiers: [{ type: Buffer.from('email'), value: Buffer.from('añ€😀', 'utf8') }],
          }),
        ]),
        5,
        new RequestedSpans(),
      ),
      'valid multi-byte UTF-8 is read in place',
    );
  });

  it('reads arrays written in blocks with byte sizes (negative counts), as Avro allows', () => {
    const e: RequestedEvent = {
      eventId: 'e',
      requestId: 'r',
      identifiers: [
        { type: 'user_id', value: 'u1' },
        { type: 'email', value: 'a@b.c' },
      ],
      reason: 'ccpa',
      requestedAt: 5,
      targets: ['orders', 'crm'],
      priority: 'normal',
      notBefore: null,
      deadline: 9,
      redelivery: null,
    };
    const str = (s: string) => [Buffer.from([Buffer.byteLength(s) * 2]), Buffer.from(s)];
    const ids = Buffer.concat(e.identifiers.flatMap((i) => [...str(i.type), ...str(i.value)]));
    const targets = Buffer.concat(e.targets.flatMap(str));
    const bytes = Buffer.concat([
      Buffer.from([0, 0, 0, 0, 7]),
      ...str('e'),
      ...str('r'),
      Buffer.from([3, ids.length * 2]), // count -2 (zig-zag 3), then the block's size
      ids,
      Buffer.from([0]),
      ...str('ccpa'),
      Buffer.from([10]),
      Buffer.from([3, targets.length * 2]),
      targets,
      Buffer.from([0]),
      ...str('normal'),
      Buffer.from([0, 18, 0]),
    ]);
    assert.deepEqual(type.fromBuffer(bytes.subarray(5)), type.fromBuffer(type.toBuffer(e)), 'valid Avro');
    const spans = new RequestedSpans();
    assert.ok(parseRequested(bytes, 5, spans));
    assert.equal(spans.idCount, 2);
    assert.equal(spans.buf.toString('utf8', spans.ids[6]!, spans.ids[6]! + spans.ids[7]!), 'a@b.c');
    assert.equal(spans.requestedAt, 5);
  });

  it('refuses truncated, padded and foreign bytes without throwing', () => {
    fc.assert(
      fc.property(eventArb, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), (e, cut, junk) => {
        const bytes = wire(e);
        const spans = new RequestedSpans();
        const at = 5 + (cut % (bytes.length - 5));
        assert.equal(parseRequested(bytes.subarray(0, at), 5, spans), false, 'truncated');
        assert.equal(parseRequested(Buffer.concat([bytes, junk]), 5, spans), false, 'trailing bytes');
      }),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
        parseRequested(Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), junk]), 5, new RequestedSpans());
      }),
      { numRuns: 500 },
    );
  });

  it('is used only for the layout it reads: another schema has another fingerprint', () => {
    assert.equal(type.fingerprint('sha256').toString('hex'), REQUESTED_FINGERPRINT);
    const evolved = { ...schema, fields: [...schema.fields, { name: 'extra', type: 'string', default: '' }] };
    assert.notEqual(
      avro.Type.forSchema(evolved as avro.Schema)
        .fingerprint('sha256')
        .toString('hex'),
      REQUESTED_FINGERPRINT,
    );
  });
});
