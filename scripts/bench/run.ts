/**
 * `npm run bench -- <name>`: runs one benchmark script and prints its figures.
 * Benchmarks are scripts, not tests: they measure and print; they assert nothing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../stack/stack-config.ts';

const BENCHMARKS: Record<string, string> = {
  stack: 'bench-stack.ts',
  intake: 'bench-intake.ts',
  pipeline: 'bench-pipeline.ts',
  'parquet-writers': 'bench-parquet-writers.ts',
  exporter: 'bench-exporter.ts',
  sync: 'bench-sync.ts',
};

const [name, ...rest] = process.argv.slice(2);
if (!name || !BENCHMARKS[name]) {
  process.stderr.write(`bench: name one of: ${Object.keys(BENCHMARKS).join(', ')}\n`);
  process.exit(2);
}
const script = join(REPO_ROOT, 'scripts', 'bench', BENCHMARKS[name]!);
if (!existsSync(script)) {
  process.stderr.write(`bench: ${script} is missing\n`);
  process.exit(2);
}
const res = spawnSync(process.execPath, ['--import', 'tsx', script, ...rest], { stdio: 'inherit' });
process.exit(res.status ?? 1);
