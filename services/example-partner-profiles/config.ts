import { ConfigurationError } from '../shared/errors.ts';
import { boolSetting, collectInfraConfig, intSetting } from '../shared/infra-config.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';

export interface ProfilesPartnerConfig {
  readonly kafkaBrokers: readonly string[];
  readonly schemaRegistryUrl: string;
  /** PROFILES_PARTNER_TOPIC: the compacted profile store, created if missing. Default `partner.profiles.v1`. */
  readonly topic: string;
  /** PROFILES_PARTNER_TARGET: the registered target name. Default `profiles` (user_id). */
  readonly target: string;
  /** PROFILES_PARTNER_GROUP: consumer group for erasure events. Default `erasure-partner.<target>`. */
  readonly groupId: string;
  /** PROFILES_PARTNER_FROM_BEGINNING: `true` (default) or `false` in any case, where a new group starts. */
  readonly fromBeginning: boolean;
  /** PROFILES_PARTNER_SCAN_TIMEOUT_MS: longest read of the store to its end, 1 000 to 600 000 ms. Default 20 000. */
  readonly scanTimeoutMs: number;
  readonly logLevel: string;
}

const NAME = /^[A-Za-z0-9._-]{1,200}$/;

/** Reads and validates once; every problem is reported together. */
export function loadProfilesPartnerConfig(env: NodeJS.ProcessEnv): ProfilesPartnerConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const topic = env['PROFILES_PARTNER_TOPIC'] || 'partner.profiles.v1';
  if (!NAME.test(topic)) problems.push('PROFILES_PARTNER_TOPIC must be 1 to 200 of A-Z a-z 0-9 . _ -');
  const target = env['PROFILES_PARTNER_TARGET'] || 'profiles';
  if (!NAME.test(target)) problems.push('PROFILES_PARTNER_TARGET must be 1 to 200 of A-Z a-z 0-9 . _ -');
  const groupId = env['PROFILES_PARTNER_GROUP'] || `erasure-partner.${target}`;
  if (!NAME.test(groupId)) problems.push('PROFILES_PARTNER_GROUP must be 1 to 200 of A-Z a-z 0-9 . _ -');
  const fromBeginning = boolSetting(env, problems, 'PROFILES_PARTNER_FROM_BEGINNING', true);
  const scanTimeoutMs = intSetting(env, problems, 'PROFILES_PARTNER_SCAN_TIMEOUT_MS', 20_000, 1000, 600_000);
  const logLevel = logLevelSetting(env, problems);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    kafkaBrokers: infra.kafkaBrokers,
    schemaRegistryUrl: infra.schemaRegistryUrl,
    topic,
    target,
    groupId,
    fromBeginning,
    scanTimeoutMs,
    logLevel,
  });
}
