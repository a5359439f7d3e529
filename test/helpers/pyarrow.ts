/**
 * pyarrow for the dataset tests and benchmarks: a reader that is not our writer. Installed
 * from PyPI into a project-local venv (.stack/pyenv, git-ignored with the rest of .stack)
 * the first time it is needed. A Python without the venv module (Debian splits it into
 * python3-venv) gets that package with apt-get when running as root, as the stack does for
 * PostgreSQL; otherwise the error says what to install.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../scripts/stack/stack-config.ts';
import { infra } from './infra.ts';

export const PYENV_DIR = join(REPO_ROOT, '.stack', 'pyenv');
const PYTHON = join(PYENV_DIR, 'bin', 'python');

function run(cmd: string, args: string[], timeoutMs = 600_000) {
  const res = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return { ok: res.status === 0, out: `${res.stdout ?? ''}${res.stderr ?? ''}`.trim() };
}

/**
 * The local S3 server for a Python script, with the dataset prefix to read: pass it as the
 * script's argument object `a`, then PY_S3_FS opens it.
 */
export function pythonS3Args(prefix: string) {
  return {
    endpoint: new URL(infra.s3.endpoint).host,
    key: infra.s3.accessKeyId,
    secret: infra.s3.secretAccessKey,
    region: infra.s3.region,
    bucket: infra.s3.bucket,
    prefix,
  };
}

/** Python: `fs`, a pyarrow S3FileSystem on the server that `a` (pythonS3Args) names. */
export const PY_S3_FS =
  'fs = pafs.S3FileSystem(endpoint_override=a["endpoint"], scheme="http", access_key=a["key"], secret_key=a["secret"], region=a["region"])';

/**
 * Python: `read_manifest(fs, path)`, a day's manifest as a dict, or None when the day has none.
 * pyarrow's S3 filesystem reads an object with a HEAD, then a ranged GET of the size the HEAD
 * gave; a manifest replaced between the two reads as the new one cut short or padded with
 * stray bytes (it failed CI that way). Such a read never parses, so the reader reads again,
 * as README's reader protocol tells pyarrow users to.
 */
export const PY_READ_MANIFEST = String.raw`
def read_manifest(fs, path):
    import json, time
    for attempt in range(50):
        try:
            with fs.open_input_stream(path) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except ValueError:
            time.sleep(0.02)
    raise RuntimeError("manifest torn on 50 reads in a row: " + path)
`;

let ready: Promise<string> | undefined;

/** The venv's python with pyarrow importable; installs what is missing (minutes, once). */
export function ensurePyarrow(): Promise<string> {
  ready ??= (async () => {
    if (existsSync(PYTHON) && run(PYTHON, ['-c', 'import pyarrow']).ok) return PYTHON;
    process.stderr.write('pyarrow: creating .stack/pyenv and installing pyarrow from PyPI ...\n');
    let venv = run('python3', ['-m', 'venv', '--clear', PYENV_DIR]);
    if (!venv.ok && /ensurepip|venv/i.test(venv.out) && process.getuid?.() === 0) {
      const env = ['-y', '-q', '--no-install-recommends'];
      run('apt-get', ['update', '-q']);
      run('apt-get', ['install', ...env, 'python3-venv']);
      venv = run('python3', ['-m', 'venv', '--clear', PYENV_DIR]);
    }
    if (!venv.ok) throw new Error(`python3 -m venv failed (install python3-venv): ${venv.out.slice(-400)}`);
    const pip = run(join(PYENV_DIR, 'bin', 'pip'), [
      'install',
      '-q',
      '--disable-pip-version-check',
      'pyarrow',
    ]);
    if (!pip.ok) throw new Error(`pip install pyarrow failed: ${pip.out.slice(-400)}`);
    return PYTHON;
  })();
  ready.catch(() => (ready = undefined));
  return ready;
}

/** Runs a Python script with the venv's pyarrow; resolves to its stdout parsed as JSON. */
export async function runPython<T>(
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<T> {
  const python = await ensurePyarrow();
  const res = spawnSync(python, ['-c', script, ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, ...env },
    maxBuffer: 64 << 20,
  });
  if (res.status !== 0) throw new Error(`python failed (${res.status}): ${res.stderr.slice(-2000)}`);
  return JSON.parse(res.stdout.trim().split('\n').at(-1) ?? 'null') as T;
}
