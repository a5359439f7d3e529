import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { errorLine, runLogged, tryRun } from './processes.ts';
import { StackError } from './stack-error.ts';
import type { StackConfig } from './stack-config.ts';

/** Fails with one line unless a Java 17+ runtime is on PATH. */
export function requireJava(part: string): void {
  const out = tryRun('java', ['-version']);
  if (out === undefined) throw new StackError(part, 'java not found on PATH; install a Java 17+ runtime');
  const m = /version "(\d+)/.exec(out);
  const major = m ? Number(m[1]) : 0;
  if (major < 17) throw new StackError(part, `java ${m?.[1] ?? '?'} found, Java 17 or newer is required`);
}

export function requireMaven(part: string): void {
  if (tryRun('mvn', ['-v']) === undefined) {
    throw new StackError(
      part,
      'mvn not found on PATH; install Maven 3.8+ (it fetches the stack from Maven Central)',
    );
  }
}

// Pinned so the same plugin resolves on every machine. 2.10 for `copy`/`unpack` of one
// artifact: newer versions insist on reading the artifact's parent POM, which is missing
// on Maven Central for apicurio-registry 3.0.9, though the zip itself is there.
const DEPENDENCY_PLUGIN = 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1';
const DEPENDENCY_PLUGIN_SINGLE = 'org.apache.maven.plugins:maven-dependency-plugin:2.10';

function mavenArgs(cfg: StackConfig): string[] {
  const args = ['-B', '-Dmaven.wagon.rto=120000', '-Dmaven.wagon.http.retryHandler.count=3'];
  if (cfg.mavenRepo) args.push(`-Dmaven.repo.local=${cfg.mavenRepo}`);
  if (cfg.mavenOffline) args.push('--offline');
  return args;
}

async function runMaven(cfg: StackConfig, part: string, args: string[], cwd = cfg.repoRoot): Promise<void> {
  requireMaven(part);
  const logFile = join(cfg.logsDir, `${part}-fetch.log`);
  try {
    await runLogged('mvn', [...mavenArgs(cfg), ...args], {
      cwd,
      logFile,
      timeoutMs: cfg.fetchTimeoutMs,
    });
  } catch (err) {
    // Maven's first [ERROR] line carries the cause; the later ones are help links.
    const detail = errorLine(logFile, /\[ERROR\] \S/, 'first')
      ?.replace(/^.*?\[ERROR\]\s*/, '')
      .replace(/^Failed to execute goal .*? on project [^:]+: /, '');
    throw new StackError(part, `fetching through Maven failed: ${detail ?? (err as Error).message}`, logFile);
  }
}

/**
 * The runtime classpath of infra/<part>/pom.xml, resolved through the local Maven
 * repository (jars stay in ~/.m2; nothing is copied). Cached beside the stack data and
 * reused while the POM is unchanged and every jar still exists, so a warm start runs no Maven.
 */
export async function mavenClasspath(cfg: StackConfig, part: string, pomDir: string): Promise<string> {
  const pom = join(cfg.repoRoot, 'infra', pomDir, 'pom.xml');
  const cache = join(cfg.stackDir, 'dist', `${pomDir}.classpath`);
  if (existsSync(cache) && statSync(cache).mtimeMs >= statSync(pom).mtimeMs) {
    const cp = readFileSync(cache, 'utf8').trim();
    if (cp && cp.split(':').every((jar) => existsSync(jar))) return cp;
  }
  mkdirSync(join(cfg.stackDir, 'dist'), { recursive: true });
  await runMaven(cfg, part, [
    '-f',
    pom,
    `${DEPENDENCY_PLUGIN}:build-classpath`,
    `-Dmdep.outputFile=${cache}`,
  ]);
  const cp = readFileSync(cache, 'utf8').trim();
  if (!cp) throw new StackError(part, `Maven resolved an empty classpath for ${pom}`);
  return cp;
}

/** Unpacks one artifact (group:artifact:version:type:classifier) once into the stack's dist folder. */
export async function mavenUnpack(
  cfg: StackConfig,
  part: string,
  coords: string,
  into: string,
): Promise<string> {
  const dir = join(cfg.stackDir, 'dist', into);
  const marker = join(dir, '.unpacked');
  if (existsSync(marker) && readFileSync(marker, 'utf8').trim() === coords) return dir;
  mkdirSync(join(cfg.stackDir, 'dist'), { recursive: true });
  // Run without a POM, the plugin writes its markers under a literal `${project.basedir}/target`
  // in the working directory (no property moves them in 2.10): the stack's folder, not the repo.
  await runMaven(
    cfg,
    part,
    [
      `${DEPENDENCY_PLUGIN_SINGLE}:unpack`,
      `-Dartifact=${coords}`,
      `-DoutputDirectory=${dir}`,
      '-Dmdep.overWriteReleases=true',
    ],
    join(cfg.stackDir, 'dist'),
  );
  writeFileSync(marker, coords + '\n');
  return dir;
}

/** Fills ${NAME} placeholders in a template under infra/. Unknown names are an error, not blanks. */
export function renderTemplate(
  cfg: StackConfig,
  relPath: string,
  values: Record<string, string | number>,
): string {
  const text = readFileSync(join(cfg.repoRoot, 'infra', relPath), 'utf8');
  return text.replace(/\$\{([A-Z0-9_]+)\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`template infra/${relPath} uses \${${name}}, which has no value`);
    return String(v);
  });
}
