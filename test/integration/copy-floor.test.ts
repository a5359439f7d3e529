// The intake bench's write floor must write what the accept writes, or its figure bounds
// nothing: rows it COPYs into the real PostgreSQL are read back through the API as a
// request with its plan, journal and deadline, like one submitted over HTTP.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { copyBatch, floorBatch, type FloorTarget } from '../../scripts/bench/copy-floor.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';

describe('intake bench: COPY write floor', () => {
  let api: TestApi;
  before(async () => {
    api = await startTestApi();
  });
  after(async () => {
    await api?.stop();
  });

  it('writes requests the API reads back with their tasks, journal and event', async () => {
    for (const [name, kind] of [
      ['floor-a', 'async_event'],
      ['floor-s', 'sync_http'],
    ] as const) {
      const body =
        kind === 'async_event'
          ? { name, kind, identifierTypes: ['user_id'], ackSlaSeconds: 3600 }
          : {
              name,
              kind,
              identifierTypes: ['user_id'],
              http: { method: 'DELETE', urlTemplate: 'https://crm.example.com/u/{{user_id}}' },
            };
      const res = await api.call('POST', '/v1/targets', { body });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
    const token = (
      await api.db.pool.query<{ id: string; owner: string }>(
        `SELECT id, owner FROM api_tokens WHERE 'admin' = ANY (scopes)`,
      )
    ).rows[0]!;
    const targets = (await api.db.pool.query<FloorTarget>('SELECT name, kind FROM targets ORDER BY name'))
      .rows;
    const client = await api.db.pool.connect();
    try {
      await copyBatch(
        client,
        floorBatch({ shape: 'accept', subjects: 3, owner: token.owner, actor: token.id, targets, run: 't' }),
      );
    } finally {
      client.release();
    }
    const { rows } = await api.db.pool.query<{ id: string }>('SELECT id FROM erasure_requests ORDER BY id');
    assert.equal(rows.length, 3);
    const res = await api.call('GET', `/v1/erasure-requests/${rows[0]!.id}`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status, 'scheduled');
    assert.deepEqual(res.body.tasks.map((t: { target: string }) => t.target).sort(), ['floor-a', 'floor-s']);
    assert.ok(res.body.journal.some((j: { kind: string }) => j.kind === 'request.accepted'));
    const outbox = await api.db.pool.query(`SELECT count(*)::int AS n FROM outbox WHERE status = 'pending'`);
    assert.equal(outbox.rows[0].n, 3);
  });
});
