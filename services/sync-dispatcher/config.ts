import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { BackoffPolicy } from '../shared/compute-backoff.ts';
import { ConfigurationError } from '../shared/errors.ts';
import { collectInfraConfig, intSetting, type DatabaseTimeouts } from '../shared/infra-config.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';
import { DEFAULT_AIMD_POLICY, type AimdPolicy } from './aimd-limiter.ts';
import type { BreakerPolicy } from './circuit-breaker.ts';
import { SECRET_ENV_PREFIX } from './render-call.ts';

export interface SyncDispatcherConfig {
  readonly databaseUrl: string;
  readonly databaseTimeouts: DatabaseTimeouts;
  /** SYNC_DISPATCHER_ID: this replica's lease owner name. Default `<hostname>-<pid>-<random>`. */
  readonly dispatcherId: string;
  /** SYNC_POLL_INTERVAL_MS: longest pause between claim passes, 10 to 600 000 ms. Default 1000 (new requests wake it at once). */
  readonly pollIntervalMs: number;
  /** SYNC_TARGET_REFRESH_MS: how often target settings are re-read, 100 to 600 000 ms. Default 5000. */
  readonly targetRefreshMs: number;
  /** SYNC_LEASE_MARGIN_MS: a claim's lease is the target's timeoutMs plus this, 100 to 3 600 000 ms. Default 30 000. */
  readonly leaseMarginMs: number;
  /** SYNC_MAX_CLAIM: most tasks claimed per target per pass, 1 to 1000. Default 64. */
  readonly maxClaimPerTarget: number;
  /**
   * SYNC_REPLICAS: how many dispatcher replicas run, 1 to 1000. Default 1. Limits are enforced
   * per process; each replica takes rateLimitPerSecond / SYNC_REPLICAS and
   * max(1, floor(concurrency / SYNC_REPLICAS)), so together they stay within the registration.
   */
  readonly replicas: number;
  /** SYNC_SHUTDOWN_GRACE_MS: how long stop() lets calls finish before aborting them, 0 to 120 000 ms. Default 10 000. */
  readonly shutdownGraceMs: number;
  /** SYNC_SWEEP_INTERVAL_MS: how often tasks blocked by a failed prerequisite are failed, 50 to 3 600 000 ms. Default 5000. */
  readonly sweepIntervalMs: number;
  /** SYNC_MAX_ATTEMPTS (1 to 1000, default 15) and SYNC_MAX_AGE_SECONDS (60 to 2 592 000, default 604 800): for targets that set none. */
  readonly defaults: { readonly maxAttempts: number; readonly maxAgeMs: number };
  /** SYNC_RETRY_INITIAL_MS (default 1000) and SYNC_RETRY_MAX_MS (default 3 600 000): full-jitter backoff, doubling. */
  readonly backoff: BackoffPolicy;
  /** SYNC_RETRY_AFTER_MAX_MS: longest Retry-After honoured, 0 to 86 400 000 ms. Default 3 600 000. */
  readonly retryAfterCapMs: number;
  /**
   * SYNC_BREAKER_WINDOW_MS (default 30 000), SYNC_BREAKER_MIN_CALLS (default 10),
   * SYNC_BREAKER_FAILURE_PERCENT (default 50), SYNC_BREAKER_COOLDOWN_MS (default 30 000).
   */
  readonly breaker: BreakerPolicy;
  /** SYNC_AIMD_INTERVAL_MS (10 to 600 000, default 1000); the rest of the policy is data (aimd-limiter.ts). */
  readonly aimd: AimdPolicy;
  /** Wait after a failed pass (database down), not configurable by environment. */
  readonly loopBackoff: BackoffPolicy;
  /** ERASURE_SECRET_<REF>: auth secrets by reference; never logged. */
  readonly secrets: ReadonlyMap<string, string>;
  readonly logLevel: string;
}

const SECRET_REF = /^[A-Z][A-Z0-9_]{0,63}$/;

/** Reads and validates the dispatcher's settings once; every problem is reported together. */
export function loadSyncDispatcherConfig(env: NodeJS.ProcessEnv): SyncDispatcherConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const int = (name: string, fallback: number, min: number, max: number) =>
    intSetting(env, problems, name, fallback, min, max);
  const pollIntervalMs = int('SYNC_POLL_INTERVAL_MS', 1000, 10, 600_000);
  const targetRefreshMs = int('SYNC_TARGET_REFRESH_MS', 5000, 100, 600_000);
  const leaseMarginMs = int('SYNC_LEASE_MARGIN_MS', 30_000, 100, 3_600_000);
  const maxClaimPerTarget = int('SYNC_MAX_CLAIM', 64, 1, 1000);
  const replicas = int('SYNC_REPLICAS', 1, 1, 1000);
  const shutdownGraceMs = int('SYNC_SHUTDOWN_GRACE_MS', 10_000, 0, 120_000);
  const sweepIntervalMs = int('SYNC_SWEEP_INTERVAL_MS', 5000, 50, 3_600_000);
  const maxAttempts = int('SYNC_MAX_ATTEMPTS', 15, 1, 1000);
  const maxAgeSeconds = int('SYNC_MAX_AGE_SECONDS', 604_800, 60, 2_592_000);
  const retryInitialMs = int('SYNC_RETRY_INITIAL_MS', 1000, 0, 3_600_000);
  const retryMaxMs = int('SYNC_RETRY_MAX_MS', 3_600_000, 0, 86_400_000);
  if (retryMaxMs < retryInitialMs) problems.push('SYNC_RETRY_MAX_MS must not be below SYNC_RETRY_INITIAL_MS');
  const retryAfterCapMs = int('SYNC_RETRY_AFTER_MAX_MS', 3_600_000, 0, 86_400_000);
  const breakerWindowMs = int('SYNC_BREAKER_WINDOW_MS', 30_000, 100, 3_600_000);
  const breakerMinCalls = int('SYNC_BREAKER_MIN_CALLS', 10, 1, 100_000);
  const breakerPercent = int('SYNC_BREAKER_FAILURE_PERCENT', 50, 1, 100);
  const breakerCooldownMs = int('SYNC_BREAKER_COOLDOWN_MS', 30_000, 10, 3_600_000);
  const aimdIntervalMs = int('SYNC_AIMD_INTERVAL_MS', 1000, 10, 600_000);
  const dispatcherId =
    env['SYNC_DISPATCHER_ID']?.trim() || `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  if (!/^[\x21-\x7e]{1,200}$/.test(dispatcherId))
    problems.push('SYNC_DISPATCHER_ID must be 1 to 200 printable ASCII characters without spaces');

  const secrets = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(SECRET_ENV_PREFIX)) continue;
    const ref = name.slice(SECRET_ENV_PREFIX.length);
    // Problems name the variable, never its value.
    if (!SECRET_REF.test(ref))
      problems.push(`${name}: the part after ${SECRET_ENV_PREFIX} must match ${SECRET_REF.source}`);
    else if (!value || !/^[\x20-\x7e\xa0-\xff]+$/.test(value))
      problems.push(`${name} must be non-empty printable Latin-1 (it is sent in a header)`);
    else secrets.set(ref, value);
  }
  const logLevel = logLevelSetting(env, problems);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    databaseUrl: infra.databaseUrl,
    databaseTimeouts: infra.databaseTimeouts,
    dispatcherId,
    pollIntervalMs,
    targetRefreshMs,
    leaseMarginMs,
    maxClaimPerTarget,
    replicas,
    shutdownGraceMs,
    sweepIntervalMs,
    defaults: Object.freeze({ maxAttempts, maxAgeMs: maxAgeSeconds * 1000 }),
    backoff: Object.freeze({ initialMs: retryInitialMs, maxMs: retryMaxMs, multiplier: 2 }),
    retryAfterCapMs,
    breaker: Object.freeze({
      windowMs: breakerWindowMs,
      minCalls: breakerMinCalls,
      failureRatio: breakerPercent / 100,
      cooldownMs: breakerCooldownMs,
    }),
    aimd: Object.freeze({ ...DEFAULT_AIMD_POLICY, intervalMs: aimdIntervalMs }),
    loopBackoff: Object.freeze({ initialMs: 1000, maxMs: 60_000, multiplier: 2 }),
    secrets,
    logLevel,
  });
}
