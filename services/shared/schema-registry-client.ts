import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { DEFAULT_REGISTRY_TIMEOUT_MS } from './infra-config.ts';

type Middleware = NonNullable<ConstructorParameters<typeof SchemaRegistry>[0]['middlewares']>[number];

/**
 * Gives every registry call a timeout (mappersmith's per-request `timeout`: the socket may stay
 * silent that long, connecting included). The client sets none, so a registry that accepts
 * connections and never answers would hold an encode or decode, and the loop and the
 * shutdown waiting on it, forever. A timed-out call fails like a refused connection
 * ("Timeout (N ms)"), which isRetriableRegistryError counts as retriable.
 */
const requestTimeout =
  (timeoutMs: number): Middleware =>
  () => ({
    async prepareRequest(next) {
      const request = await next();
      return request.timeout() ? request : request.enhance({ timeout: timeoutMs });
    },
  });

export interface RegistryClientOptions {
  /** Longest silence on one call, ms. Default DEFAULT_REGISTRY_TIMEOUT_MS (10 000). */
  readonly timeoutMs?: number;
}

/** The registry client every service uses, with a timeout on each call. */
export function createSchemaRegistry(registryUrl: string, opts: RegistryClientOptions = {}): SchemaRegistry {
  return new SchemaRegistry({
    host: registryUrl,
    middlewares: [requestTimeout(opts.timeoutMs ?? DEFAULT_REGISTRY_TIMEOUT_MS)],
  });
}
