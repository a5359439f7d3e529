import type { ErasureHandler } from '../../packages/partner-sdk/src/index.ts';
import type { OrdersMatch, OrdersStore } from './orders-store.ts';

/** Identifier types this store holds; others in the event are not ours to match on. */
export function matchFor(identifiers: readonly { type: string; value: string }[]): OrdersMatch {
  return {
    userIds: identifiers.filter((i) => i.type === 'user_id').map((i) => i.value),
    emails: identifiers.filter((i) => i.type === 'email').map((i) => i.value),
  };
}

/**
 * Deletes every row matching any of the subject's identifiers, then proves it by counting
 * again. A count above zero (a row written between the two statements, say) throws, so the
 * SDK retries and, if it never clears, dead-letters and acks `failed`: the pipeline never
 * records a deletion this store cannot show. Idempotent: a repeat finds nothing, `not_found`.
 */
export function createOrdersHandler(store: OrdersStore): ErasureHandler {
  return async ({ identifiers }) => {
    const match = matchFor(identifiers);
    if (match.userIds.length === 0 && match.emails.length === 0) return { status: 'not_found' };
    const rowsDeleted = await store.deleteMatching(match);
    const remaining = await store.countMatching(match);
    if (remaining !== 0) throw new Error(`${remaining} matching row(s) remain after the delete`);
    // Counts only: the ack detail is evidence in the report and never holds identifier values.
    const detail = JSON.stringify({ rowsDeleted, remaining });
    return { status: rowsDeleted > 0 ? 'deleted' : 'not_found', detail };
  };
}
