// A claimed sync task waiting on its own target's gate (circuit breaker, rate limit) while
// this replica is alive, against real partners and the real PostgreSQL: its lease must not
// run out under it, or another replica retakes it (an attempt spent, a duplicate call). A
// task not yet called is handed back uncounted; one between its calls keeps its lease.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { RETAKEN_MESSAGE } from '../../services/sync-dispatcher/claim-sync-tasks.ts';
import { idempotencyKeyFor } from '../../services/sync-dispatcher/render-call.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import {
  eventually,
  reply,
  startDispatcher,
  startPartner,
  syncScenario,
  type Partner,
  type PartnerCall,
} from '../helpers/sync-partner.ts';

describe('sync dispatcher: waiting on the target gate', () => {
  let api: TestApi;
  let intake: string;
  let s: ReturnType<typeof syncScenario>;
  const partners: Partner[] = [];
  const held: http.ServerResponse[] = [];

  before(async () => {
    api = await startTestApi();
    intake = await api.token(['submit', 'read']);
    s = syncScenario(api, () => intake);
  });
  after(async () => {
    for (const r of held) r.destroy();
    for (const p of partners) await p.close();
    await api?.stop();
  });

  const allCompleted = (ids: string[]) =>
    eventually(`${ids.length} requests completed`, async () => {
      for (const id of ids) if ((await s.view(id)).status !== 'completed') return false;
      return true;
    });

  /** Every attempt a task counted is a call the partner received with its key, and no more. */
  async function assertAttemptsAreCalls(p: Partner, ids: string[], target: string, callsPerAttempt = 1) {
    for (const id of ids) {
      const task = await s.task(id, target);
      const keys = new Set(
        Array.from({ length: callsPerAttempt }, (_, i) =>
          idempotencyKeyFor(id, target, callsPerAttempt === 1 ? 0 : i),
        ),
      );
      const calls = p.calls.filter((c) => keys.has(String(c.headers['idempotency-key']))).length;
      assert.equal(task.state, 'acked');
      assert.equal(calls, task.attempts * callsPerAttempt, 'each attempt is one call per key, none repeated');
      const dispatches = (await s.journal(id)).filter((j) => j.kind === 'task.dispatched');
      assert.ok(
        dispatches.every((j) => j.detail['retaken'] === false),
        'never retaken: its holder was alive',
      );
      assert.notEqual(task.last_error, RETAKEN_MESSAGE);
    }
  }

  it('hands back, uncounted, a claimed task whose target breaker opened before its call: never retaken, no duplicate call', async () => {
    const type = await s.identifierType();
    const calls: { call: PartnerCall; res: http.ServerResponse }[] = [];
    const p = await startPartner((call, res) => {
      calls.push({ call, res });
      held.push(res);
    });
    partners.push(p);
    const t = await s.target(type, p.url, {}, { concurrency: 4, timeoutMs: 60_000 });
    // Replica A's breaker opens after 4 failures and stays open for the whole test; the
    // lease of a task it claims is short (timeoutMs, patched below, + 200 ms).
    const a = await startDispatcher(api, {
      SYNC_BREAKER_MIN_CALLS: '4',
      SYNC_BREAKER_FAILURE_PERCENT: '50',
      SYNC_BREAKER_WINDOW_MS: '600000',
      SYNC_BREAKER_COOLDOWN_MS: '600000',
      SYNC_LEASE_MARGIN_MS: '200',
      SYNC_SWEEP_INTERVAL_MS: '3600000',
      SYNC_SHUTDOWN_GRACE_MS: '0',
    });
    let b: Awaited<ReturnType<typeof startDispatcher>> | undefined;
    const locker = await api.db.pool.connect();
    try {
      const first: string[] = [];
      for (let i = 0; i < 4; i++) first.push(await s.submit(type));
      await eventually('four calls in flight, filling the concurrency', async () => calls.length === 4);
      // Calls in flight keep their 60 s timeout; a task claimed from now on gets a 1.2 s lease.
      const patched = await api.call('PATCH', `/v1/targets/${t}`, { body: { http: { timeoutMs: 1000 } } });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      const later: string[] = [];
      for (let i = 0; i < 4; i++) later.push(await s.submit(type));

      // Hold the next claim statement (it journals `task.dispatched`) while the breaker opens:
      // the window between a claim pass reading the gate and its tasks starting their calls.
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE journal IN SHARE MODE');
      reply(500, 'down')(calls[0]!.call, calls[0]!.res);
      await eventually('a claim for the freed slot is under way', async () => {
        // The claim statement reads targets and writes the journal; nothing else does both.
        const { rows } = await locker.query(
          `SELECT 1 FROM pg_locks w
             JOIN pg_locks h ON h.pid = w.pid AND h.granted AND h.relation = 'targets'::regclass
            WHERE NOT w.granted AND w.relation = 'journal'::regclass`,
        );
        return rows.length > 0;
      });
      for (const c of calls.slice(1, 4)) reply(500, 'down')(c.call, c.res);
      await eventually('the breaker of replica A opens', async () =>
        (await a.metric('erasure_sync_breaker_state', { target: t })) === 2 ? true : undefined,
      );
      await locker.query('COMMIT');

      const claimed = await eventually('one of the later tasks was claimed', async () => {
        for (const id of later)
          if ((await s.journal(id)).some((j) => j.kind === 'task.dispatched')) return id;
        return undefined;
      });
      // It cannot call while A's breaker is open. Handed back, it holds no lease; kept, its
      // lease runs out here.
      await eventually('the claimed task holds no live lease', async () => {
        const { rows } = await api.db.pool.query(
          `SELECT 1 FROM erasure_tasks
            WHERE request_id = $1 AND target = $2 AND lease_owner IS NOT NULL AND next_attempt_at > now()`,
          [claimed, t],
        );
        return rows.length === 0;
      });
      const back = await s.task(claimed, t);
      const backStatus = (
        await api.db.pool.query<{ status: string }>('SELECT status FROM erasure_requests WHERE id = $1', [
          claimed,
        ])
      ).rows[0]!.status;

      // Replica B (its own breaker closed) takes over while A's breaker is still open.
      p.setHandler(reply(200));
      b = await startDispatcher(api);
      await allCompleted([...first, ...later]);
      await assertAttemptsAreCalls(p, [...first, ...later], t);
      for (const id of later) assert.equal((await s.task(id, t)).attempts, 1);
      assert.equal(back.state, 'pending', 'handed back where the claim found it');
      assert.equal(back.attempts, 0, 'the claim made no call, so it counts no attempt');
      assert.equal(back.lease_owner, null);
      assert.equal(back.dispatched_at, null, 'never called');
      const released = (await s.journal(claimed)).filter((j) => j.kind === 'task.released');
      assert.deepEqual(
        released.map((j) => [j.detail['cause'], j.detail['attempt'], j.detail['called']]),
        [['breaker_open', 1, false]],
      );
      // The claim had moved the request to in_progress; nothing was sent for it, so it is
      // scheduled again (still cancellable, still a request others for its subject link to).
      assert.equal(backStatus, 'scheduled');
      assert.deepEqual(
        (await s.journal(claimed))
          .filter((j) => j.kind === 'request.scheduled')
          .map((j) => j.detail['cause']),
        ['handed_back'],
      );
      await api.call('PATCH', `/v1/targets/${t}`, { body: { paused: true } });
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      locker.release();
      await a.stop();
      await b?.stop();
    }
    assert.doesNotMatch(a.logs(), /WARN_SYNC_STALE_RESULT/, 'A never called a task it no longer held');
  });

  it('keeps the lease of a task waiting for a rate token between its calls: no other replica calls it again', async () => {
    const type = await s.identifierType();
    const p = await startPartner(reply(200));
    partners.push(p);
    // One call every 4 s: the task's second call waits longer than the lease its claim
    // extended for two calls (2 × (300 + 1000) + 100 ms).
    const t = await s.target(type, p.url, {}, { rateLimitPerSecond: 0.25, concurrency: 1, timeoutMs: 300 });
    const env = { SYNC_LEASE_MARGIN_MS: '100' };
    const a = await startDispatcher(api, env);
    let b: Awaited<ReturnType<typeof startDispatcher>> | undefined;
    try {
      const res = await api.call('POST', '/v1/erasure-requests', {
        token: intake,
        headers: { 'idempotency-key': `two-values-${Date.now()}` },
        body: {
          identifiers: [
            { type, value: 'one' },
            { type, value: 'two' },
          ],
          reason: 'gdpr_art17',
        },
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      const id = res.body.id as string;
      await eventually('the first of its two calls arrives', async () => p.calls.length === 1);
      // Another replica, free to retake the task as soon as A's lease runs out.
      b = await startDispatcher(api, env);
      await allCompleted([id]);
      await assertAttemptsAreCalls(p, [id], t, 2);
      assert.equal((await s.task(id, t)).attempts, 1);
      await api.call('PATCH', `/v1/targets/${t}`, { body: { paused: true } });
    } finally {
      await a.stop();
      await b?.stop();
    }
  });
});
