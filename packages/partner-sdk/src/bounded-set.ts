/**
 * The event ids acked in this run, oldest forgotten first (insertion-ordered Map as an LRU).
 * Bounded because a partner runs for months; forgetting is safe since the pipeline dedupes
 * acks on (requestId, target) and the handler's deletes are idempotent.
 */
export class BoundedSet {
  private readonly items = new Map<string, true>();

  constructor(private readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError('capacity must be a whole number ≥ 1');
  }

  has(key: string): boolean {
    if (!this.items.has(key)) return false;
    // Refresh, so an id seen again (a redelivery storm) is the last to be forgotten.
    this.items.delete(key);
    this.items.set(key, true);
    return true;
  }

  add(key: string): void {
    this.items.delete(key);
    this.items.set(key, true);
    if (this.items.size > this.capacity) {
      const oldest = this.items.keys().next().value;
      if (oldest !== undefined) this.items.delete(oldest);
    }
  }

  delete(key: string): void {
    this.items.delete(key);
  }

  get size(): number {
    return this.items.size;
  }
}
