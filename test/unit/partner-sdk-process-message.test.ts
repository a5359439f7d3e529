// The per-message pipeline with fakes for the producer and codec: which outcome, in which order,
// and that a send failure surfaces (so the caller does not commit). Real Kafka: test/integration.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Producer, ProducerRecord } from 'kafkajs';
import type { EventCodec, RequestedEvent } from '../../services/shared/event-codec.ts';
import { BoundedSet } from '../../packages/partner-sdk/src/bounded-set.ts';
import { resolveOptions, type ErasureHandler } from '../../packages/partner-sdk/src/options.ts';
import { createMessageProcessor, type PartnerStats } from '../../packages/partner-sdk/src/process-message.ts';

const wire = (v: object) => Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), Buffer.from(JSON.stringify(v))]);
const codec = {
  encode: async (_topic: string, v: object) => wire(v),
  decode: async (b: Buffer) => JSON.parse(b.subarray(5).toString()),
} as unknown as EventCodec;

function setup(handler: ErasureHandler, failSendTo?: string, eventCodec = codec) {
  const sent: ProducerRecord[] = [];
  const producer = {
    send: async (r: ProducerRecord) => {
      if (r.topic === failSendTo) throw new Error('broker down');
      sent.push(r);
      return [];
    },
  } as unknown as Producer;
  const logs: string[] = [];
  const log = (m: string, meta?: object) => void logs.push(JSON.stringify({ m, meta }));
  const options = resolveOptions({
    target: 'orders-db',
    kafka: { brokers: ['x:1'] },
    schemaRegistryUrl: 'http://registry',
    handler,
    retry: { attempts: 2, initialMs: 1, maxMs: 1 },
    logger: { info: log, warn: log, error: log },
    now: () => 1000,
  });
  const stats: PartnerStats = {
    processed: 0,
    acked: 0,
    failed: 0,
    skipped: 0,
    duplicates: 0,
    deadLettered: 0,
    lastProgressAt: null,
  };
  const process = createMessageProcessor({
    options,
    codec: eventCodec,
    producer,
    stats,
    seen: new BoundedSet(10),
    sleep: async () => {},
  });
  const deliver = (value: Buffer | null, offset = '5', key: Buffer | null = null) =>
    process({
      topic: 'privacy.erasure.requested.v1',
      partition: 2,
      message: { value, offset, key } as never,
      heartbeat: async () => {},
    });
  return { sent, stats, logs, deliver };
}

const event: RequestedEvent = {
  eventId: 'e-1',
  requestId: 'r-1',
  identifiers: [{ type: 'email', value: 'alice@example.test' }],
  reason: 'gdpr_art17',
  requestedAt: 1,
  targets: ['orders-db'],
  priority: 'normal',
  notBefore: null,
  deadline: 2,
  redelivery: null,
};
const decodeAck = (r: ProducerRecord) => JSON.parse((r.messages[0]!.value as Buffer).subarray(5).toString());

describe('partner sdk: processMessage', () => {
  it('dead-letters bytes not in the wire format without calling the handler or acking', async () => {
    let called = false;
    const { sent, stats, deliver } = setup(async () => {
      called = true;
      return { status: 'deleted' };
    });
    await deliver(Buffer.from('{"json":"not avro"}'));
    await deliver(null, '6');
    assert.equal(called, false);
    assert.deepEqual(
      sent.map((r) => r.topic),
      ['privacy.erasure.dlq.orders-db', 'privacy.erasure.dlq.orders-db'],
    );
    assert.equal(stats.deadLettered, 2);
  });

  it('dead-letters an event the registry can never decode; retries, then throws, while it is unreachable', async () => {
    const { sent, stats, deliver } = setup(async () => ({ status: 'deleted' }));
    // Wire format, but the body is not what the fake codec reads (a corrupt Avro body).
    await deliver(Buffer.from([0, 0, 0, 0, 7, 0xff]));
    assert.deepEqual(
      sent.map((r) => [r.topic, r.messages[0]!.headers?.['x-erasure-attempts']]),
      [['privacy.erasure.dlq.orders-db', '1']],
    );
    assert.match(String(sent[0]!.messages[0]!.headers?.['x-erasure-error']), /^not decodable: SyntaxError/);
    assert.equal(stats.deadLettered, 1);

    const down = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8081'), { status: 400 });
    const unreachable = { ...codec, decode: async () => Promise.reject(down) } as unknown as EventCodec;
    const offline = setup(async () => ({ status: 'deleted' }), undefined, unreachable);
    await assert.rejects(offline.deliver(wire(event)), /ECONNREFUSED/);
    assert.equal(offline.sent.length, 0, 'not dead-lettered: redelivered once the registry is back');
  });

  it('treats a malformed handler result as a failure: dead letter, then failed ack', async () => {
    const { sent, stats, deliver } = setup(async () => ({ status: 'gone' }) as never);
    await deliver(wire(event));
    assert.deepEqual(
      sent.map((r) => r.topic),
      ['privacy.erasure.dlq.orders-db', 'privacy.erasure.acks.v1'],
    );
    const ack = decodeAck(sent[1]!);
    assert.equal(ack.status, 'failed');
    assert.match(ack.detail, /^failed after 2 attempts: TypeError: handler must return/);
    assert.equal(stats.failed, 1);
  });

  it('redacts identifier values the handler put in its own detail, and keys the ack like its event (the subject)', async () => {
    const { sent, logs, deliver } = setup(async (e) => ({
      status: 'deleted',
      detail: `erased rows of ${e.identifiers[0]!.value}`,
    }));
    const subjectKey = Buffer.from('subject-hmac-of-alice');
    await deliver(wire(event), '5', subjectKey);
    const ack = decodeAck(sent[0]!);
    assert.deepEqual(ack, {
      requestId: 'r-1',
      target: 'orders-db',
      status: 'deleted',
      detail: 'erased rows of [redacted]',
      ackedAt: 1000,
      eventId: 'e-1',
    });
    assert.deepEqual(sent[0]!.messages[0]!.key, subjectKey);
    assert.equal(sent[0]!.acks, -1);
    assert.ok(!logs.some((l) => l.includes('alice@example.test')));
  });

  it('keys the ack of an event without a key (not written by the relay) by its request id', async () => {
    const { sent, deliver } = setup(async () => ({ status: 'not_found' }));
    await deliver(wire(event));
    assert.equal(sent[0]!.messages[0]!.key, 'r-1');
  });

  it('surfaces a failed ack send, so the offset is not committed, and handles the event again next time', async () => {
    let calls = 0;
    const { stats, deliver } = setup(async () => {
      calls++;
      return { status: 'deleted' };
    }, 'privacy.erasure.acks.v1');
    await assert.rejects(deliver(wire(event)), /broker down/);
    await assert.rejects(deliver(wire(event)), /broker down/);
    assert.equal(calls, 2, 'not remembered as acked');
    assert.equal(stats.acked, 0);
  });

  it('surfaces a failed dead-letter send before any failed ack is published', async () => {
    const { sent, deliver } = setup(async () => {
      throw new Error('nope');
    }, 'privacy.erasure.dlq.orders-db');
    await assert.rejects(deliver(wire(event)), /broker down/);
    assert.equal(sent.length, 0);
  });
});
