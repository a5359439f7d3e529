// Smoke test: Kafka and the schema registry are real, and speak the Confluent wire format.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import type { Admin } from 'kafkajs';
import { infra, testKafka, uniqueName } from '../helpers/infra.ts';

const schemaV1 = {
  type: 'record',
  name: 'SmokeEvent',
  namespace: 'dev.erasure.test',
  doc: 'Smoke test record',
  fields: [
    { name: 'eventId', type: 'string' },
    { name: 'count', type: 'int' },
  ],
};

async function registryCall(path: string, init?: RequestInit): Promise<Response> {
  return fetch(`${infra.schemaRegistryUrl}${path}`, {
    ...init,
    headers: { 'content-type': 'application/vnd.schemaregistry.v1+json', ...(init?.headers ?? {}) },
  });
}

describe('Kafka + schema registry', () => {
  const kafka = testKafka();
  const registry = new SchemaRegistry({ host: infra.schemaRegistryUrl });
  const topic = uniqueName('smoke.avro');
  const subject = `${topic}-value`;
  let admin: Admin;

  before(async () => {
    admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1 }] });
  });
  after(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('round-trips an Avro record in the Confluent wire format (magic byte + schema id)', async () => {
    const { id } = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(schemaV1) },
      { subject },
    );
    assert.ok(Number.isInteger(id) && id > 0);

    const record = { eventId: 'e-1', count: 7 };
    const value = await registry.encode(id, record);
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: [{ key: 'k', value }] });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: uniqueName('smoke') });
    await consumer.connect();
    let raw: Buffer;
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      raw = await new Promise<Buffer>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no record consumed within 30 s')), 30_000);
        void consumer.run({
          eachMessage: async ({ message }) => {
            clearTimeout(timer);
            resolve(message.value!);
          },
        });
      });
    } finally {
      // Also when nothing is consumed: a connected consumer keeps the test process (and CI) alive.
      await consumer.disconnect();
    }

    assert.equal(raw.readUInt8(0), 0, 'magic byte');
    assert.equal(raw.readInt32BE(1), id, 'schema id after the magic byte');
    assert.deepEqual({ ...(await registry.decode(raw)) }, record);
  });

  it('gives an unchanged schema the same id, whatever its formatting', async () => {
    const first = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(schemaV1) },
      { subject },
    );
    const reformatted = JSON.stringify(schemaV1, null, 4);
    const second = await registry.register({ type: SchemaType.AVRO, schema: reformatted }, { subject });
    assert.equal(second.id, first.id);
    const versions = (await (await registryCall(`/subjects/${subject}/versions`)).json()) as number[];
    assert.equal(versions.length, 1, 'no new version for the same schema');
  });

  it('refuses an incompatible change under BACKWARD compatibility, accepts a compatible one', async () => {
    const res = await registryCall(`/config/${subject}`, {
      method: 'PUT',
      body: JSON.stringify({ compatibility: 'BACKWARD' }),
    });
    assert.equal(res.status, 200);

    // A new required field without a default: new readers cannot read old records.
    const incompatible = { ...schemaV1, fields: [...schemaV1.fields, { name: 'reason', type: 'string' }] };
    const refused = await registryCall(`/subjects/${subject}/versions`, {
      method: 'POST',
      body: JSON.stringify({ schema: JSON.stringify(incompatible) }),
    });
    assert.equal(refused.status, 409, await refused.clone().text());

    const compatible = {
      ...schemaV1,
      fields: [...schemaV1.fields, { name: 'reason', type: ['null', 'string'], default: null }],
    };
    const accepted = await registryCall(`/subjects/${subject}/versions`, {
      method: 'POST',
      body: JSON.stringify({ schema: JSON.stringify(compatible) }),
    });
    assert.equal(accepted.status, 200, await accepted.clone().text());
  });
});
