import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { LOCAL_DEFAULTS } from '../../../services/shared/infra-config.ts';
import { livePid, runLogged, spawnDaemon, stopDaemon, waitUntil } from '../processes.ts';
import { StackError } from '../stack-error.ts';
import { renderTemplate } from '../toolchain.ts';
import type { StackConfig } from '../stack-config.ts';
import type { Part } from './part.ts';

/** Databases the stack needs: the pipeline's own and the schema registry's storage. */
export const STACK_DATABASES = ['erasure', 'apicurio'] as const;

function findBinDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(base, versions[0], 'bin') : undefined;
}

function uidGid(user: string): { uid: number; gid: number } | undefined {
  const res = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const res2 = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  if (res.status !== 0 || res2.status !== 0) return undefined;
  return { uid: Number(res.stdout.trim()), gid: Number(res2.stdout.trim()) };
}

export function createPostgresPart(cfg: StackConfig): Part {
  const name = 'postgres';
  const logFile = join(cfg.logsDir, 'postgres.log');
  const dataDir = join(cfg.dataDir, 'postgres');
  const pidFile = join(cfg.runDir, 'postgres.pid');
  const port = cfg.ports.postgresPort;
  // PostgreSQL refuses to run as root; as root we run it as Debian's `postgres` user.
  const asRoot = process.getuid?.() === 0;
  let binDir = findBinDir();

  const asOwner = (cmd: string, args: string[]): [string, string[]] =>
    asRoot
      ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', cmd, ...args]]
      : [cmd, args];

  async function installDebianPackage(): Promise<void> {
    const installLog = join(cfg.logsDir, 'postgres-install.log');
    if (!asRoot || spawnSync('which', ['apt-get']).status !== 0) {
      throw new StackError(
        name,
        'PostgreSQL server not found; install Debian\'s "postgresql" package or set DATABASE_URL',
      );
    }
    process.stderr.write('stack: postgres: installing Debian package "postgresql" with apt-get ...\n');
    // Debian's package would create and start its own cluster on 5432; we run our own.
    mkdirSync('/etc/postgresql-common', { recursive: true });
    writeFileSync('/etc/postgresql-common/createcluster.conf', 'create_main_cluster = false\n');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    try {
      await runLogged('apt-get', ['update', '-q'], {
        env,
        logFile: installLog,
        timeoutMs: cfg.fetchTimeoutMs,
      });
      await runLogged('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'postgresql'], {
        env,
        logFile: installLog,
        timeoutMs: cfg.fetchTimeoutMs,
      });
    } catch (err) {
      throw new StackError(name, `apt-get install postgresql failed: ${(err as Error).message}`, installLog);
    }
    binDir = findBinDir();
    if (!binDir)
      throw new StackError(
        name,
        'postgresql installed but no server binaries under /usr/lib/postgresql',
        installLog,
      );
  }

  async function initCluster(): Promise<void> {
    if (!binDir) throw new StackError(name, 'PostgreSQL server not found');
    // Only the cluster directory is private; its parents must stay traversable by `postgres`.
    mkdirSync(cfg.dataDir, { recursive: true });
    chmodSync(cfg.dataDir, 0o755);
    mkdirSync(dataDir, { mode: 0o700 });
    const pwFile = join(cfg.runDir, 'postgres.pw');
    mkdirSync(cfg.runDir, { recursive: true });
    writeFileSync(pwFile, `${LOCAL_DEFAULTS.postgresPassword}\n`, { mode: 0o600 });
    if (asRoot) {
      const owner = uidGid('postgres');
      if (!owner)
        throw new StackError(name, 'running as root but there is no "postgres" user to run the server as');
      chownSync(dataDir, owner.uid, owner.gid);
      chownSync(pwFile, owner.uid, owner.gid);
      const reach = spawnSync('setpriv', [
        '--reuid=postgres',
        '--regid=postgres',
        '--init-groups',
        '--',
        'test',
        '-w',
        dataDir,
      ]);
      if (reach.status !== 0) {
        rmSync(dataDir, { recursive: true, force: true });
        throw new StackError(
          name,
          `the "postgres" user cannot reach ${dataDir}; make its parent folders traversable (chmod o+x) or set ERASURE_STACK_DIR`,
        );
      }
    }
    const [cmd, args] = asOwner(join(binDir, 'initdb'), [
      '-D',
      dataDir,
      '-U',
      LOCAL_DEFAULTS.postgresUser,
      `--pwfile=${pwFile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C.UTF-8',
    ]);
    try {
      await runLogged(cmd, args, { logFile, timeoutMs: 120_000 });
    } catch (err) {
      rmSync(dataDir, { recursive: true, force: true });
      throw new StackError(name, `initdb failed: ${(err as Error).message}`, logFile);
    } finally {
      rmSync(pwFile, { force: true });
    }
    appendFileSync(
      join(dataDir, 'postgresql.conf'),
      '\n' + renderTemplate(cfg, 'postgres/postgresql.conf', { PORT: port }),
    );
  }

  async function connect(database: string): Promise<pg.Client> {
    const client = external
      ? new pg.Client({
          connectionString: withDatabase(cfg.infra.databaseUrl, database),
          connectionTimeoutMillis: 3000,
        })
      : new pg.Client({
          host: '127.0.0.1',
          port,
          user: LOCAL_DEFAULTS.postgresUser,
          password: LOCAL_DEFAULTS.postgresPassword,
          database,
          connectionTimeoutMillis: 3000,
        });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  const external = cfg.infra.external.postgres;
  // On an existing server we only add the registry's database, and only if we run the registry.
  const databasesToEnsure = external ? (cfg.infra.external.registry ? [] : ['apicurio']) : STACK_DATABASES;
  return {
    name,
    processCount: 1,
    dependsOn: [],
    external,
    endpoint: external ? redact(cfg.infra.databaseUrl) : `postgres://127.0.0.1:${port}`,
    logFile,
    ports: [port],
    async fetch() {
      if (external) return;
      if (!binDir) await installDebianPackage();
      if (!existsSync(join(dataDir, 'PG_VERSION'))) await initCluster();
    },
    running() {
      const pid = livePid(pidFile);
      return pid === undefined ? [] : [pid];
    },
    async start() {
      if (!binDir) throw new StackError(name, 'PostgreSQL server not found');
      // A crash can leave postmaster.pid behind; postgres itself checks it is stale.
      const [cmd, args] = asOwner(join(binDir, 'postgres'), ['-D', dataDir, '-p', String(port)]);
      spawnDaemon({ command: cmd, args, cwd: dataDir, logFile, pidFile });
    },
    async probe(timeoutMs) {
      const pid = livePid(pidFile);
      await waitUntil(
        async () => {
          const admin = await connect(external ? databaseOf(cfg.infra.databaseUrl) : 'postgres');
          try {
            // CREATE DATABASE cannot run in a transaction, and IF NOT EXISTS does not exist for it.
            for (const db of databasesToEnsure) {
              const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [db]);
              if (rowCount === 0) await admin.query(`CREATE DATABASE ${db}`).catch(ignoreDuplicateDatabase);
            }
          } finally {
            await admin.end();
          }
          const client = await connect(
            external ? databaseOf(cfg.infra.databaseUrl) : LOCAL_DEFAULTS.postgresDatabase,
          );
          try {
            const { rows } = await client.query<{ ok: number }>('SELECT 1 AS ok');
            if (rows[0]?.ok !== 1) throw new Error('SELECT 1 returned no row');
          } finally {
            await client.end();
          }
        },
        { what: 'answering queries', timeoutMs, pid },
      ).catch((err: Error) => {
        throw new StackError(name, err.message, external ? undefined : logFile);
      });
    },
    async stop() {
      // SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, checkpoint, exit.
      return stopDaemon(pidFile, 'SIGINT', 30_000);
    },
  };
}

function ignoreDuplicateDatabase(err: { code?: string }): void {
  // 42P04 duplicate_database, 23505 unique_violation: another process created it first.
  if (err.code !== '42P04' && err.code !== '23505') throw err;
}

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function databaseOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, '')) || 'postgres';
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
