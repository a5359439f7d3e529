// computeBackoff: full jitter under an exponential bound, capped; pure, so randomness is a parameter.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { computeBackoff, type BackoffPolicy } from '../../services/shared/compute-backoff.ts';

const policy: BackoffPolicy = { initialMs: 100, maxMs: 10_000, multiplier: 2 };
const almostOne = 1 - Number.EPSILON;

describe('computeBackoff', () => {
  it('grows the bound by the multiplier per attempt (the top of the jitter range)', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((a) => computeBackoff(a, policy, () => almostOne)),
      [99, 199, 399, 799, 1599],
    );
  });

  it('never exceeds maxMs, however many attempts failed', () => {
    assert.equal(
      computeBackoff(8, policy, () => almostOne),
      9999,
    );
    assert.equal(
      computeBackoff(1_000_000, policy, () => almostOne),
      9999,
    );
    assert.equal(
      computeBackoff(Number.MAX_SAFE_INTEGER, policy, () => almostOne),
      9999,
    );
  });

  it('is full jitter: random 0 waits 0, random 0.5 waits half the bound', () => {
    assert.equal(
      computeBackoff(3, policy, () => 0),
      0,
    );
    assert.equal(
      computeBackoff(3, policy, () => 0.5),
      200,
    );
  });

  it('treats attempts below 1 (and non-numbers) as the first', () => {
    for (const a of [0, -5, Number.NaN, 0.4])
      assert.equal(
        computeBackoff(a, policy, () => 0.5),
        50,
        `attempt ${a}`,
      );
  });

  it('a multiplier of 1 is a constant bound', () => {
    const flat = { initialMs: 250, maxMs: 10_000, multiplier: 1 };
    assert.equal(
      computeBackoff(1, flat, () => 0.5),
      125,
    );
    assert.equal(
      computeBackoff(50, flat, () => 0.5),
      125,
    );
  });

  it('is a whole number in [0, min(maxMs, bound)) for any attempt, policy and random', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -3, max: 5000 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, initialMs, maxMs, multiplier, r) => {
          const p = { initialMs, maxMs, multiplier };
          const wait = computeBackoff(attempt, p, () => r);
          const bound = Math.min(maxMs, initialMs * multiplier ** Math.min(Math.max(attempt, 1) - 1, 64));
          assert.ok(Number.isInteger(wait));
          assert.ok(wait >= 0 && wait < bound && wait < maxMs, `${wait} within [0, ${bound})`);
        },
      ),
    );
  });
});
