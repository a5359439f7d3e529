import { ConfigurationError } from '../shared/errors.ts';
import { collectInfraConfig, intSetting, type DatabaseTimeouts } from '../shared/infra-config.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';

export type CrmAuthType = 'bearer' | 'hmac_sha256';

export interface CrmPartnerConfig {
  /** DATABASE_URL: the admin connection used only to create the partner's own database. */
  readonly adminDatabaseUrl: string;
  readonly databaseTimeouts: DatabaseTimeouts;
  /** CRM_PARTNER_DATABASE: the partner's own database, created if missing. Default `partner_crm`. */
  readonly database: string;
  /** CRM_PARTNER_HOST: the address the delete API listens on. Default `127.0.0.1`. */
  readonly host: string;
  /** CRM_PARTNER_PORT: its port, 0 to 65535; 0 (default) picks a free one. */
  readonly port: number;
  /** CRM_PARTNER_TARGET: the name its sync_http target is registered under. Default `crm`. */
  readonly target: string;
  /** CRM_PARTNER_AUTH: `hmac_sha256` (default) or `bearer`, the `http.auth.type` the target is registered with. */
  readonly authType: CrmAuthType;
  /**
   * CRM_PARTNER_SECRET_REF: the target's `http.auth.secretRef`. Default `DEMO_CRM`. The secret
   * itself is ERASURE_SECRET_<ref>, the variable the sync dispatcher reads, so both sides
   * share one value. Required; never logged.
   */
  readonly secretRef: string;
  readonly secret: string;
  /** CRM_PARTNER_HMAC_MAX_SKEW_SECONDS: oldest (or most future) signature timestamp accepted, 1 to 3600 s. Default 300. */
  readonly hmacMaxSkewSeconds: number;
  readonly logLevel: string;
}

// The name is interpolated into CREATE DATABASE (identifiers cannot be bound parameters).
const DATABASE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const TARGET_NAME = /^[a-z][a-z0-9_.-]{1,62}$/;
// The dispatcher's rule for secret references (ERASURE_SECRET_<REF>).
const SECRET_REF = /^[A-Z][A-Z0-9_]{0,63}$/;
const SECRET_ENV_PREFIX = 'ERASURE_SECRET_';

/** Reads and validates once; every problem is reported together (never a secret's value). */
export function loadCrmPartnerConfig(env: NodeJS.ProcessEnv): CrmPartnerConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const database = env['CRM_PARTNER_DATABASE'] || 'partner_crm';
  if (!DATABASE_NAME.test(database))
    problems.push('CRM_PARTNER_DATABASE must be 1 to 63 of a-z 0-9 _, not starting with a digit');
  const host = env['CRM_PARTNER_HOST'] || '127.0.0.1';
  const port = intSetting(env, problems, 'CRM_PARTNER_PORT', 0, 0, 65535);
  const target = env['CRM_PARTNER_TARGET'] || 'crm';
  if (!TARGET_NAME.test(target)) problems.push(`CRM_PARTNER_TARGET must match ${TARGET_NAME.source}`);
  const authType = env['CRM_PARTNER_AUTH'] || 'hmac_sha256';
  if (authType !== 'bearer' && authType !== 'hmac_sha256')
    problems.push('CRM_PARTNER_AUTH must be bearer or hmac_sha256');
  const secretRef = env['CRM_PARTNER_SECRET_REF'] || 'DEMO_CRM';
  let secret = '';
  if (!SECRET_REF.test(secretRef)) problems.push(`CRM_PARTNER_SECRET_REF must match ${SECRET_REF.source}`);
  else {
    secret = env[`${SECRET_ENV_PREFIX}${secretRef}`] ?? '';
    // At least 16 characters: a guessable secret would let anyone erase this store's contacts.
    if (secret.length < 16 || !/^[\x20-\x7e]+$/.test(secret))
      problems.push(`${SECRET_ENV_PREFIX}${secretRef} must be set to at least 16 printable ASCII characters`);
  }
  const hmacMaxSkewSeconds = intSetting(env, problems, 'CRM_PARTNER_HMAC_MAX_SKEW_SECONDS', 300, 1, 3600);
  const logLevel = logLevelSetting(env, problems);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    adminDatabaseUrl: infra.databaseUrl,
    databaseTimeouts: infra.databaseTimeouts,
    database,
    host,
    port,
    target,
    authType: authType as CrmAuthType,
    secretRef,
    secret,
    hmacMaxSkewSeconds,
    logLevel,
  });
}
