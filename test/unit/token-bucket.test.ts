import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTokenBucket } from '../../services/shared/token-bucket.ts';
import { identifierHash, subjectHash } from '../../services/shared/subject-hash.ts';

describe('token bucket', () => {
  it('allows the burst, then refills at the rate, and says how long to wait', () => {
    let now = 0;
    const b = createTokenBucket({ ratePerSecond: 10, burst: 3, now: () => now });
    assert.deepEqual(
      [b.take(), b.take(), b.take()].map((r) => r.ok),
      [true, true, true],
    );
    const denied = b.take();
    assert.equal(denied.ok, false);
    assert.equal((denied as { retryAfterMs: number }).retryAfterMs, 100);
    now += 100;
    assert.equal(b.take().ok, true);
    now += 10_000;
    assert.equal([1, 2, 3, 4].map(() => b.take().ok).filter(Boolean).length, 3, 'never more than the burst');
  });
});

describe('subject hash', () => {
  const key = Buffer.from('k'.repeat(32));
  it('is keyed, order-independent and distinguishes types', () => {
    const a = subjectHash(key, [
      { type: 'user_id', value: '1' },
      { type: 'email', value: 'a@b.example' },
    ]);
    const b = subjectHash(key, [
      { type: 'email', value: 'a@b.example' },
      { type: 'user_id', value: '1' },
    ]);
    assert.deepEqual(a, b);
    assert.notDeepEqual(
      subjectHash(Buffer.from('j'.repeat(32)), [{ type: 'user_id', value: '1' }]),
      subjectHash(key, [{ type: 'user_id', value: '1' }]),
    );
    assert.notDeepEqual(
      identifierHash(key, { type: 'user_id', value: '1' }),
      identifierHash(key, { type: 'device_id', value: '1' }),
    );
  });
});
