// A claimed task waiting for its target's gate (run-task.ts), with a fake clock and the real
// gate: one the gate will not admit within its lease before its first call is handed back
// uncalled, to the state and due time its claim found; a task whose lease is no longer ours
// is released without its next call. Only the two-call cases reach a server, on loopback.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import type { TargetHttp } from '../../services/shared/validate-target.ts';
import type { ClaimedTask } from '../../services/sync-dispatcher/claim-sync-tasks.ts';
import { RELEASED_MESSAGE, runTask, type RunTaskDeps } from '../../services/sync-dispatcher/run-task.ts';
import { createAgents } from '../../services/sync-dispatcher/send-call.ts';
import { createTargetGate, type TargetGate } from '../../services/sync-dispatcher/target-gate.ts';

const breaker = { windowMs: 10_000, minCalls: 2, failureRatio: 0.5, cooldownMs: 60_000 };
const http: TargetHttp = {
  method: 'DELETE',
  urlTemplate: 'http://127.0.0.1:9/erase/{{user_id}}',
  headers: {},
  bodyTemplate: null,
  timeoutMs: 1000,
  rateLimitPerSecond: 1000,
  concurrency: 4,
  notFoundStatuses: [404],
};
const DUE_AT = 1_699_999_000_000;

function claimed(extra: Partial<ClaimedTask> = {}): ClaimedTask {
  return {
    requestId: '3f2b8a52-5d55-4a3f-9d6e-0c1f6a1b2c3d',
    target: 'shop-db',
    attempt: 1,
    priority: 1,
    dueAt: DUE_AT,
    claimedFrom: 'pending',
    ageMs: 0,
    http,
    identifiers: [{ type: 'user_id', value: 'u-1' }],
    ...extra,
  };
}

function setup(limits = { ratePerSecond: 1000, concurrency: 4 }) {
  let now = 1_700_000_000_000;
  const gate = createTargetGate({ limits, breaker, now: () => now });
  const agents = createAgents();
  const deps = (gate: TargetGate, extra: Partial<RunTaskDeps> = {}): RunTaskDeps => ({
    gate,
    agents,
    secrets: new Map(),
    signal: new AbortController().signal,
    now: () => now,
    random: () => 0.5,
    retryPolicy: () => ({
      maxAttempts: 5,
      maxAgeMs: 3_600_000,
      backoff: { initialMs: 10, maxMs: 20, multiplier: 2 },
    }),
    retryAfterCapMs: 60_000,
    extendLease: () => Promise.reject(new Error('a single-call task never extends its lease')),
    leaseMarginMs: 4000,
    claimedAt: now,
    onCall: () => assert.fail('no call is made'),
    ...extra,
  });
  return { gate, deps, advance: (ms: number) => (now += ms), now: () => now };
}

describe('sync task waiting for its target gate', () => {
  it('hands a task back uncalled when the breaker opened after its claim, to the state its claim found', async () => {
    const { gate, deps } = setup();
    for (let i = 0; i < 2; i++) {
      const b = gate.beginCall(true);
      assert.ok(b.ok);
      gate.endCall(b.ticket, { breaker: 'failure', congested: false });
    }
    assert.deepEqual(gate.beginCall(true), { ok: false, blockedBy: 'breaker', waitMs: 50 });
    const cases = [
      ['pending', 1, 'pending'],
      ['retrying', 3, 'retrying'],
      ['dispatched', 3, 'retrying'], // a retake: the previous holder may have called
    ] as const;
    for (const [claimedFrom, attempt, restore] of cases) {
      const result = await runTask(claimed({ claimedFrom, attempt }), deps(gate));
      assert.deepEqual(result, {
        state: 'handed_back',
        restore,
        dueAt: DUE_AT,
        journal: { target: 'shop-db', attempt, cause: 'breaker_open', called: false },
      });
    }
  });

  it('hands a task back when the wait for a rate token outlasts what its lease leaves, counting from the claim', async () => {
    // One token a second: after the burst's one token is taken, the next is 1000 ms away.
    const { gate, deps, now } = setup({ ratePerSecond: 1, concurrency: 4 });
    assert.ok(gate.beginCall(false).ok);
    const refused = gate.beginCall(false);
    assert.ok(!refused.ok && refused.blockedBy === 'rate' && refused.waitMs === 1000);
    // The call must start within half the margin (2000 ms) of the claim; 1500 ms have passed.
    const result = await runTask(claimed(), deps(gate, { claimedAt: now() - 1500 }));
    assert.equal(result.state, 'handed_back');
    assert.equal(result.journal['cause'], 'rate_limited');
  });

  it('releases a task, as before, when the dispatcher stops while it waits', async () => {
    const { gate, deps } = setup();
    const stop = new AbortController();
    stop.abort();
    const result = await runTask(claimed(), deps(gate, { signal: stop.signal }));
    assert.equal(result.state, 'retrying');
    assert.ok(result.state === 'retrying' && result.kind === 'task.released');
    assert.equal(result.lastError, RELEASED_MESSAGE);
  });

  // Two user_id values: the task makes two calls, and holds its lease for both.
  const twoCalls = (urlTemplate: string) =>
    claimed({
      http: { ...http, urlTemplate },
      identifiers: [
        { type: 'user_id', value: 'u-1' },
        { type: 'user_id', value: 'u-2' },
      ],
    });

  it('makes no call for a task that stopped being ours before its first call', async () => {
    const { gate, deps } = setup();
    const leases: number[] = [];
    const result = await runTask(
      twoCalls(http.urlTemplate),
      deps(gate, {
        extendLease: (ms) => {
          leases.push(ms);
          return Promise.resolve(false); // acknowledged through the API meanwhile
        },
      }),
    );
    assert.deepEqual(leases, [2 * (http.timeoutMs + 1000) + 4000]);
    assert.ok(result.state === 'retrying' && result.kind === 'task.released');
  });

  it('releases a task without its second call when extending its lease for the wait finds it gone', async () => {
    const calls: string[] = [];
    const server = createServer((req, res) => {
      calls.push(req.url ?? '');
      res.statusCode = 204;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as AddressInfo;
      // One token a minute: after the first call's token the second call waits 60 s, past
      // the lease, so the task asks for a longer one, and the database says it is not ours.
      const { gate, deps } = setup({ ratePerSecond: 1 / 60, concurrency: 4 });
      const answers = [true, false];
      const result = await runTask(
        twoCalls(`http://127.0.0.1:${port}/erase/{{user_id}}`),
        deps(gate, {
          extendLease: () => Promise.resolve(answers.shift() ?? assert.fail('asked a third time')),
          onCall: () => undefined,
        }),
      );
      assert.deepEqual(calls, ['/erase/u-1']);
      assert.deepEqual(answers, []);
      assert.ok(result.state === 'retrying' && result.kind === 'task.released');
    } finally {
      server.close();
    }
  });
});
