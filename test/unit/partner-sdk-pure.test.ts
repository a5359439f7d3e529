// Pure parts of the partner SDK: backoff maths, retry loop, target selection, redaction, LRU, lag sum, options.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BoundedSet } from '../../packages/partner-sdk/src/bounded-set.ts';
import {
  DEFAULT_RETRY,
  computeBackoff,
  retryWithBackoff,
} from '../../packages/partner-sdk/src/compute-backoff.ts';
import { sumLag } from '../../packages/partner-sdk/src/compute-lag.ts';
import { deadLetterMessage } from '../../packages/partner-sdk/src/dead-letter.ts';
import { describeError } from '../../packages/partner-sdk/src/describe-error.ts';
import { resolveOptions } from '../../packages/partner-sdk/src/options.ts';
import { selectEvent } from '../../packages/partner-sdk/src/select-event.ts';

describe('partner sdk: computeBackoff', () => {
  const policy = { attempts: 5, initialMs: 200, maxMs: 1000, multiplier: 2 };
  it('grows the ceiling exponentially and caps it at maxMs (random just below 1)', () => {
    const top = () => 0.999_999;
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((a) => computeBackoff(a, policy, top)),
      [199, 399, 799, 999, 999],
    );
  });
  it('is full jitter: random 0 waits 0, random 0.5 waits half the ceiling', () => {
    assert.equal(
      computeBackoff(3, policy, () => 0),
      0,
    );
    assert.equal(
      computeBackoff(3, policy, () => 0.5),
      400,
    );
  });
  it('defaults match the documented contract', () => {
    assert.deepEqual({ ...DEFAULT_RETRY }, { attempts: 5, initialMs: 200, maxMs: 10_000, multiplier: 2 });
  });
});

describe('partner sdk: retryWithBackoff', () => {
  const policy = { attempts: 3, initialMs: 100, maxMs: 1000, multiplier: 2 };
  it('retries until success, sleeping the jittered backoff between tries', async () => {
    const slept: number[] = [];
    const between: number[] = [];
    let calls = 0;
    const r = await retryWithBackoff(
      async () => {
        if (++calls < 3) throw new Error('blip');
        return 'ok';
      },
      policy,
      {
        sleep: async (ms) => void slept.push(ms),
        random: () => 0.5,
        between: (attempt) => void between.push(attempt),
      },
    );
    assert.deepEqual(r, { ok: true, value: 'ok', attempts: 3 });
    assert.deepEqual(slept, [50, 100]);
    assert.deepEqual(between, [1, 2]);
  });
  it('gives up after `attempts` tries with the last error, without a final sleep', async () => {
    const slept: number[] = [];
    let calls = 0;
    const r = await retryWithBackoff(
      async () => {
        throw new Error(`fail ${++calls}`);
      },
      policy,
      { sleep: async (ms) => void slept.push(ms), random: () => 0 },
    );
    assert.equal(r.ok, false);
    assert.equal(r.attempts, 3);
    assert.equal((r.error as Error).message, 'fail 3');
    assert.equal(slept.length, 2);
  });
});

describe('partner sdk: selectEvent', () => {
  it('handles a first publication listing this target, skips one that does not', () => {
    assert.equal(selectEvent({ targets: ['a', 'orders-db'], redelivery: null }, 'orders-db'), 'handle');
    assert.equal(selectEvent({ targets: ['a', 'b'], redelivery: null }, 'orders-db'), 'not-for-target');
  });
  it('handles a redelivery for this target and skips one for another, whatever `targets` lists', () => {
    const redelivery = (target: string) => ({ attempt: 2, target });
    assert.equal(
      selectEvent({ targets: ['orders-db'], redelivery: redelivery('orders-db') }, 'orders-db'),
      'handle',
    );
    assert.equal(selectEvent({ targets: [], redelivery: redelivery('orders-db') }, 'orders-db'), 'handle');
    assert.equal(
      selectEvent({ targets: ['orders-db', 'crm'], redelivery: redelivery('crm') }, 'orders-db'),
      'redelivery-for-other-target',
    );
  });
});

describe('partner sdk: describeError', () => {
  it('cuts identifier values (any case) and quoted spans out of the message', () => {
    const err = new Error('no row for A@B.example or user 4242 (key "secret-ish") in shard 7');
    const text = describeError(err, ['a@b.example', '4242']);
    assert.equal(text, 'Error: no row for [redacted] or user [redacted] (key "…") in shard 7');
  });
  it('removes a longer value whole before a shorter one inside it, and bounds the length', () => {
    assert.equal(describeError(new TypeError('x 12345 y'), ['123', '12345']), 'TypeError: x [redacted] y');
    assert.ok(describeError(new Error('e'.repeat(2000)), []).length <= 500);
  });
  it('describes non-Error throws', () => {
    assert.equal(describeError('boom 99', ['99']), 'Error: boom [redacted]');
  });
});

describe('partner sdk: BoundedSet', () => {
  it('forgets the least recently seen id past its capacity', () => {
    const s = new BoundedSet(2);
    s.add('a');
    s.add('b');
    assert.equal(s.has('a'), true); // refreshes a: b is now the oldest
    s.add('c');
    assert.deepEqual([s.has('a'), s.has('b'), s.has('c'), s.size], [true, false, true, 2]);
  });
  it('refuses a capacity below 1', () => {
    assert.throws(() => new BoundedSet(0), RangeError);
  });
});

describe('partner sdk: sumLag', () => {
  const marks = [
    { partition: 0, high: '10', low: '0' },
    { partition: 1, high: '5', low: '2' },
    { partition: 2, high: '7', low: '4' },
  ];
  it('sums high watermark minus committed offset', () => {
    const committed = new Map([
      [0, '10'],
      [1, '3'],
      [2, '6'],
    ]);
    assert.equal(sumLag(committed, marks, true), 0 + 2 + 1);
  });
  it('counts an uncommitted partition from the low watermark when starting from the beginning, else as 0', () => {
    const committed = new Map([[0, '8']]);
    assert.equal(sumLag(committed, marks, true), 2 + 3 + 3);
    assert.equal(sumLag(committed, marks, false), 2);
  });
  it('counts a commit below the low watermark (retention deleted events) from the low watermark', () => {
    assert.equal(sumLag(new Map([[2, '1']]), [marks[2]!], false), 3);
  });
});

describe('partner sdk: deadLetterMessage', () => {
  it('keeps the original key, value and headers and adds why, as strings', () => {
    const value = Buffer.from([0, 0, 0, 0, 1, 42]);
    const original = { key: Buffer.from('k'), value, headers: { trace: 't1' }, offset: '17' };
    const m = deadLetterMessage(original as never, {
      error: 'Error: down',
      attempts: 5,
      target: 'orders-db',
      sourceTopic: 'privacy.erasure.requested.v1',
      partition: 3,
      offset: '17',
      eventId: 'e1',
      failedAt: 1000,
    });
    assert.equal(m.value, value);
    assert.equal(m.key?.toString(), 'k');
    assert.equal(m.headers['trace'], 't1');
    assert.equal(m.headers['x-erasure-attempts'], '5');
    assert.equal(m.headers['x-erasure-source-partition'], '3');
    assert.equal(m.headers['x-erasure-event-id'], 'e1');
    assert.equal('x-erasure-request-id' in m.headers, false);
  });
});

describe('partner sdk: resolveOptions', () => {
  const base = {
    target: 'orders-db',
    kafka: { brokers: ['127.0.0.1:9092'] },
    schemaRegistryUrl: 'http://127.0.0.1:8081/apis/ccompat/v7',
    handler: async () => ({ status: 'deleted' as const }),
  };
  it('fills the documented defaults and freezes', () => {
    const o = resolveOptions(base);
    assert.equal(o.groupId, 'erasure-partner.orders-db');
    assert.equal(o.deadLetterTopic, 'privacy.erasure.dlq.orders-db');
    assert.equal(o.retry.attempts, 5);
    assert.equal(o.fromBeginning, true);
    assert.equal(o.fetchMinBytes, 65_536);
    assert.equal(o.fetchMaxWaitMs, 200);
    assert.ok(Object.isFrozen(o));
  });
  it('refuses fetch settings kafkajs would take but misbehave on', () => {
    for (const bad of [{ fetchMinBytes: 0 }, { fetchMinBytes: 1.5 }, { fetchMinBytes: 20_000_000 }])
      assert.throws(() => resolveOptions({ ...base, ...bad }), /fetchMinBytes must be an integer from 1/);
    for (const bad of [{ fetchMaxWaitMs: 0 }, { fetchMaxWaitMs: 120_000 }])
      assert.throws(() => resolveOptions({ ...base, ...bad }), /fetchMaxWaitMs must be an integer from 10/);
    assert.equal(resolveOptions({ ...base, fetchMinBytes: 1, fetchMaxWaitMs: 10 }).fetchMinBytes, 1);
  });
  it('lists every problem at once', () => {
    assert.throws(
      () => resolveOptions({ ...base, target: '', schemaRegistryUrl: 'nope', retry: { attempts: 0 } }),
      (err: Error) =>
        /target is required/.test(err.message) &&
        /schemaRegistryUrl/.test(err.message) &&
        /retry.attempts/.test(err.message),
    );
  });
});
