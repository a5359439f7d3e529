import type pg from 'pg';
import { problem } from '../../shared/errors.ts';
import { writeCompletedEvents } from '../../shared/write-completed-events.ts';
import { REQUESTED_TOPIC } from './insert-requests.ts';

/**
 * Cancels a request that has not been dispatched anywhere yet. Locks the request row, then
 * its outbox row: the relay claims outbox rows with FOR UPDATE SKIP LOCKED and a lease, so
 * either we see the event still pending and unleased (and cancel it), or we answer 409.
 * A cancelled request gets its completed event (status cancelled) in the same transaction,
 * as one whose tasks all became terminal does.
 */
export async function cancelRequest(
  pool: pg.Pool,
  id: string,
  viewer: { owner: string; admin: boolean; actor: string },
): Promise<{ id: string; status: string; cancelledAt: string }> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // A linked request's primary is locked first (FOR SHARE), the request itself second:
    // settling a primary locks it and then updates the requests linked to it (apply-ack.ts),
    // so the other order could deadlock with it. A dispatch or a cancel of the primary that
    // is committing now is waited for, then read as it ended. linked_to never changes once
    // written, so it is read before any lock.
    const link = await client.query<{ linked_to: string | null }>(
      `SELECT linked_to FROM erasure_requests WHERE id = $1`,
      [id],
    );
    const primaryId = link.rows[0]?.linked_to ?? null;
    const primary = primaryId
      ? await client.query<{ status: string }>(
          `SELECT status FROM erasure_requests WHERE id = $1 FOR SHARE`,
          [primaryId],
        )
      : null;
    // Row lock: concurrent cancels and dispatch decisions on this request serialise here.
    const { rows } = await client.query(
      `SELECT id, owner, status, linked_to, cancelled_at FROM erasure_requests WHERE id = $1 FOR UPDATE`,
      [id],
    );
    const r = rows[0];
    if (!r || (!viewer.admin && r.owner !== viewer.owner))
      throw problem('ERR_NOT_FOUND', 'no such erasure request');
    if (r.status === 'cancelled') {
      await client.query('ROLLBACK');
      return { id, status: 'cancelled', cancelledAt: r.cancelled_at.toISOString() };
    }
    if (!['received', 'scheduled'].includes(r.status)) {
      throw problem(
        'ERR_CANCEL_CONFLICT',
        `the request is ${r.status}; only a request not yet dispatched can be cancelled`,
        {
          reasonCode: 'not_cancellable_status',
        },
      );
    }
    if (r.linked_to !== null) {
      // A linked request has no fan-out of its own: its erasure is its primary's. It can be
      // withdrawn while the primary has not been sent anywhere; after that the subject's
      // erasure is under way for it too.
      const status = primary?.rows[0]?.status ?? 'missing';
      if (!['received', 'scheduled'].includes(status)) {
        throw problem(
          'ERR_CANCEL_CONFLICT',
          `the erasure this request is linked to is ${status}; only one not yet dispatched can be cancelled`,
          { reasonCode: 'not_cancellable_status' },
        );
      }
      await refuseIfDispatched(client, r.linked_to, false);
    } else {
      const dependants = await client.query(
        `SELECT 1 FROM erasure_requests WHERE linked_to = $1 AND status <> 'cancelled' LIMIT 1`,
        [id],
      );
      if (dependants.rowCount) {
        throw problem('ERR_CANCEL_CONFLICT', 'other requests for the same subject are linked to this one', {
          reasonCode: 'has_linked_requests',
        });
      }
      await refuseIfDispatched(client, id, true);
      await client.query(
        `UPDATE outbox SET status = 'cancelled' WHERE request_id = $1 AND status = 'pending'`,
        [id],
      );
      await client.query(
        `UPDATE erasure_tasks SET state = 'cancelled', updated_at = now() WHERE request_id = $1`,
        [id],
      );
    }
    const upd = await client.query(
      `UPDATE erasure_requests SET status = 'cancelled', cancelled_at = now() WHERE id = $1 RETURNING cancelled_at`,
      [id],
    );
    await client.query(
      `INSERT INTO journal (request_id, kind, actor, detail) VALUES ($1, 'request.cancelled', $2, '{}')`,
      [id, viewer.actor],
    );
    // Its outcomes: its own tasks, all cancelled now; none for a linked request, which was
    // routed to no target of its own. (A primary is cancelled only once every request linked
    // to it has been, each with its own event: see has_linked_requests above.)
    await writeCompletedEvents(client, [{ id, tasksOf: r.linked_to === null ? id : null }]);
    await client.query('COMMIT');
    return { id, status: 'cancelled', cancelledAt: upd.rows[0].cancelled_at.toISOString() };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    // 55P03 lock_not_available: the relay is publishing this event right now.
    if ((err as { code?: string }).code === '55P03') {
      throw problem('ERR_CANCEL_CONFLICT', 'the erasure event is being published', {
        reasonCode: 'publishing',
      });
    }
    throw err;
  } finally {
    client.release();
  }
}

/**
 * Throws 409 if the request's fan-out has begun: a task past pending, or its erasure event
 * published, being published, or claimed by a relay before. `lockEvent` locks the event row
 * (NOWAIT: a relay holding it is publishing) for a cancel that then cancels it.
 *
 * A row a relay has claimed before (attempts > 0) may be in Kafka even though it is pending
 * and unleased again: a send that failed (a timeout after the broker appended) or a relay
 * that died before marking it sent. Only a row never claimed is provably unpublished.
 */
async function refuseIfDispatched(
  client: pg.PoolClient,
  requestId: string,
  lockEvent: boolean,
): Promise<void> {
  const dispatched = await client.query<{ target: string }>(
    `SELECT target FROM erasure_tasks WHERE request_id = $1 AND state <> 'pending' ORDER BY target`,
    [requestId],
  );
  if (dispatched.rowCount) {
    throw problem('ERR_CANCEL_CONFLICT', 'already dispatched to one or more targets', {
      reasonCode: 'dispatched',
      targets: dispatched.rows.map((t) => t.target),
    });
  }
  const events = await client.query<{ status: string; leased: boolean; claimed: boolean }>(
    `SELECT status, (lease_until IS NOT NULL AND lease_until > now()) AS leased, attempts > 0 AS claimed
       FROM outbox WHERE request_id = $1 AND topic = $2 ${lockEvent ? 'FOR UPDATE NOWAIT' : ''}`,
    [requestId, REQUESTED_TOPIC],
  );
  if (events.rows.some((e) => e.status === 'sent' || e.leased)) {
    throw problem('ERR_CANCEL_CONFLICT', 'the erasure event has already been published', {
      reasonCode: 'published',
    });
  }
  if (events.rows.some((e) => e.claimed)) {
    throw problem(
      'ERR_CANCEL_CONFLICT',
      'the erasure event has been handed to Kafka before and may be out; it will be published',
      { reasonCode: 'publishing' },
    );
  }
}
