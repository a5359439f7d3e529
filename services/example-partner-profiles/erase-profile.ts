import type { ErasureHandler } from '../../packages/partner-sdk/src/index.ts';
import { MAX_COMPACTION_LAG_MS } from './ensure-profiles-topic.ts';
import type { ProfilesStore } from './profiles-store.ts';

/**
 * Erases the subject's profiles with tombstones, then proves it by reading the log again:
 * the latest value of every user_id must be null. Only keys that hold a profile get a
 * tombstone, since a tombstone for an unknown user would write that user_id into the log.
 * A profile written between the reads fails the proof; the throw makes the SDK retry, and
 * the retry finds and tombstones it. Idempotent: a repeat finds nothing, `not_found`.
 */
export function createProfilesHandler(store: ProfilesStore): ErasureHandler {
  return async ({ identifiers }) => {
    const userIds = [...new Set(identifiers.filter((i) => i.type === 'user_id').map((i) => i.value))];
    if (userIds.length === 0) return { status: 'not_found' };
    const before = await store.latest(userIds);
    const present = userIds.filter((u) => before.get(u) !== null);
    await store.tombstone(present);
    const after = await store.latest(userIds);
    const remaining = userIds.filter((u) => after.get(u) !== null).length;
    if (remaining !== 0) throw new Error(`${remaining} profile(s) still present after the tombstones`);
    // Counts and the compaction bound only: evidence without identifier values.
    const detail = JSON.stringify({
      profilesErased: present.length,
      remaining,
      physicallyGoneWithinMs: MAX_COMPACTION_LAG_MS,
    });
    return { status: present.length > 0 ? 'deleted' : 'not_found', detail };
  };
}
