// The pure parts of applying acks: cleaning partner text, the task change an ack makes,
// checking a decoded ack event, and which failures the consumer retries.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { isRetriablePgError } from '../../services/ack-consumer/consume-acks.ts';
import { isRetriableRegistryError } from '../../services/shared/event-codec.ts';
import { validateAckEvent } from '../../services/ack-consumer/validate-ack-event.ts';
import { MAX_DETAIL_CHARS, sanitizeDetail, taskChange } from '../../services/shared/apply-ack.ts';

const ID = '0b7f5d3e-8c1a-4f7e-9a51-3d2c1b0a9f88';
const good = {
  requestId: ID,
  target: 'alpha-events',
  status: 'deleted',
  detail: null,
  ackedAt: 1_700_000_000_000,
  eventId: null,
};

describe('sanitizeDetail', () => {
  it('replaces control characters, trims, and cuts to the limit without splitting characters', () => {
    assert.equal(sanitizeDetail(null), null);
    assert.equal(sanitizeDetail(' a\u0000\u0007b\r\nc\u009f '), 'a b c');
    assert.equal(sanitizeDetail('x'.repeat(5000))!.length, MAX_DETAIL_CHARS);
    const emoji = sanitizeDetail('😀'.repeat(1200))!;
    assert.equal(Array.from(emoji).length, MAX_DETAIL_CHARS);
    assert.ok(!/[\uD800-\uDBFF]$/.test(emoji), 'no lone high surrogate at the end');
  });

  it('replaces lone surrogates with U+FFFD and keeps pairs', () => {
    assert.equal(sanitizeDetail('a\uDC00b\uD800c😀\uD83D'), 'a\uFFFDb\uFFFDc😀\uFFFD');
    assert.equal(sanitizeDetail('\uDC00\uD800'), '\uFFFD\uFFFD');
  });

  it('never yields control characters, lone surrogates or more than the limit (property)', () => {
    // 'binary' alone yields whole code points: halves of a pair are mixed in by hand.
    const unit = fc.oneof(
      fc.constantFrom('\uD83D', '\uDE00'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    );
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 3000 }), (s) => {
        const out = sanitizeDetail(s)!;
        return (
          Array.from(out).length <= MAX_DETAIL_CHARS &&
          // eslint-disable-next-line no-control-regex
          !/[\u0000-\u001f\u007f-\u009f]/.test(out) &&
          !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(out)
        );
      }),
    );
  });
});

describe('taskChange', () => {
  it('acks with the outcome, or fails with the cause', () => {
    assert.deepEqual(taskChange('deleted', 'x'), { state: 'acked', outcome: 'deleted', lastError: null });
    assert.deepEqual(taskChange('not_found', null), {
      state: 'acked',
      outcome: 'not_found',
      lastError: null,
    });
    assert.deepEqual(taskChange('failed', 'disk full'), {
      state: 'failed',
      outcome: null,
      lastError: 'disk full',
    });
    assert.equal(taskChange('failed', null).lastError, 'the target reported failure');
  });
});

describe('validateAckEvent', () => {
  it('accepts a well-formed event', () => {
    const r = validateAckEvent({ ...good, requestId: ID.toUpperCase(), eventId: ID });
    assert.ok(r.ok);
    assert.equal(r.ack.requestId, ID);
    assert.equal(r.ack.ackedAt.getTime(), good.ackedAt);
    assert.equal(r.ack.eventId, ID);
    assert.equal(r.warning, undefined);
  });

  it('skips events that cannot name a task, naming the field and never the value', () => {
    const cases: [Record<string, unknown> | null, string][] = [
      [null, 'event is not a record'],
      [{ ...good, requestId: 'someone@example.org' }, 'requestId is not a UUID'],
      [{ ...good, target: 'Not A Target' }, 'target is not a target name'],
      [{ ...good, detail: 5 }, 'detail is not text'],
      [{ ...good, ackedAt: 'yesterday' }, 'ackedAt is not a timestamp'],
      [{ ...good, ackedAt: Number.NaN }, 'ackedAt is not a timestamp'],
    ];
    for (const [event, reason] of cases) assert.deepEqual(validateAckEvent(event), { ok: false, reason });
  });

  it('turns an unknown status into a failed ack with a warning, as the Avro schema documents', () => {
    const r = validateAckEvent({ ...good, status: 'erased\u0000', detail: 'done' });
    assert.ok(r.ok);
    assert.equal(r.ack.status, 'failed');
    assert.equal(r.ack.detail, 'unknown ack status "erased ": done');
    assert.ok(r.warning);
  });

  it('drops a malformed eventId (evidence only) and accepts a Date ackedAt', () => {
    const r = validateAckEvent({ ...good, eventId: 'nope', ackedAt: new Date(good.ackedAt) });
    assert.ok(r.ok);
    assert.equal(r.ack.eventId, null);
  });

  it('never throws, whatever it is given (property)', () => {
    fc.assert(fc.property(fc.anything(), (v) => typeof validateAckEvent(v).ok === 'boolean'));
  });
});

describe('retry classification', () => {
  it('retries connection, resource, shutdown, serialization and lock errors; not bugs or bad data', () => {
    const dbError = (code: string) => Object.assign(new pg.DatabaseError('example', 7, 'error'), { code });
    for (const code of ['08006', '53300', '57P01', '40001', '40P01', '55P03'])
      assert.equal(isRetriablePgError(dbError(code)), true, code);
    for (const code of ['22P02', '23505', '42P01'])
      assert.equal(isRetriablePgError(dbError(code)), false, code);
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    assert.equal(isRetriablePgError(refused), true);
    assert.equal(isRetriablePgError(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })), true);
  });

  it('retries an unreachable or failing registry; not an unknown schema id', () => {
    assert.equal(isRetriableRegistryError({ status: 503, message: 'x' }), true);
    assert.equal(
      isRetriableRegistryError({ status: 400, message: 'status 400: connect ECONNREFUSED' }),
      true,
    );
    assert.equal(isRetriableRegistryError({ status: 404, message: 'No content with ID' }), false);
    assert.equal(isRetriableRegistryError(new RangeError('outside buffer bounds')), false);
  });
});
