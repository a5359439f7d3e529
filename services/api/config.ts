import { ConfigurationError } from '../shared/errors.ts';
import { BEARER_TOKEN } from './auth/authenticate.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';
import { collectInfraConfig, intSetting, type InfraConfig } from '../shared/infra-config.ts';

/** The local development key; a deployment sets ERASURE_HMAC_KEY (start-up warns otherwise). */
export const DEV_HMAC_KEY = 'erasure-local-development-hmac-key-not-for-production';

export interface ApiConfig {
  readonly infra: InfraConfig;
  /** PORT, default 8080. */
  readonly port: number;
  /** HOST, the interface to listen on; default 127.0.0.1 (0.0.0.0 in a container). */
  readonly host: string;
  /** ERASURE_ADMIN_TOKEN: bootstraps an admin bearer token at start-up (unset: none). */
  readonly adminToken: string | undefined;
  /** ERASURE_HMAC_KEY: key for subject and identifier HMACs, at least 32 characters. */
  readonly hmacKey: Buffer;
  readonly hmacKeyIsDevDefault: boolean;
  /**
   * RATE_LIMIT_PER_SECOND per token (default 5000) and RATE_LIMIT_BURST (default 2× rate),
   * as this process enforces them: with API_WORKERS > 1 each worker gets its share.
   */
  readonly rateLimitPerSecond: number;
  readonly rateLimitBurst: number;
  /** Body limits in bytes: single requests 64 KiB, batches 8 MiB. */
  readonly bodyLimitBytes: number;
  readonly batchBodyLimitBytes: number;
  /** Batch size limit in requests (default and maximum 10,000). */
  readonly maxBatchSize: number;
  /** How long a token lookup is cached, ms (default 10000): revocation takes effect within it. */
  readonly tokenCacheMs: number;
  /** LOG_LEVEL: error | warn | info | debug, default info. */
  readonly logLevel: string;
  /** DB_POOL_SIZE, default 20. */
  readonly dbPoolSize: number;
  /**
   * API_WORKERS: API processes sharing the port (default 1; cluster.ts). More use more
   * cores; the rate limit, DB pool and caches are per process.
   */
  readonly workers: number;
  /** ACCEPT_MAX_BATCH: most single requests group-committed in one statement (default 500). */
  readonly acceptMaxBatch: number;
  /**
   * ACCEPT_MAX_IN_FLIGHT: accept statements running at once per API process (default 2 with
   * one worker, 1 with several: bigger groups, fewer commits).
   */
  readonly acceptMaxInFlight: number;
  /**
   * HTTP_HEADERS_TIMEOUT_MS (default 20000) and HTTP_REQUEST_TIMEOUT_MS (default 60000): how
   * long a request's headers, and the whole request with its body, may take to arrive before
   * it is answered 408 and its connection closed (slow or stalled clients hold sockets).
   */
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
}

export function loadApiConfig(env: NodeJS.ProcessEnv): ApiConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const int = (name: string, dflt: number, min: number, max: number) =>
    intSetting(env, problems, name, dflt, min, max);
  const port = int('PORT', 8080, 0, 65535);
  const adminToken = env['ERASURE_ADMIN_TOKEN'] || undefined;
  if (adminToken !== undefined && !BEARER_TOKEN.test(adminToken)) {
    problems.push('ERASURE_ADMIN_TOKEN must be 16 to 200 of A-Z a-z 0-9 . _ ~ + / = -');
  }
  const hmacRaw = env['ERASURE_HMAC_KEY'] || undefined;
  if (hmacRaw !== undefined && hmacRaw.length < 32)
    problems.push('ERASURE_HMAC_KEY must be at least 32 characters');
  const logLevel = logLevelSetting(env, problems);
  const rateLimitPerSecond = int('RATE_LIMIT_PER_SECOND', 5000, 1, 1_000_000);
  const rateLimitBurst = int('RATE_LIMIT_BURST', rateLimitPerSecond * 2, 1, 2_000_000);
  const maxBatchSize = int('MAX_BATCH_SIZE', 10_000, 1, 10_000);
  const tokenCacheMs = int('TOKEN_CACHE_MS', 10_000, 0, 300_000);
  const dbPoolSize = int('DB_POOL_SIZE', 20, 1, 500);
  const workers = int('API_WORKERS', 1, 1, 64);
  const acceptMaxBatch = int('ACCEPT_MAX_BATCH', 500, 1, 10_000);
  // Two statements in flight make bigger groups and fewer commits than more; with several
  // workers each keeps one, so the group still has about two (bench-intake: 2 workers at 1
  // each accepted 6–12 % more than 1 worker at 2; at 2 each, no more).
  const acceptMaxInFlight = int('ACCEPT_MAX_IN_FLIGHT', workers > 1 ? 1 : 2, 1, 100);
  const headersTimeoutMs = int('HTTP_HEADERS_TIMEOUT_MS', 20_000, 1000, 300_000);
  const requestTimeoutMs = int('HTTP_REQUEST_TIMEOUT_MS', 60_000, 1000, 3_600_000);
  if (headersTimeoutMs > requestTimeoutMs)
    problems.push('HTTP_HEADERS_TIMEOUT_MS must not be more than HTTP_REQUEST_TIMEOUT_MS');
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    infra,
    port,
    host: env['HOST'] || '127.0.0.1',
    adminToken,
    hmacKey: Buffer.from(hmacRaw ?? DEV_HMAC_KEY, 'utf8'),
    hmacKeyIsDevDefault: hmacRaw === undefined,
    // Per process: connections are spread evenly over the workers (cluster.ts).
    rateLimitPerSecond: rateLimitPerSecond / workers,
    rateLimitBurst: Math.max(1, Math.floor(rateLimitBurst / workers)),
    bodyLimitBytes: 64 * 1024,
    batchBodyLimitBytes: 8 * 1024 * 1024,
    maxBatchSize,
    tokenCacheMs,
    logLevel,
    dbPoolSize,
    workers,
    acceptMaxBatch,
    acceptMaxInFlight,
    headersTimeoutMs,
    requestTimeoutMs,
  });
}
