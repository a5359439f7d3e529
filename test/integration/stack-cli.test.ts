// The stack scripts' bad-input behaviour: one line naming the part, the reason and its log,
// a non-zero exit within a bounded time, and nothing half-started left behind.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, symlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runStack } from '../helpers/stack-cli.ts';

/** A separate stack directory and port range, so these tests never touch the real stack. */
function isolated(offset: number): NodeJS.ProcessEnv {
  return {
    ERASURE_STACK_DIR: mkdtempSync(join(tmpdir(), 'stack-test-')),
    STACK_PORT_OFFSET: String(offset),
    DATABASE_URL: '',
    KAFKA_BROKERS: '',
    SCHEMA_REGISTRY_URL: '',
    S3_ENDPOINT: '',
  };
}

function failureLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('stack: FAILED '));
}

describe('stack:up bad input', () => {
  it('names the part, the taken port and the log when a port is in use', async () => {
    const env = isolated(31_000);
    const port = 9000 + 31_000;
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    try {
      const run = await runStack(['up', '--parts=s3'], env);
      assert.equal(run.code, 1);
      const lines = failureLines(run.stderr);
      assert.equal(lines.length, 1, run.stderr);
      assert.match(lines[0]!, /^stack: FAILED s3: port 40000 is already in use .*\(log: .*s3\.log\)$/);
    } finally {
      blocker.close();
    }
  });

  it('says java is missing instead of failing obscurely', async () => {
    // A PATH holding only node: no java, no mvn.
    const bin = mkdtempSync(join(tmpdir(), 'path-'));
    symlinkSync(process.execPath, join(bin, 'node'));
    const run = await runStack(['up', '--parts=kafka'], { ...isolated(31_100), PATH: bin });
    assert.equal(run.code, 1);
    const lines = failureLines(run.stderr);
    assert.deepEqual(lines, ['stack: FAILED kafka: java not found on PATH; install a Java 17+ runtime']);
  });

  it('reports a failed download through Maven with its log', async () => {
    const env = {
      ...isolated(31_200),
      STACK_MAVEN_REPO: mkdtempSync(join(tmpdir(), 'm2-')),
      STACK_MAVEN_OFFLINE: '1',
    };
    const run = await runStack(['up', '--parts=s3'], env);
    assert.equal(run.code, 1);
    const lines = failureLines(run.stderr);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0]!, /^stack: FAILED s3: fetching through Maven failed: .+\(log: .*s3-fetch\.log\)$/);
  });

  it('gives up on a part that never becomes healthy within the bound, and stops it', async () => {
    const env: NodeJS.ProcessEnv = { ...isolated(31_300), STACK_START_TIMEOUT_MS: '1' };
    const run = await runStack(['up', '--parts=s3'], env);
    assert.equal(run.code, 1);
    const lines = failureLines(run.stderr);
    assert.equal(lines.length, 1, run.stderr);
    assert.match(
      lines[0]!,
      /^stack: FAILED s3: not storing and serving objects after 0 s .*\(log: .*s3\.log\)$/,
    );
    assert.match(run.stderr, /s3: stopping \(rolling back this start\)/);
    // Nothing of ours left running: no pid files remain.
    const runDir = join(env['ERASURE_STACK_DIR']!, 'run');
    mkdirSync(runDir, { recursive: true });
    assert.deepEqual(
      readdirSync(runDir).filter((f) => f.endsWith('.pid')),
      [],
    );
  });
});
