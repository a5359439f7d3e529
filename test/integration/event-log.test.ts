// The event-log contract against the real stack: topics from schemas/topics.json, the Avro
// schemas in schemas/avro, and their registration in Apicurio. Topics and subjects under test
// carry a random prefix, so the real ones (created by npm start) are never touched.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import kafkajs, { type Admin } from 'kafkajs';
import {
  canonicalAvro,
  ensureTopics,
  EventLogContractError,
  loadTopicDefinitions,
  registerSchemas,
  SchemaIncompatibleError,
  type RegisteredSchema,
  type TopicDefinition,
} from '../../services/shared/event-log.ts';
import { PRIORITIES, REASONS } from '../../services/shared/reasons.ts';
import { REPO_ROOT } from '../../scripts/stack/stack-config.ts';
import { infra, testKafka, uniqueName } from '../helpers/infra.ts';

const SCHEMAS = join(REPO_ROOT, 'schemas');
const AVRO = join(SCHEMAS, 'avro');
const REQUESTED = 'privacy.erasure.requested.v1';
const DAY_MS = 86_400_000;

type Json = Record<string, unknown>;
const readJson = async (path: string) => JSON.parse(await readFile(path, 'utf8')) as Json;

/** The same JSON with keys in reverse order at every level: a reformatting, not a change. */
function reverseKeys(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(reverseKeys);
  if (typeof node !== 'object' || node === null) return node;
  return Object.fromEntries(
    Object.entries(node)
      .reverse()
      .map(([k, v]) => [k, reverseKeys(v)]),
  );
}

/** Every record and every field of a schema, however deeply nested (arrays, unions). */
function* namedNodes(node: unknown, path = '$'): Generator<{ path: string; node: Json }> {
  if (Array.isArray(node)) {
    for (const [i, n] of node.entries()) yield* namedNodes(n, `${path}[${i}]`);
    return;
  }
  if (typeof node !== 'object' || node === null) return;
  const n = node as Json;
  if (n['type'] === 'record') yield { path, node: n };
  for (const [i, f] of ((n['fields'] as Json[] | undefined) ?? []).entries()) {
    yield { path: `${path}.${String(f['name'] ?? i)}`, node: f };
    yield* namedNodes(f['type'], `${path}.${String(f['name'])}`);
  }
  if (n['items']) yield* namedNodes(n['items'], `${path}[]`);
}

async function registryGet(path: string): Promise<unknown> {
  const res = await fetch(`${infra.schemaRegistryUrl}${path}`);
  assert.equal(res.status, 200, `GET ${path}: ${res.status}`);
  return res.json();
}

describe('event-log contract', () => {
  const kafka = testKafka();
  const prefix = uniqueName('evlog');
  let admin: Admin;
  let tmp: string;
  let defs: TopicDefinition[];
  const subjects = new Set<string>();

  /** The real definitions under this run's names. */
  const renamed = (overrides: Partial<Record<string, Partial<TopicDefinition>>> = {}): TopicDefinition[] =>
    defs.map((d) => ({ ...d, name: `${prefix}.${d.name}`, ...overrides[d.name] }));

  /** Copies of the real .avsc files under this run's topic names, written by `format`. */
  async function copySchemas(dir: string, format: (schema: Json) => string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    for (const f of await readdir(AVRO)) {
      await writeFile(join(dir, `${prefix}.${f}`), format(await readJson(join(AVRO, f))));
      subjects.add(`${prefix}.${f.replace(/\.avsc$/, '')}-value`);
    }
  }

  before(async () => {
    admin = kafka.admin();
    await admin.connect();
    tmp = await mkdtemp(join(tmpdir(), 'event-log-'));
    defs = await loadTopicDefinitions(SCHEMAS);
  });
  after(async () => {
    await admin.deleteTopics({ topics: renamed().map((d) => d.name) }).catch(() => undefined);
    await admin.disconnect();
    for (const s of subjects) {
      // Apicurio, like Confluent, deletes softly first; the second call removes it for good.
      await fetch(`${infra.schemaRegistryUrl}/subjects/${s}`, { method: 'DELETE' }).catch(() => undefined);
      await fetch(`${infra.schemaRegistryUrl}/subjects/${s}?permanent=true`, { method: 'DELETE' }).catch(
        () => undefined,
      );
    }
    await rm(tmp, { recursive: true, force: true });
  });

  describe('topics', () => {
    it('defines the three topics with bounded retention, and one schema file per topic', async () => {
      const byName = Object.fromEntries(defs.map((d) => [d.name, d]));
      assert.deepEqual(
        defs.map((d) => d.name),
        [REQUESTED, 'privacy.erasure.acks.v1', 'privacy.erasure.completed.v1'],
      );
      assert.equal(byName[REQUESTED]?.partitions, 12);
      assert.equal(byName['privacy.erasure.acks.v1']?.partitions, 12);
      assert.equal(byName['privacy.erasure.completed.v1']?.partitions, 6);
      assert.equal(byName[REQUESTED]?.config['retention.ms'], String(14 * DAY_MS));
      assert.equal(byName['privacy.erasure.acks.v1']?.config['retention.ms'], String(30 * DAY_MS));
      assert.equal(byName['privacy.erasure.completed.v1']?.config['retention.ms'], String(90 * DAY_MS));
      for (const d of defs) {
        assert.equal(d.replicationFactor, 3, d.name);
        assert.equal(d.config['min.insync.replicas'], '2', d.name);
        assert.equal(d.config['cleanup.policy'], 'delete', d.name);
      }
      assert.deepEqual((await readdir(AVRO)).sort(), defs.map((d) => `${d.name}.avsc`).sort());
    });

    it('refuses unbounded retention, compaction and a malformed file, listing every problem', async () => {
      const dir = join(tmp, 'bad-topics');
      await mkdir(dir, { recursive: true });
      const topic = { name: 't.v1', doc: 'x', partitions: 1, replicationFactor: 1 };
      await writeFile(
        join(dir, 'topics.json'),
        JSON.stringify({
          topics: [
            { ...topic, config: { 'cleanup.policy': 'delete', 'retention.ms': -1 } },
            {
              ...topic,
              name: 't2.v1',
              partitions: 0,
              config: { 'cleanup.policy': 'compact', 'retention.ms': 1 },
            },
          ],
        }),
      );
      await assert.rejects(loadTopicDefinitions(dir), (err: unknown) => {
        assert.ok(err instanceof EventLogContractError);
        assert.equal(err.code, 'ERR_EVENT_LOG_CONTRACT');
        assert.match(err.message, /topic "t\.v1" needs a bounded "retention\.ms"/);
        assert.match(err.message, /topic "t2\.v1" needs "partitions"/);
        assert.match(err.message, /topic "t2\.v1" needs "cleanup\.policy": "delete"/);
        return true;
      });
      await writeFile(join(dir, 'topics.json'), '{"topics": ');
      await assert.rejects(loadTopicDefinitions(dir), /invalid event-log contract: .*topics\.json/);
    });

    it('creates missing topics with their partitions, retention and a replication factor the cluster can hold', async () => {
      const mine = renamed();
      // No brokerCount: ensureTopics asks the cluster.
      const { created, drift } = await ensureTopics(admin, mine);
      assert.deepEqual(
        created,
        mine.map((d) => d.name),
      );
      assert.deepEqual(drift, []);

      const brokers = (await admin.describeCluster()).brokers.length;
      const { topics } = await admin.fetchTopicMetadata({ topics: mine.map((d) => d.name) });
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: mine.map((d) => ({ type: kafkajs.ConfigResourceTypes.TOPIC, name: d.name })),
      });
      for (const d of mine) {
        const partitions = topics.find((t) => t.name === d.name)!.partitions;
        assert.equal(partitions.length, d.partitions, d.name);
        const rf = Math.min(3, brokers);
        for (const p of partitions) assert.equal(p.replicas.length, rf, `${d.name} replication factor`);
        const config = Object.fromEntries(
          resources
            .find((r) => r.resourceName === d.name)!
            .configEntries.map((e) => [e.configName, e.configValue]),
        );
        assert.equal(config['retention.ms'], d.config['retention.ms'], d.name);
        assert.equal(config['cleanup.policy'], 'delete', d.name);
        assert.equal(config['min.insync.replicas'], String(Math.min(2, rf)), d.name);
        assert.equal(config['unclean.leader.election.enable'], 'false', d.name);
      }
    });

    it('creates nothing and reports no drift the second time', async () => {
      const brokerCount = (await admin.describeCluster()).brokers.length;
      assert.deepEqual(await ensureTopics(admin, renamed(), { brokerCount }), { created: [], drift: [] });
    });

    it('reports changed partitions and retention as drift, and leaves the topic as it is', async () => {
      const name = `${prefix}.${REQUESTED}`;
      const changed = renamed({
        [REQUESTED]: { partitions: 24, config: { ...defs[0]!.config, 'retention.ms': String(7 * DAY_MS) } },
      });
      const { created, drift } = await ensureTopics(admin, changed);
      assert.deepEqual(created, []);
      assert.deepEqual(drift, [
        `${name}: 12 partitions, defined 24`,
        `${name}: retention.ms is ${14 * DAY_MS}, defined ${7 * DAY_MS}`,
      ]);
      const { topics } = await admin.fetchTopicMetadata({ topics: [name] });
      assert.equal(topics[0]!.partitions.length, 12, 'not altered');
    });
  });

  describe('schemas', () => {
    let first: RegisteredSchema[];

    it('every schema parses with avsc, and documents the record and every field', async () => {
      for (const f of await readdir(AVRO)) {
        const schema = await readJson(join(AVRO, f));
        assert.doesNotThrow(() => avro.Type.forSchema(schema as avro.Schema), f);
        assert.equal(schema['namespace'], 'dev.erasure.events.v1', f);
        const nodes = [...namedNodes(schema)];
        assert.ok(nodes.length > 3, f);
        for (const { path, node } of nodes) {
          assert.ok(typeof node['doc'] === 'string' && node['doc'].length > 10, `${f} ${path} has no doc`);
        }
      }
    });

    it('documents every reason and priority the pipeline knows (strings, not enums)', async () => {
      const fields = (await readJson(join(AVRO, `${REQUESTED}.avsc`)))['fields'] as Json[];
      const doc = (name: string) => String(fields.find((f) => f['name'] === name)!['doc']);
      for (const r of REASONS) assert.match(doc('reason'), new RegExp(`\\b${r}\\b`));
      for (const p of PRIORITIES) assert.match(doc('priority'), new RegExp(`\\b${p}\\b`));
    });

    it('gives a reformatted schema the same canonical text', async () => {
      const schema = await readJson(join(AVRO, `${REQUESTED}.avsc`));
      const reformatted = JSON.parse(JSON.stringify(reverseKeys(schema), null, 4)) as Json;
      assert.equal(canonicalAvro(reformatted), canonicalAvro(schema));
      assert.ok(canonicalAvro(schema).startsWith('{"type":"record","name":"ErasureRequested"'));
      assert.ok(canonicalAvro(schema).includes('"doc"'), 'docs are kept');
    });

    it('registers each schema under <topic>-value, and an unchanged one in another layout gets the same id', async () => {
      const dir = join(tmp, 'avro');
      await copySchemas(dir, (s) => `${JSON.stringify(s, null, 2)}\n`);
      first = await registerSchemas(infra.schemaRegistryUrl, dir);
      assert.deepEqual(
        first.map((r) => r.subject),
        [...subjects].sort(),
      );
      for (const r of first) assert.ok(Number.isInteger(r.id) && r.id > 0);

      await copySchemas(dir, (s) => JSON.stringify(reverseKeys(s), null, 4));
      const second = await registerSchemas(infra.schemaRegistryUrl, dir);
      assert.deepEqual(second, first);
      for (const r of first) {
        assert.deepEqual(
          await registryGet(`/subjects/${r.subject}/versions`),
          [1],
          `${r.subject}: one version`,
        );
      }
    });

    it('sets BACKWARD compatibility on every subject', async () => {
      for (const r of first) {
        const config = (await registryGet(`/config/${r.subject}`)) as Json;
        assert.equal(config['compatibilityLevel'], 'BACKWARD', r.subject);
      }
    });

    it('round-trips a realistic requested event encoded with the registered id', async () => {
      const { id } = first.find((r) => r.topic === `${prefix}.${REQUESTED}`)!;
      const now = Date.UTC(2025, 0, 15, 10, 30);
      const event = {
        eventId: randomUUID(),
        requestId: randomUUID(),
        identifiers: [
          { type: 'user_id', value: '42' },
          { type: 'email', value: 'a@b.example' },
        ],
        reason: 'gdpr_art17',
        requestedAt: now,
        targets: ['crm', 'analytics'],
        priority: 'legal',
        notBefore: null,
        deadline: now + 31 * DAY_MS,
        redelivery: { attempt: 2, target: 'crm' },
      };
      const buf = await new SchemaRegistry({ host: infra.schemaRegistryUrl }).encode(id, event);
      assert.equal(buf.readUInt8(0), 0, 'magic byte');
      assert.equal(buf.readInt32BE(1), id, 'schema id after the magic byte');
      // A fresh client, as a consumer would be: the schema comes from the registry by id.
      const decoded: unknown = await new SchemaRegistry({ host: infra.schemaRegistryUrl }).decode(buf);
      assert.deepEqual(JSON.parse(JSON.stringify(decoded)), event);
    });

    it('refuses an incompatible change, naming the subject and the way out', async () => {
      const dir = join(tmp, 'incompatible');
      await copySchemas(dir, (s) => {
        if (s['name'] !== 'ErasureRequested') return JSON.stringify(s);
        const fields = [
          ...(s['fields'] as Json[]),
          { name: 'tenant', type: 'string', doc: 'Required, no default.' },
        ];
        return JSON.stringify({ ...s, fields });
      });
      const subject = `${prefix}.${REQUESTED}-value`;
      await assert.rejects(registerSchemas(infra.schemaRegistryUrl, dir), (err: unknown) => {
        assert.ok(err instanceof SchemaIncompatibleError);
        assert.equal(err.code, 'ERR_SCHEMA_INCOMPATIBLE');
        assert.ok(err.message.includes(`"${subject}"`), err.message);
        assert.match(err.message, /not BACKWARD compatible/);
        assert.ok(err.message.includes(`${prefix}.privacy.erasure.requested.v2`), err.message);
        assert.ok(!err.message.includes('tenant'), 'no schema contents in the message');
        return true;
      });
      assert.deepEqual(await registryGet(`/subjects/${subject}/versions`), [1], 'nothing registered');
    });

    it('refuses a schema avsc cannot parse, naming the file', async () => {
      const dir = join(tmp, 'unparsable');
      await copySchemas(dir, (s) =>
        JSON.stringify(s['name'] === 'ErasureAck' ? { ...s, type: 'recrod' } : s),
      );
      await assert.rejects(registerSchemas(infra.schemaRegistryUrl, dir), (err: unknown) => {
        assert.ok(err instanceof EventLogContractError);
        assert.match(err.message, /privacy\.erasure\.acks\.v1\.avsc/);
        return true;
      });
    });
  });
});
