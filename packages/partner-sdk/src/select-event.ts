import type { RequestedEvent } from '../../../services/shared/event-codec.ts';

export type Selection = 'handle' | 'not-for-target' | 'redelivery-for-other-target';

/**
 * Whether this partner must act on an event. A first publication is for every target in
 * `targets`; a redelivery is for its one `redelivery.target` only, even though `targets`
 * still lists everyone (the schema says every other consumer ignores it). Handling another
 * target's redelivery would only produce a duplicate ack, but skipping it keeps partners from
 * re-running deletes for a late neighbour.
 */
export function selectEvent(
  event: Pick<RequestedEvent, 'targets' | 'redelivery'>,
  target: string,
): Selection {
  if (event.redelivery) {
    return event.redelivery.target === target ? 'handle' : 'redelivery-for-other-target';
  }
  return event.targets.includes(target) ? 'handle' : 'not-for-target';
}
