/**
 * `npm test`: type-check, lint, bring the stack up if it is not running, run every test
 * with node's built-in runner (its summary closes the output), then stop what it started.
 *   --fault     only the fault tests (test/fault), which start their own extra nodes
 *   --unit      only the unit tests (no stack needed)
 * KEEP_STACK=1 leaves a stack this command started running afterwards.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { loadStackConfig, REPO_ROOT } from './stack/stack-config.ts';
import { PART_NAMES, stackDown, stackStatus, stackUp } from './stack/stack.ts';

// Node 20 is this project's baseline; the pinned AWS SDK supports it, so its notice about
// future releases needing Node 22 is noise in every command's output.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

const args = process.argv.slice(2);
const only = args.includes('--fault') ? 'fault' : args.includes('--unit') ? 'unit' : 'all';
const say = (line: string) => process.stderr.write(`test: ${line}\n`);

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (entry.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

function step(name: string, cmd: string, cmdArgs: string[]): boolean {
  say(`${name} ...`);
  const res = spawnSync(cmd, cmdArgs, { cwd: REPO_ROOT, stdio: 'inherit' });
  if (res.status !== 0) say(`${name} FAILED`);
  return res.status === 0;
}

async function main(): Promise<number> {
  let ok = true;
  if (only !== 'fault') {
    ok =
      step('type-check (tsc --noEmit)', 'npx', ['--no-install', 'tsc', '--noEmit', '-p', 'tsconfig.json']) &&
      ok;
    ok = step('lint (eslint, prettier --check)', 'npx', ['--no-install', 'eslint', '.']) && ok;
    ok = step('format', 'npx', ['--no-install', 'prettier', '--check', '--log-level=warn', '.']) && ok;
  }

  const dirs =
    only === 'unit' ? ['unit'] : only === 'fault' ? ['fault'] : ['unit', 'integration', 'e2e', 'fault'];
  const files = dirs.flatMap((d) => {
    try {
      return findTests(join(REPO_ROOT, 'test', d));
    } catch {
      return [];
    }
  });

  let startedHere = false;
  const cfg = loadStackConfig(process.env);
  if (only !== 'unit') {
    const before = await stackStatus(cfg);
    startedHere = before.some((s) => s.state === 'stopped');
    say('bringing the stack up (npm run stack:up) ...');
    const { failures } = await stackUp(cfg, PART_NAMES, (l) => say(`stack: ${l}`));
    if (failures.length > 0) {
      for (const f of failures) say(`stack FAILED ${f.line(process.cwd())}`);
      return 1;
    }
  }

  say(`running ${files.length} test files: ${files.map((f) => relative(REPO_ROOT, f)).join(' ')}`);
  const res = spawnSync(
    process.execPath,
    // Not --test-force-exit: on node 20 it ended files before their last tests ran (CI
    // reported a dozen tests fewer, with no failure). A leaked handle is fixed where it is.
    ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', ...files],
    { cwd: REPO_ROOT, stdio: 'inherit', env: { ...process.env, NODE_NO_WARNINGS: '1' } },
  );
  ok = res.status === 0 && ok;

  if (startedHere && process.env['KEEP_STACK'] !== '1') {
    say('stopping the stack this run started (KEEP_STACK=1 keeps it)');
    await stackDown(cfg, (l) => say(`stack: ${l}`));
  }
  if (!ok) say('FAILED (see above)');
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(`FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(1);
  },
);
