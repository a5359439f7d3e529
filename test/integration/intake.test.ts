// Intake API against the real PostgreSQL: the accept transaction, idempotency under
// concurrency, linking, batches, cancel, targets, tokens, and log redaction.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { loadApiConfig } from '../../services/api/config.ts';
import { start } from '../../services/api/index.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { claimOutboxBatch } from '../../services/relay/claim-outbox-batch.ts';
import { BUILTIN_TYPES } from '../../services/shared/identifiers.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';

const submit = (api: TestApi, key: string, body: unknown, token?: string) =>
  api.call('POST', '/v1/erasure-requests', { body, token, headers: { 'idempotency-key': key } });

const gdpr = (userId: string, extra: Record<string, unknown> = {}) => ({
  identifiers: [{ type: 'user_id', value: userId }],
  reason: 'gdpr_art17',
  ...extra,
});

/** Waits until a statement of another session that contains every fragment waits on a lock. */
async function waitForLockWait(api: TestApi, ...fragments: string[]): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await api.db.pool.query(
      `SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    if (rows.some((r) => fragments.every((f) => r.query.includes(f)))) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no statement with ${fragments.join(', ')} waited on a lock`);
}

/** The statuses of a request's outbox rows (its erasure event), in the order written. */
async function outboxStatuses(api: TestApi, requestId: string): Promise<string[]> {
  const { rows } = await api.db.pool.query(`SELECT status FROM outbox WHERE request_id = $1 ORDER BY id`, [
    requestId,
  ]);
  return rows.map((r) => r.status as string);
}

async function count(api: TestApi, table: string): Promise<number> {
  const { rows } = await api.db.pool.query(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0].n;
}

describe('intake API', () => {
  let api: TestApi;
  before(async () => {
    api = await startTestApi();
    for (const t of [
      { name: 'orders-db', kind: 'async_event', identifierTypes: ['user_id', 'email'], ackSlaSeconds: 3600 },
      { name: 'profiles', kind: 'async_event', identifierTypes: ['user_id'], ackSlaSeconds: 3600 },
      {
        name: 'crm',
        kind: 'sync_http',
        identifierTypes: ['email'],
        http: {
          urlTemplate: 'http://127.0.0.1:9/users/{{email}}',
          headers: { Authorization: 'Bearer secret-value' },
        },
      },
    ]) {
      const res = await api.call('POST', '/v1/targets', { body: t });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
  });
  after(async () => api.stop());

  it('accepts a request: request, one task per matching target, journal entry and outbox event in one commit', async () => {
    const res = await submit(api, 'accept-1', {
      identifiers: [
        { type: 'user_id', value: '42' },
        { type: 'email', value: 'Someone@Example.COM' },
      ],
      reason: 'gdpr_art17',
    });
    assert.equal(res.status, 202);
    assert.equal(res.body.status, 'scheduled');
    assert.equal(res.body.links.self, `/v1/erasure-requests/${res.body.id}`);
    assert.equal(res.headers.get('location'), res.body.links.self);
    const id = res.body.id;

    const { rows: req } = await api.db.pool.query(
      `SELECT identifiers, received_at, deadline, priority FROM erasure_requests WHERE id = $1`,
      [id],
    );
    assert.deepEqual(req[0].identifiers, [
      { type: 'user_id', value: '42' },
      { type: 'email', value: 'someone@example.com' },
    ]);
    assert.equal(req[0].priority, 'legal');
    // GDPR Art. 12(3): one calendar month after receipt.
    const expected = new Date(req[0].received_at);
    expected.setUTCMonth(expected.getUTCMonth() + 1);
    assert.equal(
      Math.abs(new Date(res.body.deadline).getTime() - expected.getTime()) < 1000 * 3600 * 24,
      true,
    );

    const tasks = await api.db.pool.query(
      `SELECT target, state FROM erasure_tasks WHERE request_id = $1 ORDER BY 1`,
      [id],
    );
    assert.deepEqual(
      tasks.rows.map((t) => [t.target, t.state]),
      [
        ['crm', 'pending'],
        ['orders-db', 'pending'],
        ['profiles', 'pending'],
      ],
    );
    const outbox = await api.db.pool.query(
      `SELECT topic, event_key, payload FROM outbox WHERE request_id = $1`,
      [id],
    );
    assert.equal(outbox.rowCount, 1);
    assert.equal(outbox.rows[0].topic, 'privacy.erasure.requested.v1');
    assert.match(outbox.rows[0].event_key, /^[0-9a-f]{64}$/, 'keyed by the subject HMAC, not a plain value');
    assert.deepEqual(
      outbox.rows[0].payload.targets,
      ['orders-db', 'profiles'],
      'async targets expected to ack',
    );
    const journal = await api.db.pool.query(`SELECT kind, detail FROM journal WHERE request_id = $1`, [id]);
    assert.deepEqual(
      journal.rows.map((j) => j.kind),
      ['request.accepted'],
    );
    assert.doesNotMatch(JSON.stringify(journal.rows[0].detail), /someone|42/);

    const view = await api.call('GET', `/v1/erasure-requests/${id}`);
    assert.equal(view.status, 200);
    assert.equal(view.body.tasks.length, 3);
    assert.equal(view.body.reason, 'gdpr_art17');
    assert.ok(view.body.journal.length >= 1);
  });

  it('answers the original request for the same key and body, 409 for another body, and writes nothing more', async () => {
    const first = await submit(api, 'idem-1', gdpr('100'));
    const again = await submit(api, 'idem-1', { ...gdpr(' 100 ') }); // normalises to the same body
    assert.equal(again.status, 202);
    assert.equal(again.body.id, first.body.id);
    const before = await count(api, 'erasure_requests');
    const other = await submit(api, 'idem-1', gdpr('101'));
    assert.equal(other.status, 409);
    assert.equal(other.body.code, 'ERR_IDEMPOTENCY_CONFLICT');
    assert.equal(await count(api, 'erasure_requests'), before);
  });

  it('creates exactly one request from 50 parallel submissions with the same key', async () => {
    const before = await count(api, 'erasure_requests');
    const outboxBefore = await count(api, 'outbox');
    const results = await Promise.all(
      Array.from({ length: 50 }, () => submit(api, 'race-1', gdpr('race-subject'))),
    );
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([202]));
    assert.equal(new Set(results.map((r) => r.body.id)).size, 1);
    assert.equal(await count(api, 'erasure_requests'), before + 1);
    assert.equal(await count(api, 'outbox'), outboxBefore + 1);
  });

  it('links a second request for a subject already in flight instead of fanning out twice', async () => {
    const first = await submit(api, 'link-1', gdpr('linked-subject'));
    const tasksBefore = await count(api, 'erasure_tasks');
    const outboxBefore = await count(api, 'outbox');
    const second = await submit(api, 'link-2', { ...gdpr('linked-subject'), reason: 'ccpa' });
    assert.equal(second.status, 202);
    assert.equal(second.body.linkedTo, first.body.id);
    assert.notEqual(second.body.id, first.body.id);
    assert.equal(await count(api, 'erasure_tasks'), tasksBefore);
    assert.equal(await count(api, 'outbox'), outboxBefore);
    const view = await api.call('GET', `/v1/erasure-requests/${second.body.id}`);
    assert.equal(view.body.linkedTo, first.body.id);
    assert.equal(view.body.tasks.length, 2, "shows the primary's tasks");
    // Parallel requests for one new subject with different keys: one fan-out, the rest linked.
    const racers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => submit(api, `link-race-${i}`, gdpr('linked-race-subject'))),
    );
    assert.equal(racers.filter((r) => r.status === 202 && !r.body.linkedTo).length, 1);
    assert.equal(racers.filter((r) => r.status === 202 && r.body.linkedTo).length, 9);
  });

  it('never links across owners: each owner’s request fans out itself and stays its own', async () => {
    const alice = await api.token(['submit', 'read'], { owner: 'link-alice' });
    const bob = await api.token(['submit', 'read'], { owner: 'link-bob' });
    const a = await submit(api, 'owners-1', gdpr('two-owner-subject', { priority: 'bulk' }), alice);
    const tasksBefore = await count(api, 'erasure_tasks');
    const b = await submit(api, 'owners-1', gdpr('two-owner-subject'), bob);
    assert.equal(b.status, 202);
    assert.notEqual(b.body.id, a.body.id);
    assert.equal(b.body.linkedTo ?? null, null, 'not linked to another owner’s request');
    assert.equal(await count(api, 'erasure_tasks'), tasksBefore + 2, 'its own fan-out');
    const bView = await api.call('GET', `/v1/erasure-requests/${b.body.id}`, { token: bob });
    assert.ok(
      bView.body.journal.every((e: { kind: string }) => e.kind !== 'request.linked'),
      'no trace of the other owner’s request',
    );
    // Alice's request is neither moved forward by Bob's nor kept from being cancelled.
    const aView = await api.call('GET', `/v1/erasure-requests/${a.body.id}`, { token: alice });
    assert.ok(aView.body.journal.every((e: { kind: string }) => e.kind !== 'request.escalated'));
    const cancel = await api.call('POST', `/v1/erasure-requests/${a.body.id}/cancel`, { token: alice });
    assert.equal(cancel.status, 200);
    // The same owner's second request still links (one fan-out per subject and owner), to
    // its own owner's first request even while another owner's is in flight too (ids are
    // random: six subjects make a wrong pick show up almost surely).
    for (let k = 0; k < 6; k++) {
      const subject = gdpr(`two-owner-subject-${k}`);
      await submit(api, `owners-a-${k}`, subject, alice);
      const own = await submit(api, `owners-b-${k}`, subject, bob);
      const again = await submit(api, `owners-b2-${k}`, subject, bob);
      assert.equal(again.body.linkedTo, own.body.id, `subject ${k}`);
    }
  });

  it('never links to a primary a cancel is committing; the new request fans out itself', async () => {
    const body = gdpr('link-cancel-race');
    const primary = await submit(api, 'link-cancel-1', body);
    // Hold the primary's task row (as a dispatcher or an ack writer briefly would) so the
    // cancel stops after its "nothing linked" check and before its commit.
    const holder = await api.db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM erasure_tasks WHERE request_id = $1 FOR UPDATE', [primary.body.id]);
      const cancelling = api.call('POST', `/v1/erasure-requests/${primary.body.id}/cancel`);
      await waitForLockWait(api, 'UPDATE erasure_tasks');
      const second = submit(api, 'link-cancel-2', { ...body, reason: 'ccpa' });
      await waitForLockWait(api, 'in_flight');
      await holder.query('COMMIT');
      const [cancelled, accepted] = await Promise.all([cancelling, second]);
      assert.equal(cancelled.status, 200);
      assert.equal(accepted.status, 202);
      assert.equal(accepted.body.linkedTo ?? null, null, 'not linked to a cancelled request');
      assert.deepEqual(await outboxStatuses(api, accepted.body.id), ['pending'], 'its own erasure event');
    } finally {
      holder.release();
    }
  });

  it('cancels a linked request only while its primary is undispatched, and shows it cancelled', async () => {
    const primary = await submit(api, 'link-cxl-1', gdpr('link-cxl-subject'));
    const early = await submit(api, 'link-cxl-2', { ...gdpr('link-cxl-subject'), reason: 'ccpa' });
    const late = await submit(api, 'link-cxl-3', { ...gdpr('link-cxl-subject'), reason: 'account_deletion' });
    assert.equal(early.body.linkedTo, primary.body.id);
    const withdrawn = await api.call('POST', `/v1/erasure-requests/${early.body.id}/cancel`);
    assert.equal(withdrawn.status, 200);
    const shown = await api.call('GET', `/v1/erasure-requests/${early.body.id}`);
    assert.equal(shown.body.status, 'cancelled');
    assert.equal(shown.body.completedAt, null);
    const listed = await api.call('GET', '/v1/erasure-requests?status=cancelled&limit=500');
    assert.equal(
      listed.body.items.some((i: { id: string }) => i.id === early.body.id),
      true,
    );
    const primaryRow = await api.db.pool.query(`SELECT status FROM erasure_requests WHERE id = $1`, [
      primary.body.id,
    ]);
    assert.equal(primaryRow.rows[0].status, 'scheduled', 'the primary goes on');
    // The primary is dispatched: a request linked to it is being erased too.
    await api.db.pool.query(
      `UPDATE erasure_tasks SET state = 'dispatched', dispatched_at = now() WHERE request_id = $1 AND target = 'profiles'`,
      [primary.body.id],
    );
    await api.db.pool.query(`UPDATE erasure_requests SET status = 'in_progress' WHERE id = $1`, [
      primary.body.id,
    ]);
    const refused = await api.call('POST', `/v1/erasure-requests/${late.body.id}/cancel`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.reasonCode, 'not_cancellable_status');
    assert.equal((await api.call('GET', `/v1/erasure-requests/${late.body.id}`)).body.status, 'in_progress');
  });

  it('never links to a request already dispatched: a partner may have deleted before the new one came', async () => {
    const body = gdpr('link-dispatched-subject');
    const first = await submit(api, 'link-disp-1', body);
    // The first request went out, and one partner has already deleted and acked.
    await api.db.pool.query(
      `UPDATE erasure_tasks SET state = 'dispatched', dispatched_at = now() WHERE request_id = $1`,
      [first.body.id],
    );
    await api.db.pool.query(
      `UPDATE erasure_tasks SET state = 'acked', outcome = 'deleted', acked_at = now()
        WHERE request_id = $1 AND target = 'profiles'`,
      [first.body.id],
    );
    await api.db.pool.query(`UPDATE erasure_requests SET status = 'in_progress' WHERE id = $1`, [
      first.body.id,
    ]);
    const second = await submit(api, 'link-disp-2', { ...body, reason: 'ccpa' });
    assert.equal(second.status, 202);
    assert.equal(second.body.linkedTo ?? null, null, 'its own fan-out, not the acks of the first');
    const tasks = await api.db.pool.query(
      `SELECT target, state FROM erasure_tasks WHERE request_id = $1 ORDER BY target`,
      [second.body.id],
    );
    assert.deepEqual(
      tasks.rows.map((r) => [r.target, r.state]),
      [
        ['orders-db', 'pending'],
        ['profiles', 'pending'],
      ],
    );
    assert.deepEqual(await outboxStatuses(api, second.body.id), ['pending'], 'its own erasure event');
    // A third one, while the second is undispatched, links to the second.
    const third = await submit(api, 'link-disp-3', { ...body, reason: 'account_deletion' });
    assert.equal(third.body.linkedTo, second.body.id);
  });

  it("writes a cancelled request's completed event in the cancel: its tasks cancelled, none for a linked one", async () => {
    const primary = await submit(api, 'cxl-event-1', gdpr('cxl-event-subject'));
    const linked = await submit(api, 'cxl-event-2', { ...gdpr('cxl-event-subject'), reason: 'ccpa' });
    assert.equal(linked.body.linkedTo, primary.body.id);
    const completedEvents = async (id: string) =>
      (
        await api.db.pool.query(
          `SELECT event_key, status, payload FROM outbox
            WHERE request_id = $1 AND topic = 'privacy.erasure.completed.v1' ORDER BY id`,
          [id],
        )
      ).rows;
    const { rows: subject } = await api.db.pool.query(
      `SELECT encode(subject_hash, 'hex') AS key FROM erasure_requests WHERE id = $1`,
      [primary.body.id],
    );
    const sameInstant = (a: string, b: string) => Math.abs(Date.parse(a) - Date.parse(b)) < 1;

    // A linked request withdrawn: its own event, with no outcomes (it was routed nowhere).
    const withdrawn = await api.call('POST', `/v1/erasure-requests/${linked.body.id}/cancel`);
    assert.equal(withdrawn.status, 200);
    const [l, ...moreL] = await completedEvents(linked.body.id);
    assert.equal(moreL.length, 0);
    assert.equal(l.status, 'pending', 'for the relay to publish');
    assert.equal(l.event_key, subject[0].key, 'keyed by the subject, after its earlier events');
    assert.deepEqual(
      { ...l.payload, completedAt: 'x' },
      {
        requestId: linked.body.id,
        completedAt: 'x',
        status: 'cancelled',
        outcomes: [],
      },
    );
    assert.ok(sameInstant(l.payload.completedAt, withdrawn.body.cancelledAt), 'completedAt: when cancelled');

    // The primary, once nothing is linked to it any more: its tasks, every one cancelled.
    const cancelled = await api.call('POST', `/v1/erasure-requests/${primary.body.id}/cancel`);
    assert.equal(cancelled.status, 200);
    const [p, ...moreP] = await completedEvents(primary.body.id);
    assert.equal(moreP.length, 0);
    assert.equal(p.status, 'pending', "not cancelled with the request's erasure event");
    assert.equal(p.event_key, subject[0].key);
    assert.deepEqual(
      { ...p.payload, completedAt: 'x' },
      {
        requestId: primary.body.id,
        completedAt: 'x',
        status: 'cancelled',
        outcomes: ['orders-db', 'profiles'].map((target) => ({
          target,
          state: 'cancelled',
          outcome: null,
          ackedAt: null,
          attempts: 0,
        })),
      },
    );
    assert.ok(sameInstant(p.payload.completedAt, cancelled.body.cancelledAt));

    // Cancelling again, or a cancel refused, writes no event.
    assert.equal((await api.call('POST', `/v1/erasure-requests/${primary.body.id}/cancel`)).status, 200);
    assert.equal((await completedEvents(primary.body.id)).length, 1, 'once per request');
    const late = await submit(api, 'cxl-event-3', gdpr('cxl-event-subject-2'));
    await api.db.pool.query(
      `UPDATE erasure_tasks SET state = 'dispatched' WHERE request_id = $1 AND target = 'profiles'`,
      [late.body.id],
    );
    assert.equal((await api.call('POST', `/v1/erasure-requests/${late.body.id}/cancel`)).status, 409);
    assert.equal((await completedEvents(late.body.id)).length, 0);
  });

  it('a cancel of a linked request never deadlocks with the ack that settles its primary', async () => {
    const primary = await submit(api, 'settle-race-1', gdpr('settle-race-subject'));
    const linked = await submit(api, 'settle-race-2', { ...gdpr('settle-race-subject'), reason: 'ccpa' });
    assert.equal(linked.body.linkedTo, primary.body.id);
    const ack = async (target: string) =>
      api.call('POST', '/v1/acks', {
        token: await api.token(['ack'], { target }),
        body: { requestId: primary.body.id, target, status: 'deleted' },
      });
    assert.equal((await ack('orders-db')).status, 200);
    // Hold the last task so the ack that settles the primary stops holding the primary's lock;
    // the cancel then waits for that lock too. Settling updates the linked request: a cancel
    // that had locked the linked request first would wait on the ack while the ack waits on it.
    const holder = await api.db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(
        `SELECT 1 FROM erasure_tasks WHERE request_id = $1 AND target = 'profiles' FOR UPDATE`,
        [primary.body.id],
      );
      const settling = ack('profiles');
      await waitForLockWait(api, 'erasure_tasks', 'FOR UPDATE OF t');
      const cancelling = api.call('POST', `/v1/erasure-requests/${linked.body.id}/cancel`);
      await waitForLockWait(api, 'erasure_requests', 'FOR SHARE');
      await holder.query('COMMIT');
      const [settled, refused] = await Promise.all([settling, cancelling]);
      assert.equal(settled.status, 200, JSON.stringify(settled.body));
      assert.equal(settled.body.requestStatus, 'completed');
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.equal(refused.body.reasonCode, 'not_cancellable_status');
    } finally {
      holder.release();
    }
    const { rows } = await api.db.pool.query(`SELECT status FROM erasure_requests WHERE id = $1`, [
      linked.body.id,
    ]);
    assert.equal(rows[0].status, 'completed', 'settled with its primary');
  });

  it('brings a primary forward when a request linked to it is due earlier or ranks higher', async () => {
    const later = new Date(Date.now() + 80 * 86_400_000).toISOString();
    const primary = await submit(api, 'escalate-1', {
      identifiers: [{ type: 'user_id', value: 'escalate-subject' }],
      reason: 'retention_expiry',
      notBefore: later,
    });
    assert.equal(primary.status, 202);
    const before = await api.db.pool.query(
      `SELECT priority, not_before FROM erasure_requests WHERE id = $1`,
      [primary.body.id],
    );
    assert.equal(before.rows[0].priority, 'bulk');
    const urgent = await submit(api, 'escalate-2', gdpr('escalate-subject'));
    assert.equal(urgent.body.linkedTo, primary.body.id);
    const req = await api.db.pool.query(`SELECT priority, not_before FROM erasure_requests WHERE id = $1`, [
      primary.body.id,
    ]);
    assert.equal(req.rows[0].not_before, null, 'due now');
    assert.equal(req.rows[0].priority, 'legal');
    const tasks = await api.db.pool.query(
      `SELECT bool_and(next_attempt_at <= now()) AS due, max(priority)::int AS rank FROM erasure_tasks WHERE request_id = $1`,
      [primary.body.id],
    );
    assert.deepEqual(tasks.rows[0], { due: true, rank: 0 });
    const event = await api.db.pool.query(
      `SELECT available_at <= now() AS due, payload->>'priority' AS priority, payload->'notBefore' AS not_before
         FROM outbox WHERE request_id = $1`,
      [primary.body.id],
    );
    assert.deepEqual(event.rows[0], { due: true, priority: 'legal', not_before: null });
    const journal = await api.db.pool.query(
      `SELECT detail->>'byRequest' AS by FROM journal WHERE request_id = $1 AND kind = 'request.escalated'`,
      [primary.body.id],
    );
    assert.deepEqual(
      journal.rows.map((r) => r.by),
      [urgent.body.id],
    );
    // A request due later and ranking lower changes nothing.
    const lazy = await submit(api, 'escalate-3', {
      identifiers: [{ type: 'user_id', value: 'escalate-subject' }],
      reason: 'retention_expiry',
      notBefore: later,
    });
    assert.equal(lazy.body.linkedTo, primary.body.id);
    const after = await api.db.pool.query(
      `SELECT count(*)::int AS n FROM journal WHERE request_id = $1 AND kind = 'request.escalated'`,
      [primary.body.id],
    );
    assert.equal(after.rows[0].n, 1);
  });

  it('completes at once, and says so, when no target holds the identifier types', async () => {
    const res = await submit(api, 'no-target', {
      identifiers: [{ type: 'device_id', value: 'ABC-1' }],
      reason: 'ccpa',
    });
    assert.equal(res.status, 202);
    assert.equal(res.body.status, 'completed');
    const events = await api.db.pool.query(`SELECT topic FROM outbox WHERE request_id = $1 ORDER BY id`, [
      res.body.id,
    ]);
    assert.deepEqual(
      events.rows.map((e) => e.topic),
      ['privacy.erasure.requested.v1', 'privacy.erasure.completed.v1'],
    );
  });

  it('holds a grace period: tasks and the event wait for notBefore', async () => {
    const nb = new Date(Date.now() + 3 * 24 * 3600 * 1000);
    const res = await submit(api, 'grace-1', gdpr('grace-subject', { notBefore: nb.toISOString() }));
    assert.equal(res.status, 202);
    const ob = await api.db.pool.query(`SELECT available_at FROM outbox WHERE request_id = $1`, [
      res.body.id,
    ]);
    assert.equal(ob.rows[0].available_at.toISOString(), nb.toISOString());
    const t = await api.db.pool.query(
      `SELECT DISTINCT next_attempt_at FROM erasure_tasks WHERE request_id = $1`,
      [res.body.id],
    );
    assert.equal(t.rows[0].next_attempt_at.toISOString(), nb.toISOString());
  });

  it('counts a legal deadline from receipt and refuses a grace period past it; a house deadline counts from the grace period', async () => {
    const day = 24 * 3600 * 1000;
    const before = await count(api, 'erasure_requests');
    // GDPR: one month from receipt, which no grace period moves.
    const late = await submit(
      api,
      'deadline-late',
      gdpr('deadline-late', { notBefore: new Date(Date.now() + 40 * day).toISOString() }),
    );
    assert.equal(late.status, 400);
    assert.equal(late.body.code, 'ERR_VALIDATION');
    assert.equal(late.body.field, 'notBefore');
    assert.match(late.body.detail, /legal deadline/);
    assert.equal(await count(api, 'erasure_requests'), before, 'a refused request leaves no row');
    const ccpaLate = await submit(api, 'deadline-ccpa-late', {
      identifiers: [{ type: 'user_id', value: 'deadline-ccpa-late' }],
      reason: 'ccpa',
      notBefore: new Date(Date.now() + 46 * day).toISOString(),
    });
    assert.equal(ccpaLate.status, 400);
    const inTime = await submit(
      api,
      'deadline-in-time',
      gdpr('deadline-in-time', { notBefore: new Date(Date.now() + 20 * day).toISOString() }),
    );
    assert.equal(inTime.status, 202);
    const legal = await api.db.pool.query(
      `SELECT deadline = received_at + interval '1 month' AS from_receipt FROM erasure_requests WHERE id = $1`,
      [inTime.body.id],
    );
    assert.equal(legal.rows[0].from_receipt, true);

    // An account deletion with a 40-day restore window: due 30 days after the window closes,
    // alone and when linked to a request already in flight for the subject.
    const nb = new Date(Date.now() + 40 * day);
    const accountDeletion = (userId: string) => ({
      identifiers: [{ type: 'user_id', value: userId }],
      reason: 'account_deletion',
      notBefore: nb.toISOString(),
    });
    const house = await submit(api, 'deadline-house', accountDeletion('deadline-house'));
    assert.equal(house.status, 202);
    assert.equal(
      new Date(house.body.deadline).toISOString(),
      new Date(nb.getTime() + 30 * day).toISOString(),
    );
    const primary = await submit(api, 'deadline-primary', gdpr('deadline-linked'));
    assert.equal(primary.status, 202);
    const linked = await submit(api, 'deadline-linked', accountDeletion('deadline-linked'));
    assert.equal(linked.status, 202);
    const row = await api.db.pool.query(`SELECT linked_to, deadline FROM erasure_requests WHERE id = $1`, [
      linked.body.id,
    ]);
    assert.equal(row.rows[0].linked_to, primary.body.id);
    assert.equal(row.rows[0].deadline.toISOString(), new Date(nb.getTime() + 30 * day).toISOString());
  });

  it('a request with no target and a grace period: its completed event waits too, and never clogs the relay', async () => {
    const nb = new Date(Date.now() + 2 * 24 * 3600 * 1000);
    const held = [];
    for (let i = 0; i < 3; i++) {
      const r = await submit(api, `no-target-grace-${i}`, {
        identifiers: [{ type: 'device_id', value: `GRACE-${i}` }],
        reason: 'ccpa',
        notBefore: nb.toISOString(),
      });
      assert.equal(r.status, 202);
      held.push(r.body.id);
    }
    const ob = await api.db.pool.query(
      `SELECT DISTINCT available_at FROM outbox WHERE request_id = ANY($1)`,
      [held],
    );
    assert.deepEqual(
      ob.rows.map((r) => r.available_at.toISOString()),
      [nb.toISOString()],
    );
    // Due completed events held back behind their not-yet-due requested events used to fill
    // a claim's window: a claim of 2 then published nothing, whatever else was due.
    const due = await submit(api, 'after-held', gdpr('after-held-subject'));
    await api.db.pool.query(
      `UPDATE outbox SET status = 'sent', sent_at = now() WHERE status = 'pending' AND request_id <> ALL($1) AND request_id <> $2`,
      [held, due.body.id],
    );
    const claimed = await claimOutboxBatch(api.db.pool, { owner: 'test', batchSize: 2, leaseMs: 60_000 });
    assert.deepEqual(
      claimed.map((r) => r.payload['requestId']),
      [due.body.id],
    );
  });

  it('never answers 5xx when concurrent batches for the same subjects deadlock: the statement is run again', async () => {
    // Batches with the same new subjects in opposite orders take the unique index's entries
    // in opposite orders; PostgreSQL aborts one as a deadlock victim (40P01). An auditor saw
    // a third of such batches answer 500 before the accept statement was retried.
    const n = 2000;
    /** n GDPR requests for subjects `${run}-0` … `${run}-${n - 1}`, in that order or reversed. */
    const gdprBatch = (run: string, tag: string, reversed: boolean) =>
      api.call('POST', '/v1/erasure-requests:batch', {
        body: {
          requests: Array.from({ length: n }, (_, i) => (reversed ? n - 1 - i : i)).map((i) => ({
            ...gdpr(`${run}-${i}`),
            idempotencyKey: `${run}-${tag}-${i}`,
          })),
        },
      });
    for (let round = 0; round < 4; round++) {
      const run = `dl-${round}-${randomUUID().slice(0, 8)}`;
      const answers = await Promise.all([
        gdprBatch(run, 'a', false),
        gdprBatch(run, 'b', true),
        gdprBatch(run, 'c', false),
        gdprBatch(run, 'd', true),
      ]);
      for (const res of answers) assert.equal(res.status, 200, JSON.stringify(res.body).slice(0, 300));
      const outcomes = answers.flatMap((res) => res.body.results.map((r: { outcome: string }) => r.outcome));
      assert.equal(outcomes.filter((o) => o === 'created').length, n, 'one request fans out per subject');
      assert.equal(outcomes.filter((o) => o === 'linked').length, 3 * n, 'the others are linked to it');
    }
    // Linking with escalation: four batches bring the same bulk requests forward at once
    // (each locks the primaries, then updates them).
    const run = `dl-esc-${randomUUID().slice(0, 8)}`;
    const bulk = await api.call('POST', '/v1/erasure-requests:batch', {
      body: {
        requests: Array.from({ length: n }, (_, i) => ({
          identifiers: [{ type: 'user_id', value: `${run}-${i}` }],
          reason: 'retention_expiry',
          notBefore: new Date(Date.now() + 20 * 24 * 3600 * 1000).toISOString(),
          idempotencyKey: `${run}-bulk-${i}`,
        })),
      },
    });
    assert.equal(bulk.status, 200);
    const escalations = await Promise.all([
      gdprBatch(run, 'a', false),
      gdprBatch(run, 'b', true),
      gdprBatch(run, 'c', false),
      gdprBatch(run, 'd', true),
    ]);
    for (const res of escalations) assert.equal(res.status, 200, JSON.stringify(res.body).slice(0, 300));
    assert.equal(api.logs().includes('40P01'), false, 'no deadlock reached the problem handler');
  });

  it('accepts batches with per-item results, in few round trips', async () => {
    const requests = Array.from({ length: 2000 }, (_, i) => ({
      ...gdpr(`batch-${i}`),
      idempotencyKey: `batch-${i}`,
    }));
    requests.push({
      identifiers: [{ type: 'email', value: 'not-an-email' }],
      reason: 'ccpa',
      idempotencyKey: 'bad-1',
    });
    requests.push({ ...gdpr('batch-0'), idempotencyKey: 'batch-0' }); // duplicate of item 0
    const res = await api.call('POST', '/v1/erasure-requests:batch', { body: { requests } });
    assert.equal(res.status, 200);
    assert.equal(res.body.results.length, 2002);
    assert.equal(res.body.failed, 1);
    assert.equal(res.body.results[2000].error.code, 'ERR_INVALID_IDENTIFIER');
    assert.equal(res.body.results[2001].id, res.body.results[0].id);
    assert.equal(res.body.results[2001].outcome, 'existing');
    const { rows } = await api.db.pool.query(
      `SELECT count(*)::int AS n FROM erasure_requests WHERE idempotency_key LIKE 'batch-%'`,
    );
    assert.equal(rows[0].n, 2000);
  });

  it('refuses an over-size batch whole, writing nothing', async () => {
    const before = await count(api, 'erasure_requests');
    const requests = Array.from({ length: 10_001 }, (_, i) => ({
      ...gdpr(`big-${i}`),
      idempotencyKey: `big-${i}`,
    }));
    const res = await api.call('POST', '/v1/erasure-requests:batch', { body: { requests } });
    assert.equal(res.status, 413);
    assert.equal(res.body.code, 'ERR_BATCH_TOO_LARGE');
    assert.equal(await count(api, 'erasure_requests'), before);
  });

  it('cancels only before dispatch, and says why not otherwise', async () => {
    const a = await submit(api, 'cancel-1', gdpr('cancel-subject-1'));
    const ok = await api.call('POST', `/v1/erasure-requests/${a.body.id}/cancel`);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.status, 'cancelled');
    const states = await api.db.pool.query(`SELECT DISTINCT state FROM erasure_tasks WHERE request_id = $1`, [
      a.body.id,
    ]);
    assert.deepEqual(
      states.rows.map((r) => r.state),
      ['cancelled'],
    );
    assert.equal((await outboxStatuses(api, a.body.id))[0], 'cancelled', 'the event will never be published');
    assert.equal(
      (await api.call('POST', `/v1/erasure-requests/${a.body.id}/cancel`)).status,
      200,
      'idempotent',
    );

    const b = await submit(api, 'cancel-2', gdpr('cancel-subject-2'));
    await api.db.pool.query(`UPDATE outbox SET status = 'sent', sent_at = now() WHERE request_id = $1`, [
      b.body.id,
    ]);
    const published = await api.call('POST', `/v1/erasure-requests/${b.body.id}/cancel`);
    assert.equal(published.status, 409);
    assert.equal(published.body.code, 'ERR_CANCEL_CONFLICT');
    assert.equal(published.body.reasonCode, 'published');

    const c = await submit(api, 'cancel-3', gdpr('cancel-subject-3'));
    await api.db.pool.query(
      `UPDATE erasure_tasks SET state = 'dispatched' WHERE request_id = $1 AND target = 'profiles'`,
      [c.body.id],
    );
    const dispatched = await api.call('POST', `/v1/erasure-requests/${c.body.id}/cancel`);
    assert.equal(dispatched.status, 409);
    assert.deepEqual(dispatched.body.targets, ['profiles']);

    // A relay took the event once and released it after a failed send (as release-failed-rows
    // leaves it: pending, no lease, attempts 1): the send may have reached the broker.
    const d = await submit(api, 'cancel-4', gdpr('cancel-subject-4'));
    await api.db.pool.query(
      `UPDATE outbox SET attempts = 1, last_error = 'ERR_RELAY_PUBLISH: timeout' WHERE request_id = $1`,
      [d.body.id],
    );
    const released = await api.call('POST', `/v1/erasure-requests/${d.body.id}/cancel`);
    assert.equal(released.status, 409);
    assert.equal(released.body.reasonCode, 'publishing');
    const still = await api.db.pool.query(`SELECT status FROM erasure_requests WHERE id = $1`, [d.body.id]);
    assert.equal(still.rows[0].status, 'scheduled', 'nothing changed');
  });

  it('lists with filters and keyset pagination', async () => {
    const token = await api.token(['submit', 'read'], { owner: 'pager' });
    for (let i = 0; i < 5; i++) await submit(api, `page-${i}`, gdpr(`page-subject-${i}`), token);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `&cursor=${cursor}` : '';
      const res = await api.call('GET', `/v1/erasure-requests?limit=2${q}`, { token });
      assert.equal(res.status, 200);
      seen.push(...res.body.items.map((r: { id: string }) => r.id));
      cursor = res.body.nextCursor;
    } while (cursor);
    assert.equal(seen.length, 5, 'only this owner’s requests, each once');
    assert.equal(new Set(seen).size, 5);

    // One batch is one statement: its rows share received_at to the microsecond, so pages
    // must break the tie on id (a millisecond cursor skipped every row tied with the last).
    const batchToken = await api.token(['submit', 'read'], { owner: 'pager-batch' });
    const requests = Array.from({ length: 7 }, (_, i) => ({
      ...gdpr(`page-batch-subject-${i}`),
      idempotencyKey: `page-batch-${i}`,
    }));
    const batch = await api.call('POST', '/v1/erasure-requests:batch', {
      body: { requests },
      token: batchToken,
    });
    assert.equal(batch.status, 200);
    const tied = await api.db.pool.query(
      `SELECT count(DISTINCT received_at)::int AS n FROM erasure_requests WHERE owner = 'pager-batch'`,
    );
    assert.equal(tied.rows[0].n, 1, 'the batch rows share one received_at');
    const batchSeen: string[] = [];
    cursor = null;
    do {
      const q: string = cursor ? `&cursor=${cursor}` : '';
      const res = await api.call('GET', `/v1/erasure-requests?limit=3${q}`, { token: batchToken });
      batchSeen.push(...res.body.items.map((r: { id: string }) => r.id));
      cursor = res.body.nextCursor;
    } while (cursor);
    assert.deepEqual(
      [...batchSeen].sort(),
      batch.body.results.map((r: { id: string }) => r.id).sort(),
      'every row of the batch, each once',
    );
    assert.equal(batchSeen.length, 7);
    const filtered = await api.call(
      'GET',
      '/v1/erasure-requests?reason=ccpa&status=scheduled&overdue=false&target=profiles',
    );
    assert.equal(filtered.status, 200);
    const bad = await api.call('GET', '/v1/erasure-requests?cursor=bm9wZQ');
    assert.equal(bad.body.code, 'ERR_INVALID_CURSOR');
  });

  it('scopes tokens: submit, read, admin; another owner cannot see a request', async () => {
    const submitOnly = await api.token(['submit'], { owner: 'team-a' });
    const readerB = await api.token(['read'], { owner: 'team-b' });
    const res = await submit(api, 'scope-1', gdpr('scope-subject'), submitOnly);
    assert.equal(res.status, 202);
    const cannotRead = await api.call('GET', `/v1/erasure-requests/${res.body.id}`, { token: submitOnly });
    assert.equal(cannotRead.status, 403);
    assert.equal(cannotRead.body.code, 'ERR_FORBIDDEN');
    const otherOwner = await api.call('GET', `/v1/erasure-requests/${res.body.id}`, { token: readerB });
    assert.equal(otherOwner.status, 404, 'another owner’s request is indistinguishable from none');
    assert.equal(
      (await api.call('POST', `/v1/erasure-requests/${res.body.id}/cancel`, { token: readerB })).status,
      403,
    );
    assert.equal((await api.call('GET', '/v1/targets', { token: submitOnly })).status, 403);
    assert.equal((await submit(api, 'scope-2', gdpr('x'), readerB)).status, 403);
    const ackToken = await api.token(['ack'], { target: 'orders-db' });
    assert.equal((await submit(api, 'scope-3', gdpr('y'), ackToken)).status, 403);
    const noTarget = await api.call('POST', '/v1/tokens', { body: { scopes: ['ack'] } });
    assert.equal(noTarget.body.code, 'ERR_VALIDATION');
  });

  it('refuses bad, expired and revoked tokens with 401 problem+json', async () => {
    const none = await api.call('GET', '/v1/erasure-requests', { token: null });
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.equal(none.body.code, 'ERR_UNAUTHENTICATED');
    assert.equal(
      (await api.call('GET', '/v1/erasure-requests', { token: 'ert_notarealtokenatall000000' })).status,
      401,
    );
    const expiring = await api.call('POST', '/v1/tokens', {
      body: { scopes: ['read'], expiresAt: new Date(Date.now() + 1500).toISOString() },
    });
    assert.equal((await api.call('GET', '/v1/erasure-requests', { token: expiring.body.token })).status, 200);
    await new Promise((r) => setTimeout(r, 1600));
    assert.equal((await api.call('GET', '/v1/erasure-requests', { token: expiring.body.token })).status, 401);
    await api.db.pool.query(`UPDATE api_tokens SET revoked_at = now() WHERE owner = 'team-a'`);
    // The scheme is case-insensitive (RFC 9110); the token is not.
    const lower = await api.call('GET', '/v1/erasure-requests', {
      token: null,
      headers: { authorization: `bEARER ${api.adminToken}` },
    });
    assert.equal(lower.status, 200);
    const wrongCase = await api.call('GET', '/v1/erasure-requests', { token: api.adminToken.toUpperCase() });
    assert.equal(wrongCase.status, 401);
  });

  it('stops an expiring token at its expiresAt even while its lookup is cached', async () => {
    const cached = await startTestApi({ TOKEN_CACHE_MS: '60000' });
    try {
      const expiring = await cached.call('POST', '/v1/tokens', {
        body: { scopes: ['read'], expiresAt: new Date(Date.now() + 1500).toISOString() },
      });
      const list = () => cached.call('GET', '/v1/erasure-requests', { token: expiring.body.token });
      assert.equal((await list()).status, 200);
      await new Promise((r) => setTimeout(r, 1600));
      assert.equal((await list()).status, 401, 'the cache entry ends at the token’s expiry');
      // A token without expiry stays cached: revoking it takes up to TOKEN_CACHE_MS.
      const lasting = await cached.token(['read']);
      const get = () => cached.call('GET', '/v1/erasure-requests', { token: lasting });
      assert.equal((await get()).status, 200);
      await cached.db.pool.query(
        `UPDATE api_tokens SET revoked_at = now() WHERE owner = 'admin' AND scopes = '{read}'`,
      );
      assert.equal((await get()).status, 200, 'within the documented revocation window');
    } finally {
      await cached.stop();
    }
  });

  it('revokes the admin token bootstrapped before when ERASURE_ADMIN_TOKEN changes', async () => {
    const rotated = `adm_${randomUUID()}`;
    const second = await start(
      loadApiConfig({
        ...process.env,
        DATABASE_URL: api.db.url,
        PORT: '0',
        HOST: '127.0.0.1',
        ERASURE_ADMIN_TOKEN: rotated,
        TOKEN_CACHE_MS: '0',
        LOG_LEVEL: 'error',
      }),
      createLogger({ service: 'api', level: 'error', stream: new PassThrough() }),
    );
    try {
      const get = (token: string) =>
        fetch(`${second.url}/v1/erasure-requests?limit=1`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal((await get(rotated)).status, 200);
      assert.equal((await get(api.adminToken)).status, 401, 'the earlier admin token is revoked');
      const { rows } = await api.db.pool.query(
        `SELECT count(*)::int AS n FROM api_tokens WHERE description = 'ERASURE_ADMIN_TOKEN' AND revoked_at IS NULL`,
      );
      assert.equal(rows[0].n, 1);
    } finally {
      await second.stop();
    }
    const restored = await start(
      loadApiConfig({
        ...process.env,
        DATABASE_URL: api.db.url,
        PORT: '0',
        HOST: '127.0.0.1',
        ERASURE_ADMIN_TOKEN: api.adminToken,
        LOG_LEVEL: 'error',
      }),
      createLogger({ service: 'api', level: 'error', stream: new PassThrough() }),
    );
    await restored.stop();
    // Rolled back to the earlier value: it works again, and the newer one is revoked.
    assert.equal((await api.call('GET', '/v1/erasure-requests?limit=1')).status, 200);
    assert.equal((await api.call('GET', '/v1/erasure-requests?limit=1', { token: rotated })).status, 401);
  });

  it('refuses to start, instead of saying it listens, when its port is taken', async () => {
    const cfg = loadApiConfig({
      ...process.env,
      DATABASE_URL: api.db.url,
      PORT: new URL(api.url).port,
      HOST: '127.0.0.1',
      LOG_LEVEL: 'error',
    });
    await assert.rejects(
      start(cfg, createLogger({ service: 'api', level: 'error', stream: new PassThrough() })),
      /EADDRINUSE/,
    );
  });

  it('registers custom identifier types and validates values against them', async () => {
    const created = await api.call('POST', '/v1/identifier-types', {
      body: { name: 'loyalty_card', pattern: 'LC-[0-9]{8}', maxLength: 11 },
    });
    assert.equal(created.status, 201);
    const t = await api.call('POST', '/v1/targets', {
      body: { name: 'loyalty', kind: 'async_event', identifierTypes: ['loyalty_card'] },
    });
    assert.equal(t.status, 201);
    const ok = await submit(api, 'custom-1', {
      identifiers: [{ type: 'loyalty_card', value: 'LC-12345678' }],
      reason: 'ccpa',
    });
    assert.equal(ok.status, 202);
    const bad = await submit(api, 'custom-2', {
      identifiers: [{ type: 'loyalty_card', value: 'LC-1' }],
      reason: 'ccpa',
    });
    assert.equal(bad.body.code, 'ERR_INVALID_IDENTIFIER');
    // A pattern V8 would backtrack on exponentially is harmless here: RE2 matches in linear
    // time. Only what RE2 cannot run (backreferences, lookarounds) is refused.
    const backtracking = await api.call('POST', '/v1/identifier-types', {
      body: { name: 'nested_type', pattern: '(a|a)*b' },
    });
    assert.equal(backtracking.status, 201);
    await api.call('POST', '/v1/targets', {
      body: { name: 'nested', kind: 'async_event', identifierTypes: ['nested_type'] },
    });
    const nearMiss = await submit(api, 'custom-3', {
      identifiers: [{ type: 'nested_type', value: `${'a'.repeat(30)}!` }],
      reason: 'ccpa',
    });
    assert.equal(nearMiss.body.code, 'ERR_INVALID_IDENTIFIER');
    const backref = await api.call('POST', '/v1/identifier-types', {
      body: { name: 'backref_type', pattern: '(a)\\1' },
    });
    assert.equal(backref.body.code, 'ERR_VALIDATION');
  });

  it('lists the built-in identifier types as their code treats them, and holds them to it', async () => {
    const list = await api.call('GET', '/v1/identifier-types');
    assert.equal(list.status, 200);
    const items: { name: string; maxLength: number; lowercase: boolean }[] = list.body.items ?? list.body;
    const byName = new Map(items.map((t) => [t.name, t]));
    for (const b of BUILTIN_TYPES) {
      const t = byName.get(b.name);
      assert.ok(t, b.name);
      assert.equal(t.maxLength, b.maxLength, `${b.name} maxLength`);
      assert.equal(t.lowercase, b.lowercase, `${b.name} lowercase`);
    }
    const email = (local: number) => `${'a'.repeat(local)}@example.org`; // 12 more characters
    assert.equal(
      (
        await submit(api, 'builtin-254', {
          ...gdpr('x'),
          identifiers: [{ type: 'email', value: email(242) }],
        })
      ).status,
      202,
    );
    const tooLong = await submit(api, 'builtin-255', {
      ...gdpr('x'),
      identifiers: [{ type: 'email', value: email(243) }],
    });
    assert.equal(tooLong.body.code, 'ERR_INVALID_IDENTIFIER');
  });

  it('pauses a target without losing its tasks', async () => {
    const paused = await api.call('PATCH', '/v1/targets/profiles', { body: { paused: true } });
    assert.equal(paused.status, 200);
    assert.equal(paused.body.paused, true);
    const res = await submit(api, 'paused-1', gdpr('paused-subject'));
    const view = await api.call('GET', `/v1/erasure-requests/${res.body.id}`);
    const task = view.body.tasks.find((t: { target: string }) => t.target === 'profiles');
    assert.equal(task.state, 'pending');
    assert.equal(task.paused, true);
    await api.call('PATCH', '/v1/targets/profiles', { body: { paused: false } });
  });

  it('refuses target URLs that reach link-local or metadata addresses, and cycles in "after"', async () => {
    const meta = await api.call('POST', '/v1/targets', {
      body: {
        name: 'evil',
        kind: 'sync_http',
        identifierTypes: ['user_id'],
        http: { urlTemplate: 'http://169.254.169.254/latest/{{user_id}}' },
      },
    });
    assert.equal(meta.status, 400);
    assert.equal(meta.body.code, 'ERR_INVALID_TARGET');
    const listed = await api.call('GET', '/v1/targets');
    const crm = listed.body.items.find((t: { name: string }) => t.name === 'crm');
    assert.equal(crm.http.headers.Authorization, '[redacted]', 'header values are write-only');
    await api.call('PATCH', '/v1/targets/orders-db', { body: { after: ['profiles'] } });
    const cycle = await api.call('PATCH', '/v1/targets/profiles', { body: { after: ['orders-db'] } });
    assert.equal(cycle.body.code, 'ERR_INVALID_TARGET');
    await api.call('PATCH', '/v1/targets/orders-db', { body: { after: [] } });
  });

  it('serialises concurrent target writes: no cycle through two PATCHes, no lost change', async () => {
    for (let i = 0; i < 5; i++) {
      const [a, b] = [`cy-a-${i}`, `cy-b-${i}`];
      for (const name of [a, b]) {
        const created = await api.call('POST', '/v1/targets', {
          body: { name, kind: 'async_event', identifierTypes: ['device_id'] },
        });
        assert.equal(created.status, 201);
      }
      const answers = await Promise.all([
        api.call('PATCH', `/v1/targets/${a}`, { body: { after: [b] } }),
        api.call('PATCH', `/v1/targets/${b}`, { body: { after: [a] } }),
      ]);
      assert.deepEqual(answers.map((r) => r.status).sort(), [200, 400], 'one of the two makes a cycle');
      const both = await Promise.all([
        api.call('PATCH', `/v1/targets/${a}`, { body: { owner: 'team-x' } }),
        api.call('PATCH', `/v1/targets/${a}`, { body: { paused: true } }),
      ]);
      assert.deepEqual(
        both.map((r) => r.status),
        [200, 200],
      );
      const now = await api.call('GET', `/v1/targets/${a}`);
      assert.equal(now.body.owner, 'team-x');
      assert.equal(now.body.paused, true);
      for (const name of [a, b]) {
        const cleared = await api.call('PATCH', `/v1/targets/${name}`, {
          body: { after: [], paused: false },
        });
        assert.equal(cleared.status, 200);
      }
    }
  });

  it('never writes identifier values to the log', async () => {
    const canary = `canary-${randomUUID()}`;
    await submit(api, `canary-${canary}`, {
      identifiers: [
        { type: 'user_id', value: canary },
        { type: 'email', value: `${canary}@example.com` },
      ],
      reason: 'gdpr_art17',
    });
    await submit(api, 'canary-bad', {
      identifiers: [{ type: 'email', value: `${canary}-no-at` }],
      reason: 'ccpa',
    });
    await api.call('POST', '/v1/erasure-requests:batch', {
      body: { requests: [{ ...gdpr(canary), idempotencyKey: 'canary-batch' }] },
    });
    await api.call('GET', `/v1/erasure-requests/${canary}`);
    assert.ok(api.logs().length > 0, 'the API did log');
    assert.equal(api.logs().includes(canary), false, 'canary identifier found in the logs');
  });

  it('keeps SQL- and script-looking values verbatim, never executed or reflected', async () => {
    const sqlish = "42'); DROP TABLE erasure_requests; --";
    const scriptish = '<script>alert(1)</script>';
    const res = await submit(api, 'weird-1', {
      identifiers: [
        { type: 'user_id', value: sqlish },
        { type: 'device_id', value: scriptish },
      ],
      reason: 'ccpa',
    });
    assert.equal(res.status, 202);
    assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
    const { rows } = await api.db.pool.query(`SELECT identifiers FROM erasure_requests WHERE id = $1`, [
      res.body.id,
    ]);
    assert.deepEqual(rows[0].identifiers, [
      { type: 'user_id', value: sqlish },
      { type: 'device_id', value: scriptish },
    ]);
    const view = await api.call('GET', `/v1/erasure-requests/${res.body.id}`);
    assert.equal(JSON.stringify(view.body).includes('<script>'), false);
  });

  it('answers every malformed request at the HTTP edge with a 4xx problem and writes no row', async () => {
    const before = await count(api, 'erasure_requests');
    const key = { 'idempotency-key': 'edge-1' };
    const json = { ...key, 'content-type': 'application/json' };
    const cases: [string, Parameters<TestApi['call']>[2], number, string][] = [
      ['malformed JSON', { raw: '{"identifiers": [', headers: json }, 400, 'ERR_MALFORMED_JSON'],
      [
        'wrong content type',
        { raw: 'identifiers=42', headers: { ...key, 'content-type': 'text/plain' } },
        415,
        'ERR_UNSUPPORTED_MEDIA_TYPE',
      ],
      [
        'no content type',
        { raw: JSON.stringify(gdpr('e1')), headers: key },
        415,
        'ERR_UNSUPPORTED_MEDIA_TYPE',
      ],
      [
        'invalid UTF-8',
        {
          raw: Buffer.concat([
            Buffer.from('{"identifiers":[{"type":"user_id","value":"'),
            Buffer.from([0xc3, 0x28]),
            Buffer.from('"}],"reason":"ccpa"}'),
          ]),
          headers: json,
        },
        400,
        'ERR_INVALID_UTF8',
      ],
      [
        'a 10 MB body',
        {
          raw: `{"identifiers":[{"type":"user_id","value":"${'x'.repeat(10 * 1024 * 1024)}"}],"reason":"ccpa"}`,
          headers: json,
        },
        413,
        'ERR_BODY_TOO_LARGE',
      ],
      ['missing Idempotency-Key', { body: gdpr('e2') }, 400, 'ERR_IDEMPOTENCY_KEY_MISSING'],
      [
        'empty identifiers',
        { body: { identifiers: [], reason: 'ccpa' }, headers: key },
        400,
        'ERR_VALIDATION',
      ],
      [
        'unknown field',
        { body: { ...gdpr('e3'), callback: 'http://x' }, headers: key },
        400,
        'ERR_UNKNOWN_FIELD',
      ],
      ['control characters', { body: gdpr('bell\u0007'), headers: key }, 400, 'ERR_CONTROL_CHARACTERS'],
      [
        'a lone surrogate escape (valid UTF-8, not a character)',
        { raw: '{"identifiers":[{"type":"user_id","value":"ab\\ud800"}],"reason":"ccpa"}', headers: json },
        400,
        'ERR_INVALID_UTF8',
      ],
    ];
    for (const [what, opts, status, code] of cases) {
      const res = await api.call('POST', '/v1/erasure-requests', opts);
      assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)?.slice(0, 200)}`);
      assert.equal(res.body.code, code, what);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/, what);
    }
    // Inputs that once reached PostgreSQL or Express unchecked and answered 500.
    const dashes = await api.call('POST', `/v1/erasure-requests/${'-'.repeat(36)}/cancel`);
    assert.equal(dashes.status, 404);
    const cursor = Buffer.from(JSON.stringify(['2020', randomUUID()])).toString('base64url');
    assert.equal(
      (await api.call('GET', `/v1/erasure-requests?cursor=${cursor}`)).body.code,
      'ERR_INVALID_CURSOR',
    );
    // Year 0000 is a JS date but not a PostgreSQL timestamptz.
    const yearZero = Buffer.from(JSON.stringify(['0000-01-01T00:00:00.000000Z', randomUUID()])).toString(
      'base64url',
    );
    assert.equal((await api.call('GET', `/v1/erasure-requests?cursor=${yearZero}`)).status, 400);
    const encoding = await api.call('GET', '/v1/erasure-requests/%E0%A4%A');
    assert.equal(encoding.status, 400);
    // A lone surrogate in one batch item, a target or an ack: PostgreSQL's jsonb refuses it.
    const surrogateBatch = await api.call('POST', '/v1/erasure-requests:batch', {
      raw: `{"requests":[${JSON.stringify({ ...gdpr('e5'), idempotencyKey: 'edge-s1' })},{"identifiers":[{"type":"user_id","value":"x\\udc00"}],"reason":"ccpa","idempotencyKey":"edge-s2"}]}`,
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(surrogateBatch.body.code, 'ERR_INVALID_UTF8');
    const surrogateTarget = await api.call('POST', '/v1/targets', {
      raw: '{"name":"surrogate-target","kind":"async_event","identifierTypes":["user_id\\ud83d"]}',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(surrogateTarget.body.code, 'ERR_INVALID_UTF8');
    const surrogateAck = await api.call('POST', '/v1/acks', {
      token: await api.token(['ack'], { target: 'orders-db' }),
      raw: `{"requestId":"${randomUUID()}","target":"orders-db","status":"deleted","detail":"ok \\udc00"}`,
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(surrogateAck.body.code, 'ERR_INVALID_UTF8');
    const pair = await api.call('POST', '/v1/erasure-requests', {
      raw: '{"identifiers":[{"type":"user_id","value":"smile-\\ud83d\\ude00"}],"reason":"ccpa"}',
      headers: { ...json, 'idempotency-key': 'edge-pair' },
    });
    assert.equal(pair.status, 202, 'an escaped surrogate pair is a character');
    // NUL in a path or query value: PostgreSQL refuses the byte in text.
    for (const path of [
      '/v1/targets/%00',
      '/v1/erasure-requests?target=%00',
      '/v1/erasure-requests?reason=a%00',
    ]) {
      const nul = await api.call('GET', path);
      assert.equal(nul.status, 400, path);
      assert.equal(nul.body.code, 'ERR_CONTROL_CHARACTERS', path);
    }
    const nulPatch = await api.call('PATCH', '/v1/targets/%00', { body: { paused: true } });
    assert.equal(nulPatch.status, 400);
    const feb30 = await submit(api, 'edge-feb30', gdpr('e4', { notBefore: '2027-02-30T00:00:00Z' }));
    assert.equal(feb30.body.code, 'ERR_VALIDATION');
    const nullItem = await api.call('POST', '/v1/erasure-requests:batch', { body: { requests: [null] } });
    assert.equal(nullItem.body.results[0].error.code, 'ERR_VALIDATION');
    const notFound = await api.call('GET', '/v1/nothing-here');
    assert.equal(notFound.status, 404);
    assert.equal(notFound.body.code, 'ERR_NOT_FOUND');
    assert.equal(await count(api, 'erasure_requests'), before + 1, 'no row left behind (but the pair)');
  });

  it('rate-limits per token with 429 and Retry-After', async () => {
    const limited = await startTestApi({ RATE_LIMIT_PER_SECOND: '1', RATE_LIMIT_BURST: '2' });
    try {
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 4; i++) {
        const r = await limited.call('GET', '/v1/erasure-requests');
        statuses.push(r.status);
        if (r.status === 429) {
          retryAfter = r.headers.get('retry-after');
          assert.equal(r.body.code, 'ERR_RATE_LIMITED');
        }
      }
      assert.deepEqual(statuses.slice(0, 2), [200, 200]);
      assert.equal(statuses.includes(429), true);
      assert.ok(Number(retryAfter) >= 1);
    } finally {
      await limited.stop();
    }
  });
});
