/**
 * Decodes privacy.erasure.requested.v1 values (Confluent wire format: magic byte 0, a 4-byte
 * schema id, then Avro). The schema of each id is fetched from the registry once and kept;
 * after that decoding is synchronous, which matters at hundreds of thousands of events a
 * second (the registry client's decode is a promise per message).
 */
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { RequestedEvent } from '../shared/event-codec.ts';

interface AvroType {
  fromBuffer(buf: Buffer): unknown;
}

export class UndecodableEventError extends Error {
  readonly code = 'ERR_EXPORTER_UNDECODABLE';
}

export function createRequestedDecoder(registryUrl: string) {
  const registry = new SchemaRegistry({ host: registryUrl });
  const types = new Map<number, AvroType>();
  const loading = new Map<number, Promise<AvroType>>();

  async function load(id: number): Promise<AvroType> {
    let p = loading.get(id);
    if (!p) {
      p = registry.getSchema(id) as unknown as Promise<AvroType>;
      loading.set(id, p);
      p.catch(() => loading.delete(id)); // a failed lookup is tried again next time
    }
    const type = await p;
    types.set(id, type);
    return type;
  }

  return {
    /** Throws UndecodableEventError for bytes that can never decode; registry errors pass through. */
    async decode(value: Buffer | null): Promise<RequestedEvent> {
      if (!value || value.length < 6 || value[0] !== 0)
        throw new UndecodableEventError('not in the Confluent wire format');
      const id = value.readInt32BE(1);
      const type = types.get(id) ?? (await load(id));
      try {
        return type.fromBuffer(value.subarray(5)) as RequestedEvent;
      } catch (err) {
        // avsc's messages can quote the bytes; keep only the class name.
        throw new UndecodableEventError(`avro decoding failed: ${(err as Error).name}`);
      }
    },
    /** Synchronous when the schema id is known (the common case); undefined otherwise. */
    decodeKnown(value: Buffer | null): RequestedEvent | undefined {
      if (!value || value.length < 6 || value[0] !== 0) return undefined;
      const type = types.get(value.readInt32BE(1));
      if (!type) return undefined;
      try {
        return type.fromBuffer(value.subarray(5)) as RequestedEvent;
      } catch {
        return undefined;
      }
    },
  };
}

export type RequestedDecoder = ReturnType<typeof createRequestedDecoder>;
