/**
 * Which targets to claim for and in what order to start the claimed tasks. Pure.
 *
 * Priorities matter within a target: its capacity is the scarce thing, and a legal request
 * must not wait behind a bulk cleanup for the same partner. Across targets there is nothing
 * to share (each has its own limits), so every target with capacity claims in the same pass.
 */
export interface ClaimRequest {
  readonly targets: string[];
  /** Most tasks to claim per target, same order as `targets`. */
  readonly limits: number[];
}

/**
 * @param capacities free capacity per (unpaused, sync) target, from its gate.
 * @param maxPerTarget most tasks one target claims per pass (SYNC_MAX_CLAIM).
 */
export function planClaims(capacities: ReadonlyMap<string, number>, maxPerTarget: number): ClaimRequest {
  const targets: string[] = [];
  const limits: number[] = [];
  for (const [target, capacity] of [...capacities].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const n = Math.min(Math.floor(capacity), maxPerTarget);
    if (n > 0) {
      targets.push(target);
      limits.push(n);
    }
  }
  return { targets, limits };
}

export interface DueOrder {
  /** PRIORITY_RANK: 0 legal, 1 normal, 2 bulk. */
  readonly priority: number;
  /** When the task became due (epoch ms). */
  readonly dueAt: number;
  readonly requestId: string;
}

/** Legal before normal before bulk, then the longest-waiting first; request id breaks ties stably. */
export function compareDue(a: DueOrder, b: DueOrder): number {
  return (
    a.priority - b.priority ||
    a.dueAt - b.dueAt ||
    (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0)
  );
}
