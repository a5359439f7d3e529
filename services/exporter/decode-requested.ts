/**
 * Decodes privacy.erasure.requested.v1 values (Confluent wire format: magic byte 0, a 4-byte
 * schema id, then Avro). The schema of each id is fetched from the registry once and kept;
 * after that decoding is synchronous, which matters at hundreds of thousands of events a
 * second (the registry client's decode is a promise per message).
 */
import type { RequestedEvent } from '../shared/event-codec.ts';
import { createSchemaRegistry, type RegistryClientOptions } from '../shared/schema-registry-client.ts';
import { parseRequested, REQUESTED_FINGERPRINT, type RequestedSpans } from './requested-spans.ts';

interface AvroType {
  fromBuffer(buf: Buffer): unknown;
  fingerprint(algorithm: string): Buffer;
}

export class UndecodableEventError extends Error {
  readonly code = 'ERR_EXPORTER_UNDECODABLE';
}

const isString = (v: unknown): v is string => typeof v === 'string';

/**
 * What a decoded event lacks to become dataset rows, or undefined if nothing. avsc decodes
 * with the writer's schema, so a schema registered under the subject without a field the
 * dataset needs (or with another type for it) decodes fine and would fail only in the
 * columnar encoder, leaving the file unwritten and the partition's commits stopped. Names
 * the field, never a value.
 */
function datasetFieldProblem(e: unknown): string | undefined {
  const r = e as Record<string, unknown>;
  for (const f of ['eventId', 'requestId', 'reason', 'priority'])
    if (!isString(r[f])) return `field ${f} missing or not a string`;
  if (!Number.isSafeInteger(r['requestedAt'])) return 'field requestedAt missing or not a long';
  if (!Array.isArray(r['identifiers'])) return 'field identifiers missing or not an array';
  for (const id of r['identifiers'] as unknown[]) {
    const i = id as Record<string, unknown> | null;
    if (!i || !isString(i['type']) || !isString(i['value']))
      return 'field identifiers[].type or .value missing or not a string';
  }
  const redelivery = r['redelivery'] as Record<string, unknown> | null | undefined;
  if (redelivery != null && !isString(redelivery['target']))
    return 'field redelivery.target missing or not a string';
  return undefined;
}

export function createRequestedDecoder(registryUrl: string, opts: RegistryClientOptions = {}) {
  const registry = createSchemaRegistry(registryUrl, opts);
  const types = new Map<number, AvroType>();
  /** Schema ids whose layout is the one requested-spans.ts reads. */
  const sameLayout = new Set<number>();
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
    if (type.fingerprint('sha256').toString('hex') === REQUESTED_FINGERPRINT) sameLayout.add(id);
    return type;
  }

  return {
    /** Throws UndecodableEventError for bytes that can never decode; registry errors pass through. */
    async decode(value: Buffer | null): Promise<RequestedEvent> {
      if (!value || value.length < 6 || value[0] !== 0)
        throw new UndecodableEventError('not in the Confluent wire format');
      const id = value.readInt32BE(1);
      const type = types.get(id) ?? (await load(id));
      let event: unknown;
      try {
        event = type.fromBuffer(value.subarray(5));
      } catch (err) {
        // avsc's messages can quote the bytes; keep only the class name.
        throw new UndecodableEventError(`avro decoding failed: ${(err as Error).name}`);
      }
      const problem = datasetFieldProblem(event);
      if (problem) throw new UndecodableEventError(`schema id ${id}: ${problem}`);
      return event as RequestedEvent;
    },
    /**
     * The fast path, for a value at buf[start, start+len) (len -1: null), read where it is:
     * true if the record's schema is known and has the layout requested-spans.ts reads, and
     * the bytes parsed; `out` then says where the fields are. False otherwise (decode it with
     * decodeKnown or decode).
     */
    spansAt(buf: Buffer, start: number, len: number, out: RequestedSpans): boolean {
      if (len < 6 || buf[start] !== 0) return false;
      if (!sameLayout.has(buf.readInt32BE(start + 1))) return false;
      return parseRequested(buf, start + 5, out, start + len);
    },
    /**
     * Synchronous when the schema id is known (the common case); undefined otherwise, and for
     * bytes or events decode refuses (decode then says why).
     */
    decodeKnown(value: Buffer | null): RequestedEvent | undefined {
      if (!value || value.length < 6 || value[0] !== 0) return undefined;
      const type = types.get(value.readInt32BE(1));
      if (!type) return undefined;
      let event: unknown;
      try {
        event = type.fromBuffer(value.subarray(5));
      } catch {
        return undefined;
      }
      return datasetFieldProblem(event) === undefined ? (event as RequestedEvent) : undefined;
    },
  };
}

export type RequestedDecoder = ReturnType<typeof createRequestedDecoder>;
