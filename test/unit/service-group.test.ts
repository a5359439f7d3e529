// Stopping a process's services is bounded and never hides a failure: reverse order, a stop
// that throws is logged (ERR_STOP), a stop that hangs is named at the deadline
// (ERR_SHUTDOWN_TIMEOUT), and a service still starting when the stop begins is stopped once
// it has started.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { createLogger } from '../../services/shared/logger.ts';
import { createServiceGroup, type RunningService } from '../../services/shared/service-group.ts';

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d) => (text += d));
  const lines = () =>
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger: createLogger({ service: 'main', stream }), lines };
}

const service = (
  name: string,
  log: string[],
  stop: () => Promise<void> = async () => undefined,
): RunningService => ({
  url: name,
  async stop() {
    log.push(`stop ${name}`);
    await stop();
  },
});

describe('service group', () => {
  it('stops in reverse order of start and reports a clean stop', async () => {
    const { logger, lines } = capture();
    const log: string[] = [];
    const group = createServiceGroup({ shutdownTimeoutMs: 1000, logger });
    await group.add('a', async () => service('a', log));
    await group.add('b', async () => service('b', log));
    assert.deepEqual(
      group.running().map((s) => s.url),
      ['a', 'b'],
    );
    const report = await group.stop();
    assert.deepEqual(log, ['stop b', 'stop a']);
    assert.deepEqual(report, { ok: true, failed: [], pending: [] });
    assert.equal(await group.stop(), report, 'a second stop is the same stop');
    assert.equal(
      await group.add('c', async () => service('c', log)),
      undefined,
      'nothing starts once stopping',
    );
    await sleep(10);
    assert.deepEqual(lines(), []);
  });

  it('a stop that throws is logged as ERR_STOP and fails the report; the others still stop', async () => {
    const { logger, lines } = capture();
    const log: string[] = [];
    const group = createServiceGroup({ shutdownTimeoutMs: 1000, logger });
    await group.add('a', async () => service('a', log));
    await group.add('b', async () =>
      service('b', log, async () => {
        throw new Error('pool.end failed');
      }),
    );
    const report = await group.stop();
    assert.deepEqual(log, ['stop b', 'stop a']);
    assert.deepEqual(report, { ok: false, failed: ['b'], pending: [] });
    await sleep(10);
    const line = lines().find((l) => l['code'] === 'ERR_STOP');
    assert.equal(line?.['serviceName'], 'b');
    assert.match(JSON.stringify(line?.['error']), /pool\.end failed/);
  });

  it('names the services that have not stopped at the deadline (ERR_SHUTDOWN_TIMEOUT)', async () => {
    const { logger, lines } = capture();
    const log: string[] = [];
    const group = createServiceGroup({ shutdownTimeoutMs: 200, logger });
    await group.add('a', async () => service('a', log));
    await group.add('stuck', async () => service('stuck', log, () => new Promise<void>(() => undefined)));
    const t0 = Date.now();
    const report = await group.stop();
    assert.ok(Date.now() - t0 < 1000, `stop took ${Date.now() - t0} ms`);
    assert.deepEqual(report, { ok: false, failed: [], pending: ['stuck'] });
    await sleep(10);
    const line = lines().find((l) => l['code'] === 'ERR_SHUTDOWN_TIMEOUT');
    assert.deepEqual(line?.['services'], ['stuck']);
    assert.equal(line?.['shutdownTimeoutMs'], 200);
  });

  it('a service still starting when the stop begins is stopped once it has started', async () => {
    const { logger } = capture();
    const log: string[] = [];
    const group = createServiceGroup({ shutdownTimeoutMs: 2000, logger });
    await group.add('a', async () => service('a', log));
    let finishStart!: () => void;
    const slow = group.add('slow', async () => {
      await new Promise<void>((resolve) => (finishStart = resolve));
      return service('slow', log);
    });
    const stopping = group.stop();
    await sleep(20);
    assert.deepEqual(log, ['stop a'], 'what has started stops at once');
    finishStart();
    assert.equal(await slow, undefined);
    assert.deepEqual(await stopping, { ok: true, failed: [], pending: [] });
    assert.deepEqual(log, ['stop a', 'stop slow']);
  });

  it('a start that never ends is named as still starting at the deadline', async () => {
    const { logger } = capture();
    const group = createServiceGroup({ shutdownTimeoutMs: 100, logger });
    void group.add('hung', () => new Promise<RunningService>(() => undefined));
    assert.deepEqual((await group.stop()).pending, ['hung (still starting)']);
  });
});
