import type { Kafka, Producer } from 'kafkajs';
import { readTopicToEnd } from './read-topic-to-end.ts';

export interface Profile {
  readonly userId: string;
  readonly [field: string]: unknown;
}

/** A user's profile in the compacted topic: key = user_id, value = JSON, null = erased. */
export function createProfilesStore(deps: {
  kafka: Kafka;
  producer: Producer;
  topic: string;
  scanTimeoutMs: number;
}) {
  const { kafka, producer, topic, scanTimeoutMs } = deps;
  // acks=-1: a tombstone counts as written only once every in-sync replica has it.
  const send = (messages: { key: string; value: string | null }[]) =>
    producer.send({ topic, acks: -1, messages });
  return {
    async seed(profiles: readonly Profile[]): Promise<void> {
      if (profiles.length === 0) return;
      await send(profiles.map((p) => ({ key: p.userId, value: JSON.stringify(p) })));
    },
    async tombstone(userIds: readonly string[]): Promise<void> {
      if (userIds.length > 0) await send(userIds.map((key) => ({ key, value: null })));
    },
    /**
     * The latest value per wanted key, read from the whole log (null: erased or never written).
     * A full scan per call: fine for an example store; a real service keeps a materialised
     * view (a state store) and would still prove from the log.
     */
    async latest(userIds: readonly string[]): Promise<Map<string, Profile | null>> {
      const wanted = new Set(userIds);
      const found = new Map<string, Profile | null>(userIds.map((u) => [u, null]));
      await readTopicToEnd(
        kafka,
        topic,
        (m) => {
          const key = m.key?.toString('utf8');
          if (key === undefined || !wanted.has(key)) return;
          found.set(key, m.value === null ? null : (JSON.parse(m.value.toString('utf8')) as Profile));
        },
        scanTimeoutMs,
      );
      return found;
    },
  };
}

export type ProfilesStore = ReturnType<typeof createProfilesStore>;
