// The redelivery schedule, pure: when a late target is sent its event again, with which
// attempt number and after how long, and when the pipeline gives up and a person must look.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  giveUpMessage,
  planRedelivery,
  type RedeliveryPolicy,
} from '../../services/redelivery/plan-redelivery.ts';

const policy: RedeliveryPolicy = {
  maxAttempts: 5,
  backoff: { initialMs: 60_000, maxMs: 600_000, multiplier: 2 },
};
const top = () => 0.999_999; // jitter at the top of its range: the bound itself, less a hair
const zero = () => 0;

describe('planRedelivery', () => {
  it('first redelivery is attempt 2, due again after the SLA plus the first backoff', () => {
    assert.deepEqual(planRedelivery({ deliveries: 1, ackSlaSeconds: 30 }, policy, zero), {
      kind: 'redeliver',
      attempt: 2,
      nextInMs: 30_000,
    });
    const p = planRedelivery({ deliveries: 1, ackSlaSeconds: 30 }, policy, top);
    assert.equal(p.kind, 'redeliver');
    assert.equal(p.kind === 'redeliver' && p.nextInMs, 30_000 + 59_999);
  });

  it('the backoff bound doubles per redelivery and is capped at maxMs', () => {
    const waits = [1, 2, 3, 4].map((deliveries) => {
      const p = planRedelivery({ deliveries, ackSlaSeconds: 1 }, { ...policy, maxAttempts: 100 }, top);
      assert.equal(p.kind, 'redeliver');
      return p.kind === 'redeliver' ? p.nextInMs - 1000 : -1;
    });
    assert.deepEqual(waits, [59_999, 119_999, 239_999, 479_999]);
    const late = planRedelivery({ deliveries: 20, ackSlaSeconds: 1 }, { ...policy, maxAttempts: 100 }, top);
    assert.equal(late.kind === 'redeliver' && late.nextInMs, 1000 + 599_999);
  });

  it('attempt numbers follow the deliveries: 2, 3, 4, 5, then it gives up at maxAttempts', () => {
    const plans = [1, 2, 3, 4, 5].map((deliveries) =>
      planRedelivery({ deliveries, ackSlaSeconds: 1 }, policy, zero),
    );
    assert.deepEqual(
      plans.map((p) => (p.kind === 'redeliver' ? p.attempt : p.kind)),
      [2, 3, 4, 5, 'give_up'],
    );
    assert.deepEqual(plans[4], { kind: 'give_up', deliveries: 5 });
    assert.deepEqual(planRedelivery({ deliveries: 9, ackSlaSeconds: 1 }, policy, zero), {
      kind: 'give_up',
      deliveries: 9,
    });
  });

  it('maxAttempts 1 never redelivers: the first late SLA fails the task', () => {
    assert.deepEqual(
      planRedelivery({ deliveries: 1, ackSlaSeconds: 1 }, { ...policy, maxAttempts: 1 }, zero),
      {
        kind: 'give_up',
        deliveries: 1,
      },
    );
  });

  it('a task that is late was delivered at least once: odd counts are read as 1', () => {
    for (const deliveries of [0, -3, Number.NaN, 0.5]) {
      assert.deepEqual(planRedelivery({ deliveries, ackSlaSeconds: 2 }, policy, zero), {
        kind: 'redeliver',
        attempt: 2,
        nextInMs: 2000,
      });
    }
  });

  it('says what happened in words a person acts on', () => {
    assert.equal(giveUpMessage(5), 'no acknowledgement after 5 deliveries');
  });
});
