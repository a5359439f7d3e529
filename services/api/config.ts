import { ConfigurationError } from '../shared/errors.ts';
import { ConfigError, loadInfraConfig, type InfraConfig } from '../shared/infra-config.ts';

export interface ApiConfig {
  readonly infra: InfraConfig;
  /** PORT, default 8080. */
  readonly port: number;
  /** HOST, the interface to listen on; default 127.0.0.1 (0.0.0.0 in a container). */
  readonly host: string;
  /** ERASURE_ADMIN_TOKEN: bootstraps an admin bearer token at start-up (unset: none). */
  readonly adminToken: string | undefined;
  /** LOG_LEVEL: error | warn | info | debug, default info. */
  readonly logLevel: string;
}

export function loadApiConfig(env: NodeJS.ProcessEnv): ApiConfig {
  const problems: string[] = [];
  let infra: InfraConfig | undefined;
  try {
    infra = loadInfraConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) problems.push(...err.problems);
    else throw err;
  }
  const port = env['PORT'] ? Number(env['PORT']) : 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) problems.push('PORT must be a TCP port number');
  const adminToken = env['ERASURE_ADMIN_TOKEN'] || undefined;
  if (adminToken !== undefined && adminToken.length < 16) {
    problems.push('ERASURE_ADMIN_TOKEN must be at least 16 characters');
  }
  const logLevel = env['LOG_LEVEL'] || 'info';
  if (!['error', 'warn', 'info', 'debug'].includes(logLevel))
    problems.push('LOG_LEVEL must be error, warn, info or debug');
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  const host = env['HOST'] || '127.0.0.1';
  return Object.freeze({ infra, port, host, adminToken, logLevel });
}
