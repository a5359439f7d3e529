// Every service in a process registers its metrics in one registry: the API serves them on
// /metrics, and a process without the API serves them on METRICS_PORT.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startServices } from '../../services/main.ts';
import { join } from 'node:path';
import { migrate } from '../../services/shared/db/migrate.ts';
import { ensureTopics, loadTopicDefinitions } from '../../services/shared/event-log.ts';
import type { RunningService } from '../../services/shared/service-group.ts';
import { SCHEMAS_SQL } from '../helpers/api.ts';
import { createTestDatabase, testKafka, uniqueName } from '../helpers/infra.ts';
import { REPO_ROOT } from '../../scripts/stack/stack-config.ts';

describe('process metrics', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, SCHEMAS_SQL);
    // The services start on the contract's topics: created here, not left to an earlier test.
    const admin = testKafka('metrics').admin();
    await admin.connect();
    await ensureTopics(admin, await loadTopicDefinitions(join(REPO_ROOT, 'schemas')));
    await admin.disconnect();
    env = {
      ...process.env,
      DATABASE_URL: db.url,
      PORT: '0',
      HOST: '127.0.0.1',
      ERASURE_ADMIN_TOKEN: `adm_${randomBytes(24).toString('base64url')}`,
      ACK_CONSUMER_GROUP: uniqueName('metrics-acks'),
      ACK_CONSUMER_FROM_BEGINNING: 'false',
      LOG_LEVEL: 'error',
    };
  });
  after(async () => db?.drop());

  const stopAll = async (running: RunningService[]) => {
    for (const r of [...running].reverse()) await r.stop();
  };

  it('the API serves the relay, ack consumer and sync dispatcher metrics of its process', async () => {
    const running = await startServices(['api', 'relay', 'ack-consumer', 'sync-dispatcher'], env);
    try {
      const text = await (await fetch(`${running[0]!.url}/metrics`)).text();
      for (const name of [
        'erasure_api_http_request_duration_seconds',
        'erasure_relay_published_total',
        'erasure_acks_consumed_total',
        'erasure_sync_calls_total',
        'erasure_api_process_resident_memory_bytes',
      ])
        assert.match(text, new RegExp(`^# HELP ${name} `, 'm'), name);
    } finally {
      await stopAll(running);
    }
  });

  it('labels API latency by mount path and route pattern, never by the id in the URL', async () => {
    const running = await startServices(['api'], env);
    try {
      const url = running[0]!.url;
      const auth = { authorization: `Bearer ${env['ERASURE_ADMIN_TOKEN']}` };
      const id = randomUUID();
      await (await fetch(`${url}/v1/erasure-requests/${id}`, { headers: auth })).text();
      const post = await fetch(`${url}/v1/erasure-requests`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json', 'idempotency-key': 'metrics-label' },
        body: '{}',
      });
      assert.equal(post.status, 400);
      const text = await (await fetch(`${url}/metrics`)).text();
      const routes = new Set(
        [...text.matchAll(/^erasure_api_http_request_duration_seconds_count\{[^}]*route="([^"]*)"/gm)].map(
          (m) => m[1],
        ),
      );
      assert.ok(routes.has('/v1/erasure-requests/:id'), [...routes].join(' '));
      assert.ok(routes.has('/v1/erasure-requests'), [...routes].join(' '));
      assert.ok(!text.includes(id));
    } finally {
      await stopAll(running);
    }
  });

  it('a process without the API serves them on METRICS_PORT, and refuses a bad port', async () => {
    const running = await startServices(['relay'], { ...env, METRICS_PORT: '0' });
    try {
      const url = running[0]!.url;
      const res = await fetch(url);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, /^# HELP erasure_relay_published_total /m);
      assert.match(text, /^# HELP erasure_process_resident_memory_bytes /m);
      assert.equal((await fetch(url.replace('/metrics', '/other'))).status, 404);
    } finally {
      await stopAll(running);
    }
    await assert.rejects(startServices(['relay'], { ...env, METRICS_PORT: 'eighty' }), /METRICS_PORT/);
  });
});
