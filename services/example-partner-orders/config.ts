import { ConfigurationError } from '../shared/errors.ts';
import { boolSetting, collectInfraConfig, type DatabaseTimeouts } from '../shared/infra-config.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';

export interface OrdersPartnerConfig {
  /** DATABASE_URL: the admin connection used only to create the partner's own database. */
  readonly adminDatabaseUrl: string;
  readonly databaseTimeouts: DatabaseTimeouts;
  /** ORDERS_PARTNER_DATABASE: the partner's own database, created if missing. Default `partner_orders`. */
  readonly database: string;
  readonly kafkaBrokers: readonly string[];
  readonly schemaRegistryUrl: string;
  /** ORDERS_PARTNER_TARGET: the registered target name. Default `orders-db` (user_id, email). */
  readonly target: string;
  /** ORDERS_PARTNER_GROUP: consumer group. Default `erasure-partner.<target>` (the SDK's). */
  readonly groupId: string;
  /** ORDERS_PARTNER_FROM_BEGINNING: `true` (default) or `false` in any case, where a new group starts. */
  readonly fromBeginning: boolean;
  readonly logLevel: string;
}

// The name is interpolated into CREATE DATABASE (identifiers cannot be bound parameters).
const DATABASE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const NAME = /^[A-Za-z0-9._-]{1,200}$/;

/** Reads and validates once; every problem is reported together. */
export function loadOrdersPartnerConfig(env: NodeJS.ProcessEnv): OrdersPartnerConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const database = env['ORDERS_PARTNER_DATABASE'] || 'partner_orders';
  if (!DATABASE_NAME.test(database))
    problems.push('ORDERS_PARTNER_DATABASE must be 1 to 63 of a-z 0-9 _, not starting with a digit');
  const target = env['ORDERS_PARTNER_TARGET'] || 'orders-db';
  if (!NAME.test(target)) problems.push('ORDERS_PARTNER_TARGET must be 1 to 200 of A-Z a-z 0-9 . _ -');
  const groupId = env['ORDERS_PARTNER_GROUP'] || `erasure-partner.${target}`;
  if (!NAME.test(groupId)) problems.push('ORDERS_PARTNER_GROUP must be 1 to 200 of A-Z a-z 0-9 . _ -');
  const fromBeginning = boolSetting(env, problems, 'ORDERS_PARTNER_FROM_BEGINNING', true);
  const logLevel = logLevelSetting(env, problems);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    adminDatabaseUrl: infra.databaseUrl,
    databaseTimeouts: infra.databaseTimeouts,
    database,
    kafkaBrokers: infra.kafkaBrokers,
    schemaRegistryUrl: infra.schemaRegistryUrl,
    target,
    groupId,
    fromBeginning,
    logLevel,
  });
}
