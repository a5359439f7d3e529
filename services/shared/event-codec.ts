import { createSchemaRegistry, type RegistryClientOptions } from './schema-registry-client.ts';

/** The contract's topics (schemas/topics.json, schemas/avro). */
export const TOPICS = {
  requested: 'privacy.erasure.requested.v1',
  acks: 'privacy.erasure.acks.v1',
  completed: 'privacy.erasure.completed.v1',
} as const;

export interface RequestedEvent {
  eventId: string;
  requestId: string;
  identifiers: { type: string; value: string }[];
  reason: string;
  /** Epoch milliseconds (Avro timestamp-millis). */
  requestedAt: number;
  targets: string[];
  priority: string;
  notBefore: number | null;
  deadline: number;
  redelivery: { attempt: number; target: string } | null;
}

export interface AckEvent {
  requestId: string;
  target: string;
  status: string;
  detail: string | null;
  ackedAt: number;
  eventId: string | null;
}

export interface CompletedEvent {
  requestId: string;
  completedAt: number;
  status: string;
  outcomes: {
    target: string;
    state: string;
    outcome: string | null;
    ackedAt: number | null;
    attempts: number;
  }[];
}

/**
 * Avro in the Confluent wire format through the schema registry. Encodes with the latest
 * registered schema of `<topic>-value` (registered at start-up from schemas/avro), decodes
 * by the id in each message, so a consumer reads any version the registry knows.
 */
export function createEventCodec(registryUrl: string, opts: RegistryClientOptions = {}) {
  const registry = createSchemaRegistry(registryUrl, opts);
  const ids = new Map<string, Promise<number>>();
  const idFor = (topic: string) => {
    let id = ids.get(topic);
    if (!id) {
      id = registry.getLatestSchemaId(`${topic}-value`);
      id.catch(() => ids.delete(topic)); // a failed lookup is retried next time
      ids.set(topic, id);
    }
    return id;
  };
  return {
    async encode(topic: string, value: object): Promise<Buffer> {
      return registry.encode(await idFor(topic), value);
    },
    async decode<T>(message: Buffer): Promise<T> {
      return (await registry.decode(message)) as T;
    },
  };
}

export type EventCodec = ReturnType<typeof createEventCodec>;

/**
 * Whether a failed encode or decode may succeed later: the registry unreachable, overloaded
 * or failing (connection errors, 5xx, 429). Anything else (an unknown schema id, bytes the
 * schema cannot read) fails the same way every time. The client reports a refused
 * connection as status 400, so the message is read too.
 */
export function isRetriableRegistryError(err: unknown): boolean {
  const e = err as { status?: unknown; message?: unknown };
  if (typeof e.status === 'number' && (e.status >= 500 || e.status === 429)) return true;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|socket hang up|timed? ?out/i.test(
    String(e.message),
  );
}

const millis = (v: unknown): number => {
  const t = typeof v === 'number' ? v : Date.parse(String(v));
  if (!Number.isFinite(t)) throw new Error('event timestamp is not a date');
  return t;
};

/** The outbox row's JSON (written by the intake statement) as the Avro requested event. */
export function toRequestedEvent(payload: Record<string, unknown>): RequestedEvent {
  return {
    eventId: String(payload['eventId']),
    requestId: String(payload['requestId']),
    identifiers: (payload['identifiers'] as { type: string; value: string }[]).map((i) => ({
      type: i.type,
      value: i.value,
    })),
    reason: String(payload['reason']),
    requestedAt: millis(payload['requestedAt']),
    targets: (payload['targets'] as string[]) ?? [],
    priority: String(payload['priority']),
    notBefore: payload['notBefore'] == null ? null : millis(payload['notBefore']),
    deadline: millis(payload['deadline']),
    redelivery: (payload['redelivery'] as RequestedEvent['redelivery']) ?? null,
  };
}

/** The outbox row's JSON as the Avro completed event. */
export function toCompletedEvent(payload: Record<string, unknown>): CompletedEvent {
  return {
    requestId: String(payload['requestId']),
    completedAt: millis(payload['completedAt']),
    status: String(payload['status']),
    outcomes: ((payload['outcomes'] as Record<string, unknown>[]) ?? []).map((o) => ({
      target: String(o['target']),
      state: String(o['state']),
      outcome: o['outcome'] == null ? null : String(o['outcome']),
      ackedAt: o['ackedAt'] == null ? null : millis(o['ackedAt']),
      attempts: Number(o['attempts'] ?? 0),
    })),
  };
}
