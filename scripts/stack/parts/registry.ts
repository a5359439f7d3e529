import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOCAL_DEFAULTS } from '../../../services/shared/infra-config.ts';
import { livePid, spawnDaemon, stopDaemon, waitUntil } from '../processes.ts';
import { StackError } from '../stack-error.ts';
import { mavenUnpack, renderTemplate, requireJava } from '../toolchain.ts';
import type { StackConfig } from '../stack-config.ts';
import type { Part } from './part.ts';

export const APICURIO_VERSION = '3.0.9';
const APICURIO_ARTIFACT = `io.apicurio:apicurio-registry-app:${APICURIO_VERSION}:zip:all`;
export const REGISTRY_HEALTH_SUBJECT = '_stack.health-value';

function jdbcUrlFor(cfg: StackConfig): { url: string; user: string; password: string } {
  if (!cfg.infra.external.postgres) {
    return {
      url: `jdbc:postgresql://127.0.0.1:${cfg.ports.postgresPort}/apicurio`,
      user: LOCAL_DEFAULTS.postgresUser,
      password: LOCAL_DEFAULTS.postgresPassword,
    };
  }
  const u = new URL(cfg.infra.databaseUrl);
  return {
    url: `jdbc:postgresql://${u.host}/apicurio`,
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
  };
}

export function createRegistryPart(cfg: StackConfig): Part {
  const name = 'registry';
  const external = cfg.infra.external.registry;
  const logFile = join(cfg.logsDir, 'registry.log');
  const pidFile = join(cfg.runDir, 'registry.pid');
  const workDir = join(cfg.dataDir, 'registry');
  const port = cfg.ports.registryPort;
  const baseUrl = external ? cfg.infra.schemaRegistryUrl : `http://127.0.0.1:${port}/apis/ccompat/v7`;
  let distDir = '';

  return {
    name,
    processCount: 1,
    dependsOn: ['postgres'],
    external,
    endpoint: baseUrl,
    logFile,
    ports: [port],
    async fetch() {
      if (external) return;
      requireJava(name);
      distDir = await mavenUnpack(cfg, name, APICURIO_ARTIFACT, `apicurio-registry-${APICURIO_VERSION}`);
    },
    running() {
      const pid = livePid(pidFile);
      return pid === undefined ? [] : [pid];
    },
    async start() {
      const db = jdbcUrlFor(cfg);
      mkdirSync(join(workDir, 'config'), { recursive: true });
      writeFileSync(
        join(workDir, 'config', 'application.properties'),
        renderTemplate(cfg, 'registry/application.properties', {
          PORT: port,
          JDBC_URL: db.url,
          DB_USER: db.user,
          DB_PASSWORD: db.password,
        }),
        { mode: 0o600 },
      );
      spawnDaemon({
        command: 'java',
        args: [
          '-Xms128m',
          '-Xmx384m',
          '-XX:+UseSerialGC',
          '-XX:TieredStopAtLevel=1',
          '-Djava.util.logging.manager=org.jboss.logmanager.LogManager',
          '-jar',
          join(distDir, `apicurio-registry-app-${APICURIO_VERSION}-runner.jar`),
        ],
        cwd: workDir,
        logFile,
        pidFile,
      });
    },
    async probe(timeoutMs) {
      const pid = external ? undefined : livePid(pidFile);
      // Register a schema and fetch it back by the id the registry answered.
      const schema = JSON.stringify({
        type: 'record',
        name: 'StackHealth',
        namespace: 'dev.erasure.stack',
        fields: [{ name: 'probe', type: 'string' }],
      });
      try {
        await waitUntil(
          async () => {
            const res = await fetch(
              `${baseUrl}/subjects/${encodeURIComponent(REGISTRY_HEALTH_SUBJECT)}/versions`,
              {
                method: 'POST',
                headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
                body: JSON.stringify({ schema, schemaType: 'AVRO' }),
                signal: AbortSignal.timeout(5000),
              },
            );
            if (!res.ok) throw new Error(`register answered HTTP ${res.status}`);
            const { id } = (await res.json()) as { id: number };
            const got = await fetch(`${baseUrl}/schemas/ids/${id}`, { signal: AbortSignal.timeout(5000) });
            if (!got.ok) throw new Error(`fetch by id ${id} answered HTTP ${got.status}`);
            const body = (await got.json()) as { schema?: string };
            if (!body.schema || !body.schema.includes('StackHealth'))
              throw new Error(`schema ${id} came back different`);
          },
          { what: 'registering and serving schemas', timeoutMs, pid, intervalMs: 1000 },
        );
      } catch (err) {
        throw new StackError(name, (err as Error).message, external ? undefined : logFile);
      }
    },
    async stop() {
      return stopDaemon(pidFile, 'SIGTERM', 20_000);
    },
  };
}
