// The sync dispatcher under failure, against real partners and the real PostgreSQL: the
// circuit breaker isolating a failing target, `after` ordering (and a failed prerequisite),
// a dispatcher stopped or killed mid-call (the retry carries the same Idempotency-Key), and
// two replicas never calling one task at once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RELEASED_MESSAGE } from '../../services/sync-dispatcher/run-task.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import {
  eventually,
  FAST_ENV,
  reply,
  sleep,
  startDispatcher,
  startPartner,
  syncScenario,
  type Partner,
  type PartnerHandler,
} from '../helpers/sync-partner.ts';

describe('sync dispatcher: resilience', () => {
  let api: TestApi;
  let intake: string;
  let s: ReturnType<typeof syncScenario>;
  const partners: Partner[] = [];
  const held: http.ServerResponse[] = [];
  const partner = async (h?: PartnerHandler) => {
    const p = await startPartner(h);
    partners.push(p);
    return p;
  };
  const park = async (...names: string[]) => {
    for (const name of names) await api.call('PATCH', `/v1/targets/${name}`, { body: { paused: true } });
  };
  const status = async (id: string) => (await s.view(id)).status as string;
  const allSettled = (ids: string[], want: string) =>
    eventually(`${ids.length} requests ${want}`, async () => {
      for (const id of ids) if ((await status(id)) !== want) return false;
      return true;
    });

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

  it('opens the breaker of an always-500 target, leaves another target unaffected, and closes after a good probe', async () => {
    const cooldownMs = 3000;
    const d = await startDispatcher(api, {
      SYNC_BREAKER_MIN_CALLS: '4',
      SYNC_BREAKER_FAILURE_PERCENT: '50',
      SYNC_BREAKER_WINDOW_MS: '10000',
      SYNC_BREAKER_COOLDOWN_MS: String(cooldownMs),
    });
    try {
      const downType = await s.identifierType();
      const upType = await s.identifierType();
      const downP = await partner(reply(500, 'boom'));
      const upP = await partner(async (call, res) => {
        await sleep(20);
        reply(200)(call, res);
      });
      const down = await s.target(downType, downP.url);
      const up = await s.target(upType, upP.url);
      const downIds: string[] = [];
      const upIds: string[] = [];
      for (let i = 0; i < 6; i++) {
        downIds.push(await s.submit(downType));
        upIds.push(await s.submit(upType));
      }
      await eventually('the breaker of the failing target opens', async () =>
        (await d.metric('erasure_sync_breaker_state', { target: down })) === 2 ? true : undefined,
      );
      const atOpen = downP.calls.length;
      assert.ok(
        atOpen >= 4 && atOpen <= 4 + 4,
        `4 failures open it, plus at most the calls in flight: ${atOpen}`,
      );
      // The breaker opened once at least 4 calls had failed, so no earlier than the 4th call
      // arrived, and it lets its probe through only the cool-down after opening.
      const noProbeBefore = downP.calls[3]!.at + cooldownMs;
      await allSettled(upIds, 'completed');
      assert.equal(
        await d.metric('erasure_sync_breaker_state', { target: up }),
        0,
        'the other target is untouched',
      );
      await sleep(1000);
      // Judged by arrival time, not by the count now: on a slow machine the steps above can
      // outlast the cool-down, and the probe that then arrives is expected.
      const whileOpen = downP.calls.slice(atOpen).filter((c) => c.at < noProbeBefore);
      assert.equal(whileOpen.length, 0, 'no calls while open (retries would otherwise come every ≤ 200 ms)');
      for (const id of downIds) assert.equal((await s.task(id, down)).state === 'acked', false);
      assert.match(d.logs(), /WARN_SYNC_BREAKER_OPEN/);

      downP.setHandler(reply(200));
      await allSettled(downIds, 'completed');
      assert.equal(
        await d.metric('erasure_sync_breaker_state', { target: down }),
        0,
        'closed after the probe',
      );
      await park(down, up);
    } finally {
      await d.stop();
    }
  });

  it('calls an `after` chain of three targets in order, per request; a failed prerequisite fails its dependents uncalled', async () => {
    const d = await startDispatcher(api);
    try {
      const type = await s.identifierType();
      const answered = new Map<string, number>(); // `${target}/${requestId}` → when its answer was sent
      const ordered =
        (name: string) => async (call: Parameters<PartnerHandler>[0], res: http.ServerResponse) => {
          await sleep(50);
          answered.set(`${name}/${String(call.headers['x-erasure-request-id'])}`, Date.now());
          reply(200)(call, res);
        };
      const [pa, pb, pc] = [
        await partner(ordered('a')),
        await partner(ordered('b')),
        await partner(ordered('c')),
      ];
      const a = await s.target(type, pa.url);
      const b = await s.target(type, pb.url, { after: [a] });
      const c = await s.target(type, pc.url, { after: [b] });
      const ids = [await s.submit(type), await s.submit(type), await s.submit(type)];
      await allSettled(ids, 'completed');
      for (const id of ids) {
        const arrived = (p: Partner) => p.calls.find((x) => x.headers['x-erasure-request-id'] === id)!.at;
        assert.ok(arrived(pb) >= answered.get(`a/${id}`)!, 'b is called only after a answered');
        assert.ok(arrived(pc) >= answered.get(`b/${id}`)!, 'c is called only after b answered');
      }

      const type2 = await s.identifierType();
      const [qa, qb, qc] = [
        await partner(reply(400, 'nope')),
        await partner(reply(200)),
        await partner(reply(200)),
      ];
      const a2 = await s.target(type2, qa.url);
      const b2 = await s.target(type2, qb.url, { after: [a2] });
      const c2 = await s.target(type2, qc.url, { after: [b2] });
      const id = await s.submit(type2);
      await allSettled([id], 'needs_attention');
      assert.equal(qb.calls.length + qc.calls.length, 0, 'dependents of a failed target are never called');
      assert.match(
        (await s.task(id, b2)).last_error,
        new RegExp(`prerequisite target ${a2} did not complete`),
      );
      assert.match(
        (await s.task(id, c2)).last_error,
        new RegExp(`prerequisite target ${b2} did not complete`),
      );
      const failures = (await s.journal(id)).filter((j) => j.kind === 'task.failed').map((j) => j.detail);
      assert.deepEqual(
        failures.map((f) => [f['target'], f['cause']]),
        [
          [a2, 'http_4xx'],
          [b2, 'prerequisite_failed'],
          [c2, 'prerequisite_failed'],
        ],
      );
      await park(a, b, c, a2, b2, c2);
    } finally {
      await d.stop();
    }
  });

  it('a dispatcher stopped mid-call releases the task; the next one calls again with the same Idempotency-Key', async () => {
    const type = await s.identifierType();
    const p = await partner((_call, res) => void held.push(res)); // holds every call
    const t = await s.target(type, p.url, {}, { timeoutMs: 60_000 });
    const first = await startDispatcher(api, { SYNC_SHUTDOWN_GRACE_MS: '0' });
    const id = await s.submit(type);
    await eventually('the first call arrives', async () => p.calls.length === 1);
    await first.stop();
    const released = await s.task(id, t);
    assert.equal(released.state, 'retrying');
    assert.equal(released.last_error, RELEASED_MESSAGE);
    assert.equal(released.lease_owner, null);
    assert.ok((await s.journal(id)).some((j) => j.kind === 'task.released'));

    p.setHandler(reply(200));
    const second = await startDispatcher(api);
    try {
      await allSettled([id], 'completed');
    } finally {
      await second.stop();
    }
    assert.equal(p.calls.length, 2);
    assert.equal(p.calls[1]!.headers['idempotency-key'], p.calls[0]!.headers['idempotency-key']);
    assert.equal((await s.task(id, t)).attempts, 2);

    // With a grace period, a call in flight at stop() finishes and its answer is kept.
    const graceful = await partner(async (call, res) => {
      await sleep(300);
      reply(200)(call, res);
    });
    const t2 = await s.target(await s.identifierType(), graceful.url);
    const type2 = (await api.call('GET', `/v1/targets/${t2}`)).body.identifierTypes[0];
    const third = await startDispatcher(api, { SYNC_SHUTDOWN_GRACE_MS: '5000' });
    const id2 = await s.submit(type2);
    await eventually('the call arrives', async () => graceful.calls.length === 1);
    await third.stop();
    assert.equal((await s.task(id2, t2)).outcome, 'deleted');
    await park(t, t2);
  });

  it('drops a late answer when the task was acknowledged through the API during the call', async () => {
    const type = await s.identifierType();
    const p = await partner((_call, res) => void held.push(res));
    const t = await s.target(type, p.url, {}, { timeoutMs: 60_000 });
    const d = await startDispatcher(api);
    try {
      const id = await s.submit(type);
      await eventually('the call arrives', async () => p.calls.length === 1);
      const ackToken = await api.token(['ack'], { target: t });
      const ack = await api.call('POST', '/v1/acks', {
        token: ackToken,
        body: { requestId: id, target: t, status: 'not_found' },
      });
      assert.equal(ack.status, 200, JSON.stringify(ack.body));
      reply(200)(p.calls[0]!, held.pop()!);
      await eventually('the late answer is dropped', async () =>
        (await d.metric('erasure_sync_task_outcomes_total', { target: t, outcome: 'stale' })) === 1
          ? true
          : undefined,
      );
      const task = await s.task(id, t);
      assert.equal(task.state, 'acked');
      assert.equal(task.outcome, 'not_found', 'the first terminal outcome stands');
      assert.equal(await status(id), 'completed');
      assert.match(d.logs(), /WARN_SYNC_STALE_RESULT/);
      await park(t);
    } finally {
      await d.stop();
    }
  });

  it('a dispatcher killed mid-call (SIGKILL) loses its lease; another retakes the task with the same Idempotency-Key', async () => {
    const type = await s.identifierType();
    const p = await partner((_call, res) => void held.push(res));
    const t = await s.target(type, p.url, {}, { timeoutMs: 1000 });
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, '..', 'helpers', 'run-sync-dispatcher.ts')],
      {
        env: {
          ...process.env,
          ...FAST_ENV,
          DATABASE_URL: api.db.url,
          SYNC_LEASE_MARGIN_MS: '500',
          LOG_LEVEL: 'error',
        },
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    const childId = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        const m = /ready (\S+)/.exec(d.toString());
        if (m) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`dispatcher child exited early: ${code}`)));
    });
    const id = await s.submit(type);
    await eventually('the killed replica is calling', async () => p.calls.length === 1);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const orphan = await s.task(id, t);
    assert.equal(orphan.state, 'dispatched');
    assert.equal(orphan.lease_owner, childId, 'the dead replica still holds the lease');

    p.setHandler(reply(200));
    const survivor = await startDispatcher(api);
    try {
      await allSettled([id], 'completed');
    } finally {
      await survivor.stop();
    }
    assert.equal(p.calls.length, 2);
    assert.equal(p.calls[1]!.headers['idempotency-key'], p.calls[0]!.headers['idempotency-key']);
    const dispatches = (await s.journal(id)).filter((j) => j.kind === 'task.dispatched').map((j) => j.detail);
    assert.deepEqual(
      dispatches.map((x) => [x['attempt'], x['retaken']]),
      [
        [1, false],
        [2, true],
      ],
    );
    await park(t);
  });

  it('two replicas share the work and never call the same task at once, within the target concurrency', async () => {
    const type = await s.identifierType();
    const open = new Set<string>();
    let overlaps = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const p = await partner(async (call, res) => {
      const key = String(call.headers['idempotency-key']);
      if (open.has(key)) overlaps += 1;
      open.add(key);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await sleep(40);
      inFlight -= 1;
      open.delete(key);
      reply(200)(call, res);
    });
    const t = await s.target(type, p.url, {}, { concurrency: 8 });
    const env = { SYNC_REPLICAS: '2' };
    const [r1, r2] = [await startDispatcher(api, env), await startDispatcher(api, env)];
    try {
      const ids: string[] = [];
      for (let i = 0; i < 40; i++) ids.push(await s.submit(type));
      await allSettled(ids, 'completed');
      const calls1 = (await r1.metric('erasure_sync_calls_total', { target: t, class: '2xx' })) ?? 0;
      const calls2 = (await r2.metric('erasure_sync_calls_total', { target: t, class: '2xx' })) ?? 0;
      assert.equal(overlaps, 0, 'no task was called by both replicas at once');
      assert.equal(p.calls.length, 40, 'each task called exactly once');
      assert.equal(new Set(p.calls.map((c) => c.headers['idempotency-key'])).size, 40);
      assert.equal(calls1 + calls2, 40);
      assert.ok(calls1 > 0 && calls2 > 0, `both replicas worked: ${calls1} + ${calls2}`);
      assert.ok(maxInFlight <= 8, `4 per replica at most: saw ${maxInFlight}`);
      await park(t);
    } finally {
      await r1.stop();
      await r2.stop();
    }
  });
});
