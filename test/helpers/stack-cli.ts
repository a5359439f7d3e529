import { spawn } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const cli = join(root, 'scripts', 'stack', 'cli.ts');

export interface StackRun {
  code: number | null;
  stderr: string;
  stdout: string;
  ms: number;
}

/** Runs the stack CLI as a user would, with a hard bound so a hang fails the test. */
export function runStack(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 180_000): Promise<StackRun> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], {
      cwd: root,
      env: { ...process.env, NODE_NO_WARNINGS: '1', ...env },
    });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`stack ${args.join(' ')} hung for ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout, ms: Date.now() - t0 });
    });
  });
}

export const repoRoot = root;
