// The intake bench's write floor builds rows in COPY's text format by hand: every line must
// have one field per column, and the outbox payload must be an event the relay can encode.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { floorBatch, type FloorTarget } from '../../scripts/bench/copy-floor.ts';
import { toRequestedEvent } from '../../services/shared/event-codec.ts';

const targets: FloorTarget[] = [
  { name: 'orders', kind: 'async_event' },
  { name: 'crm', kind: 'sync_http' },
  { name: 'profiles', kind: 'async_event' },
];
const spec = { subjects: 4, owner: 'owner-1', actor: 'token-1', targets, run: 'r1' };

const fields = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split('\t'));

test('copy floor, accept shape: a request, a task per target, a journal entry and an outbox row per subject', () => {
  const parts = floorBatch({ ...spec, shape: 'accept' });
  assert.deepEqual(
    parts.map((p) => [p.table, p.rows]),
    [
      ['erasure_requests', 4],
      ['erasure_tasks', 12],
      ['journal', 4],
      ['outbox', 4],
    ],
  );
  for (const p of parts) {
    const lines = fields(p.text);
    assert.equal(lines.length, p.rows, p.table);
    for (const l of lines) assert.equal(l.length, p.columns.length, `${p.table}: ${l.join('|')}`);
  }
  const requests = fields(parts[0]!.text);
  const col = (name: string) => parts[0]!.columns.indexOf(name);
  assert.equal(new Set(requests.map((r) => r[col('idempotency_key')])).size, 4, 'keys are unique');
  for (const r of requests) {
    // COPY's text format reads `\\x` as `\x`, bytea's hex input.
    assert.match(r[col('subject_hash')]!, /^\\\\x[0-9a-f]{64}$/);
    assert.equal(r[col('owner')], 'owner-1');
  }
  const ids = requests.map((r) => r[col('id')]);
  const tasks = fields(parts[1]!.text);
  assert.deepEqual(
    ids.map((id) => tasks.filter((t) => t[0] === id).map((t) => t[1])),
    ids.map(() => ['orders', 'crm', 'profiles']),
  );
  for (const [i, o] of fields(parts[3]!.text).entries()) {
    const event = toRequestedEvent(JSON.parse(o[2]!) as Record<string, unknown>);
    assert.equal(event.requestId, ids[i]);
    assert.deepEqual(event.targets, ['orders', 'profiles'], 'the async targets only, sorted');
    assert.equal(o[3], ids[i]);
  }
  const detail = JSON.parse(fields(parts[2]!.text)[0]![3]!) as { targets: string[] };
  assert.deepEqual(detail.targets, ['crm', 'orders', 'profiles']);
});

test('copy floor, lean shape: only the request and outbox rows', () => {
  const parts = floorBatch({ ...spec, shape: 'lean' });
  assert.deepEqual(
    parts.map((p) => [p.table, p.rows]),
    [
      ['erasure_requests', 4],
      ['outbox', 4],
    ],
  );
});
