// Outcome rules of a sync call (classify-outcome.ts), Retry-After parsing and the retry plan:
// every row of the table, produced from the client's observations.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callClass, classifyCall, type CallResult } from '../../services/sync-dispatcher/classify-outcome.ts';
import { parseRetryAfter } from '../../services/sync-dispatcher/parse-retry-after.ts';
import { planRetry } from '../../services/sync-dispatcher/plan-retry.ts';

const NOW = Date.parse('2025-03-01T12:00:00Z');
const opts = { notFoundStatuses: [404, 410], nowMs: NOW, retryAfterCapMs: 3_600_000 };
const response = (status: number, body = '', retryAfter: string | null = null): CallResult => ({
  kind: 'response',
  status,
  body,
  retryAfter,
});
const classOf = (r: CallResult) => classifyCall(r, opts).outcome.class;

describe('classifyCall', () => {
  it('2xx is deleted, keeping the body (sanitised, capped) as evidence', () => {
    for (const s of [200, 202, 204, 299]) assert.equal(classOf(response(s)), 'deleted');
    const c = classifyCall(response(200, `{"deleted":1}\u0000${'x'.repeat(5000)}`), opts);
    assert.equal(c.outcome.class, 'deleted');
    const detail = (c.outcome as { detail: string }).detail;
    assert.ok(detail.startsWith('{"deleted":1} x'), 'control characters become spaces');
    assert.equal(detail.length, 1000, 'evidence is cut to 1000 characters');
    assert.deepEqual(c.health, { breaker: 'success', congested: false });
  });

  it('404 and the target-configured statuses are not_found', () => {
    assert.equal(classOf(response(404)), 'not_found');
    assert.equal(classOf(response(410)), 'not_found');
    assert.equal(classifyCall(response(410), { ...opts, notFoundStatuses: [] }).outcome.class, 'fail');
    assert.equal(classifyCall(response(404), { ...opts, notFoundStatuses: [] }).outcome.class, 'not_found');
  });

  it('408, 425, 429, 5xx, timeouts and network errors are retried', () => {
    for (const s of [408, 425, 429, 500, 502, 503, 504, 599])
      assert.equal(classOf(response(s)), 'retry', `${s}`);
    assert.equal(classOf({ kind: 'timeout', timeoutMs: 100 }), 'retry');
    assert.equal(classOf({ kind: 'network', code: 'ECONNRESET' }), 'retry');
    const reset = classifyCall({ kind: 'network', code: 'ECONNRESET' }, opts).outcome;
    assert.equal((reset as { message: string }).message, 'network error ECONNRESET');
    const odd = classifyCall({ kind: 'network', code: 'something "quoted"' }, opts).outcome;
    assert.equal(
      (odd as { message: string }).message,
      'network error UNKNOWN',
      'foreign text is not repeated',
    );
  });

  it('honours Retry-After on retriable answers', () => {
    const c = classifyCall(response(429, '', '7'), opts).outcome as { retryAfterMs: number; cause: string };
    assert.equal(c.cause, 'http_429');
    assert.equal(c.retryAfterMs, 7000);
    const d = classifyCall(response(503, '', 'Sat, 01 Mar 2025 12:00:30 GMT'), opts).outcome as {
      retryAfterMs: number;
    };
    assert.equal(d.retryAfterMs, 30_000);
  });

  it('other 4xx fail with the response recorded', () => {
    for (const s of [400, 401, 403, 409, 422, 499]) assert.equal(classOf(response(s)), 'fail', `${s}`);
    const c = classifyCall(response(400, 'bad subject id'), opts).outcome as {
      message: string;
      httpStatus: number;
      detail: string;
      cause: string;
    };
    assert.equal(c.cause, 'http_4xx');
    assert.equal(c.httpStatus, 400);
    assert.equal(c.detail, 'bad subject id');
    assert.equal(c.message, 'the target refused the call with 400: bad subject id');
  });

  it('refused redirects and blocked addresses fail with a clear reason; 3xx otherwise is unexpected', () => {
    const other = classifyCall({ kind: 'redirect_refused', status: 302, reason: 'other_host' }, opts)
      .outcome as {
      class: string;
      message: string;
    };
    assert.equal(other.class, 'fail');
    assert.match(other.message, /never followed to another host/);
    assert.equal(classOf({ kind: 'redirect_refused', status: 301, reason: 'method_change' }), 'fail');
    assert.equal(classOf({ kind: 'redirect_refused', status: 307, reason: 'too_many' }), 'fail');
    assert.equal(classOf({ kind: 'blocked_address' }), 'fail');
    assert.equal(classOf(response(304)), 'fail');
  });

  it('an aborted call is released, and tells the breaker nothing', () => {
    const c = classifyCall({ kind: 'aborted' }, opts);
    assert.equal(c.outcome.class, 'released');
    assert.equal(c.health.breaker, 'ignore');
  });

  it('says what each answer means for the breaker and the adaptive rate', () => {
    const h = (r: CallResult) => classifyCall(r, opts).health;
    assert.deepEqual(h(response(500)), { breaker: 'failure', congested: false });
    assert.deepEqual(h(response(503)), { breaker: 'failure', congested: true });
    assert.deepEqual(h(response(429)), { breaker: 'ignore', congested: true });
    assert.deepEqual(h({ kind: 'timeout', timeoutMs: 100 }), { breaker: 'failure', congested: true });
    assert.deepEqual(
      h(response(400)),
      { breaker: 'success', congested: false },
      'a 4xx is a healthy refusal',
    );
  });

  it('labels calls with a few fixed words', () => {
    assert.equal(callClass(response(204), []), '2xx');
    assert.equal(callClass(response(410), [410]), 'not_found');
    assert.equal(callClass(response(429), []), '429');
    assert.equal(callClass(response(502), []), '5xx');
    assert.equal(callClass({ kind: 'timeout', timeoutMs: 1 }, []), 'timeout');
  });
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates, capped', () => {
    assert.equal(parseRetryAfter('0', NOW, 60_000), 0);
    assert.equal(parseRetryAfter(' 12 ', NOW, 60_000), 12_000);
    assert.equal(parseRetryAfter('999999', NOW, 60_000), 60_000, 'capped');
    assert.equal(parseRetryAfter('Sat, 01 Mar 2025 12:00:10 GMT', NOW, 60_000), 10_000);
    assert.equal(parseRetryAfter('Saturday, 01-Mar-25 12:00:10 GMT', NOW, 60_000), 10_000, 'RFC 850 form');
    assert.equal(parseRetryAfter('Sat, 01 Mar 2025 11:00:00 GMT', NOW, 60_000), 0, 'a past date means now');
    assert.equal(parseRetryAfter('Sun, 01 Mar 2026 12:00:00 GMT', NOW, 60_000), 60_000, 'capped');
  });

  it('ignores what is not Retry-After', () => {
    for (const v of [null, undefined, '', '-1', '1.5', '2025-03-01T12:00:10Z', 'soon', 'Sat, garbage'])
      assert.equal(parseRetryAfter(v, NOW, 60_000), undefined, String(v));
  });
});

describe('planRetry', () => {
  const policy = {
    maxAttempts: 3,
    maxAgeMs: 60_000,
    backoff: { initialMs: 1000, maxMs: 10_000, multiplier: 2 },
  };
  it('backs off with full jitter, growing per attempt', () => {
    assert.deepEqual(
      planRetry(1, 0, undefined, policy, () => 0.5),
      { kind: 'retry', delayMs: 500 },
    );
    assert.deepEqual(
      planRetry(2, 0, undefined, policy, () => 0.5),
      { kind: 'retry', delayMs: 1000 },
    );
    assert.deepEqual(
      planRetry(2, 0, undefined, policy, () => 0),
      { kind: 'retry', delayMs: 0 },
    );
  });
  it('takes Retry-After as a floor', () => {
    assert.deepEqual(
      planRetry(1, 0, 7000, policy, () => 0.5),
      { kind: 'retry', delayMs: 7000 },
    );
    assert.deepEqual(
      planRetry(2, 0, 10, policy, () => 0.5),
      { kind: 'retry', delayMs: 1000 },
    );
  });
  it('gives up after maxAttempts or past maxAge', () => {
    const a = planRetry(3, 0, undefined, policy, () => 0.5);
    assert.equal(a.kind, 'give_up');
    assert.equal((a as { cause: string }).cause, 'max_attempts');
    const b = planRetry(1, 60_000, undefined, policy, () => 0.5);
    assert.equal((b as { cause: string }).cause, 'max_age');
  });
});
