// Protecting live traffic, pure logic with a fake clock: the circuit breaker's states, the
// adaptive (AIMD) rate, the gate that combines them with concurrency and a token bucket,
// and claim planning / ordering.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTokenBucket } from '../../services/shared/token-bucket.ts';
import { createAimdLimiter, DEFAULT_AIMD_POLICY } from '../../services/sync-dispatcher/aimd-limiter.ts';
import { compareDue, planClaims } from '../../services/sync-dispatcher/claim-order.ts';
import { createCircuitBreaker, type BreakerState } from '../../services/sync-dispatcher/circuit-breaker.ts';
import { createTargetGate } from '../../services/sync-dispatcher/target-gate.ts';

const policy = { windowMs: 10_000, minCalls: 4, failureRatio: 0.5, cooldownMs: 5000 };

describe('circuit breaker', () => {
  const setup = () => {
    let now = 0;
    const changes: string[] = [];
    const b = createCircuitBreaker({
      policy,
      now: () => now,
      onChange: (from: BreakerState, to: BreakerState) => changes.push(`${from}->${to}`),
    });
    return { b, changes, advance: (ms: number) => (now += ms) };
  };
  const call = (b: ReturnType<typeof setup>['b'], r: 'success' | 'failure' | 'ignore') =>
    b.record(b.start(), r);

  it('stays closed below the minimum number of calls, whatever they were', () => {
    const { b } = setup();
    for (let i = 0; i < 3; i++) call(b, 'failure');
    assert.equal(b.state(), 'closed');
    assert.equal(b.permits(), Infinity);
  });

  it('opens at the failure share, half-opens after the cool-down, closes on a good probe', () => {
    const { b, changes, advance } = setup();
    call(b, 'success');
    call(b, 'success');
    call(b, 'failure');
    assert.equal(b.state(), 'closed', '1 in 3, and under the minimum');
    call(b, 'failure');
    assert.equal(b.state(), 'open', '2 in 4 = 50%');
    assert.equal(b.permits(), 0);
    assert.equal(b.msUntilProbe(), 5000);
    advance(4999);
    assert.equal(b.state(), 'open');
    advance(1);
    assert.equal(b.state(), 'half_open');
    assert.equal(b.permits(), 1);
    const probe = b.start();
    assert.equal(probe.probe, true);
    assert.equal(b.permits(), 0, 'one probe at a time');
    b.record(probe, 'success');
    assert.equal(b.state(), 'closed');
    assert.deepEqual(changes, ['closed->open', 'open->half_open', 'half_open->closed']);
  });

  it('a failed probe opens it again for another cool-down; a probe that says nothing lets another go', () => {
    const { b, advance } = setup();
    for (let i = 0; i < 4; i++) call(b, 'failure');
    advance(5000);
    const p1 = b.start();
    b.record(p1, 'ignore');
    assert.equal(b.state(), 'half_open');
    assert.equal(b.permits(), 1);
    const p2 = b.start();
    b.record(p2, 'failure');
    assert.equal(b.state(), 'open');
    assert.equal(b.msUntilProbe(), 5000);
  });

  it('ignores answers to calls that started before it opened', () => {
    const { b, advance } = setup();
    const early = b.start();
    for (let i = 0; i < 4; i++) call(b, 'failure');
    b.record(early, 'success');
    assert.equal(b.state(), 'open');
    advance(5000);
    b.record(early, 'success');
    assert.equal(b.state(), 'half_open', 'only the probe closes it');
  });

  it('forgets failures that left the window', () => {
    const { b, advance } = setup();
    call(b, 'failure');
    call(b, 'failure');
    call(b, 'failure');
    advance(11_000);
    call(b, 'failure');
    call(b, 'success');
    call(b, 'success');
    call(b, 'success');
    assert.equal(b.state(), 'closed', '1 in 4 within the window');
  });
});

describe('adaptive rate (AIMD)', () => {
  it('decreases multiplicatively on congestion, once per interval, and increases additively when healthy', () => {
    let now = 0;
    const l = createAimdLimiter({ maxRate: 100, now: () => now });
    assert.equal(l.rate(), 100);
    for (let i = 0; i < 10; i++) l.record({ startedAt: now, latencyMs: 10, congested: i < 3 });
    now += 1000;
    assert.equal(l.rate(), 70, '30% congested: × 0.7');
    // Calls sent before the decrease do not cut it again.
    l.record({ startedAt: 500, latencyMs: 10, congested: true });
    for (let i = 0; i < 10; i++) l.record({ startedAt: now, latencyMs: 10, congested: false });
    now += 1000;
    assert.equal(l.rate(), 72, 'healthy: + 2% of the ceiling');
    now += 1000;
    assert.equal(l.rate(), 72, 'no calls, no evidence: unchanged');
    for (let i = 0; i < 10; i++) l.record({ startedAt: now, latencyMs: 10, congested: i < 8 });
    now += 1000;
    assert.ok(Math.abs(l.rate() - 72 * 0.2) < 1e-9, '80% refused: cut to the 20% that got through');
    for (let i = 0; i < 10; i++) l.record({ startedAt: now, latencyMs: 10, congested: true });
    now += 1000;
    assert.ok(Math.abs(l.rate() - 72 * 0.2 * 0.1) < 1e-9, 'never below a tenth in one interval');
  });

  it('decreases when latency rises well above its baseline, never below the floor, never above the ceiling', () => {
    let now = 0;
    const l = createAimdLimiter({ maxRate: 100, now: () => now });
    const interval = (latencyMs: number) => {
      for (let i = 0; i < 10; i++) l.record({ startedAt: now, latencyMs, congested: false });
      now += 1000;
      return l.rate();
    };
    assert.equal(interval(20), 100, 'healthy at the ceiling stays there');
    assert.equal(l.baselineMs(), 20);
    assert.equal(interval(60), 100, '3× but only 40 ms above: noise');
    assert.equal(interval(300), 70, 'latency rose: decrease');
    for (let i = 0; i < 30; i++) interval(1000);
    assert.equal(l.rate(), 1, 'floor: 1% of the ceiling');
    l.setMaxRate(0.5);
    assert.equal(l.rate(), 0.5);
  });

  it('converges under a target that answers 429 above 200 calls/s', () => {
    // Simulated: the dispatcher's bucket at the adaptive rate, the target's own bucket at 200/s.
    let now = 0;
    const clock = () => now;
    const limiter = createAimdLimiter({ maxRate: 1000, now: clock });
    const ours = createTokenBucket({ ratePerSecond: 1000, burst: 100, now: clock });
    const theirs = createTokenBucket({ ratePerSecond: 200, burst: 20, now: clock });
    const sentPerSecond: number[] = [];
    let sent = 0;
    for (let ms = 0; ms < 40_000; ms += 5) {
      now = ms;
      ours.setRate(limiter.rate(), Math.max(1, Math.ceil(limiter.rate() / 10)));
      while (ours.take().ok) {
        sent += 1;
        limiter.record({ startedAt: now, latencyMs: 2, congested: !theirs.take().ok });
      }
      if (ms % 1000 === 995) {
        sentPerSecond.push(sent);
        sent = 0;
      }
    }
    const late = sentPerSecond.slice(20);
    assert.ok(Math.max(...late) <= 200 * 1.3, `no second over 130% of the cap after settling: ${late}`);
    assert.ok(Math.min(...late) >= 200 * 0.6, `and none starved below 60%: ${late}`);
    assert.ok(DEFAULT_AIMD_POLICY.decreaseFactor < 1);
  });
});

describe('target gate', () => {
  const breaker = { windowMs: 10_000, minCalls: 2, failureRatio: 0.5, cooldownMs: 1000 };
  it('caps claims by free slots, whole tokens and the breaker', () => {
    let now = 0;
    const g = createTargetGate({ limits: { ratePerSecond: 100, concurrency: 3 }, breaker, now: () => now });
    assert.equal(g.capacity(), 3, 'three slots; the burst (a tenth of a second) is capped by them too');
    g.occupy();
    g.occupy();
    assert.equal(g.capacity(), 1);
    g.occupy();
    assert.equal(g.capacity(), 0);
    assert.equal(g.nextReadyInMs(), Infinity, 'slot-bound: a finishing call wakes the loop');
    g.vacate();
    g.vacate();
    g.vacate();
    for (let i = 0; i < 3; i++) assert.equal(g.beginCall(false).ok, true);
    assert.equal(g.beginCall(false).ok, false);
    assert.equal(g.capacity(), 0, 'bucket empty');
    assert.equal(g.nextReadyInMs(), 10, 'one token every 10 ms');
    now += 20;
    assert.equal(g.capacity(), 2);
  });

  it('opens for failures, refuses first calls while open, and probes with one', () => {
    let now = 0;
    const g = createTargetGate({ limits: { ratePerSecond: 1000, concurrency: 10 }, breaker, now: () => now });
    for (let i = 0; i < 2; i++) {
      const b = g.beginCall(true);
      assert.ok(b.ok);
      g.endCall(b.ticket, { breaker: 'failure', congested: false });
    }
    assert.equal(g.snapshot().breaker, 'open');
    assert.equal(g.capacity(), 0);
    assert.equal(g.beginCall(true).ok, false);
    assert.equal(g.nextReadyInMs(), 1000);
    now += 1000;
    assert.equal(g.capacity(), 1, 'half-open: one probe');
    const probe = g.beginCall(true);
    assert.ok(probe.ok);
    assert.equal(g.capacity(), 0);
    g.endCall(probe.ticket, { breaker: 'success', congested: false });
    assert.equal(g.snapshot().breaker, 'closed');
  });

  it('lowers its rate on congestion and never exceeds a lowered ceiling', () => {
    let now = 0;
    const g = createTargetGate({
      limits: { ratePerSecond: 100, concurrency: 100 },
      breaker,
      aimd: { ...DEFAULT_AIMD_POLICY, intervalMs: 100 },
      now: () => now,
    });
    for (let i = 0; i < 10; i++) {
      const b = g.beginCall(false);
      assert.ok(b.ok);
      g.endCall(
        b.ticket,
        i < 3 ? { breaker: 'ignore', congested: true } : { breaker: 'success', congested: false },
      );
    }
    now += 100;
    assert.equal(g.snapshot().rate, 70, '3 of 10 throttled: × 0.7');
    g.setLimits({ ratePerSecond: 10, concurrency: 1 });
    assert.equal(g.snapshot().rate, 10);
    assert.equal(g.capacity(), 1);
  });
});

describe('claim planning and order', () => {
  it('claims for every target with room, at most the per-pass maximum', () => {
    const plan = planClaims(
      new Map([
        ['b-target', 5],
        ['a-target', 100],
        ['full', 0],
        ['half', 0.9],
      ]),
      64,
    );
    assert.deepEqual(plan, { targets: ['a-target', 'b-target'], limits: [64, 5] });
  });

  it('starts legal before normal before bulk, then the longest waiting', () => {
    const tasks = [
      { priority: 2, dueAt: 1, requestId: 'bulk-old' },
      { priority: 1, dueAt: 5, requestId: 'normal-new' },
      { priority: 0, dueAt: 9, requestId: 'legal-new' },
      { priority: 1, dueAt: 2, requestId: 'normal-old' },
      { priority: 0, dueAt: 3, requestId: 'legal-old' },
    ];
    assert.deepEqual(
      tasks.sort(compareDue).map((t) => t.requestId),
      ['legal-old', 'legal-new', 'normal-old', 'normal-new', 'bulk-old'],
    );
  });
});
