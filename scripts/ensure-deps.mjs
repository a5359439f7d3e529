// Installs npm dependencies from the lockfile when they are missing or stale, so that
// `npm start` and `npm test` work on a fresh clone. Plain JS on purpose: it runs before
// anything from node_modules (tsx included) can be assumed to exist.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const major = Number(process.versions.node.split('.')[0]);
if (major < 20) {
  console.error(`setup: Node ${process.versions.node} is too old; this project needs Node 20 or newer`);
  process.exit(1);
}

const lockfile = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.erasure-lock-sha256');
const want = createHash('sha256').update(readFileSync(lockfile)).digest('hex');
const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';

if (have !== want) {
  console.error('setup: installing npm dependencies from package-lock.json (npm ci) ...');
  const res = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: root,
    stdio: 'inherit',
    timeout: 15 * 60_000,
  });
  if (res.status !== 0) {
    console.error('setup: npm ci failed; see the npm output above');
    process.exit(1);
  }
  writeFileSync(stamp, want + '\n');
}

// The exporter's native HMAC (services/exporter/native/hmac_column.c), built when missing or
// stale. Optional: without a C compiler, or if the build fails, the exporter computes the
// same HMACs in JS, slower (it logs which one it uses).
const source = join(root, 'services', 'exporter', 'native', 'hmac_column.c');
const outDir = join(root, 'build', 'native');
const addon = join(outDir, 'hmac_column.node');
const addonStamp = join(outDir, 'hmac_column.sha256');
const sourceSha = createHash('sha256').update(readFileSync(source)).digest('hex');
const built = existsSync(addon) && existsSync(addonStamp) ? readFileSync(addonStamp, 'utf8').trim() : '';
if (built !== sourceSha) {
  mkdirSync(outDir, { recursive: true });
  const cc = process.env.CC || 'cc';
  const headers = join(root, 'node_modules', 'node-api-headers', 'include');
  const args = ['-O2', '-shared', '-fPIC', '-I', headers, '-o', `${addon}.tmp`, source];
  const res = spawnSync(cc, args, { cwd: root, encoding: 'utf8', timeout: 120_000 });
  if (res.status === 0) {
    renameSync(`${addon}.tmp`, addon);
    writeFileSync(addonStamp, sourceSha + '\n');
  } else {
    const why = res.error ? res.error.message : (res.stderr || '').trim().split('\n')[0];
    console.error(`setup: the exporter's native HMAC was not built (${cc}: ${why}); it will use its JS HMAC`);
  }
}
