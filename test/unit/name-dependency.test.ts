// A start-up failure's one line names the dependency and the variable to check, and the S3
// error keeps what names its cause.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import pg from 'pg';
import { ServiceStartError, startFailureLine } from '../../services/main.ts';
import { classifyS3Error, DatasetStoreError } from '../../services/shared/dataset/dataset-store.ts';
import { ConfigurationError } from '../../services/shared/errors.ts';
import { loadInfraConfig } from '../../services/shared/infra-config.ts';
import { nameDependency } from '../../services/shared/name-dependency.ts';

// kafkajs is CommonJS; its error classes are on the default export only.
const { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded } = kafkajs;

const refused = (address: string, port: number) =>
  Object.assign(new Error(`connect ECONNREFUSED ${address}:${port}`), {
    code: 'ECONNREFUSED',
    errno: -111,
    syscall: 'connect',
    address,
    port,
  });

const ENV = {
  DATABASE_URL: 'postgres://u:secret@db.internal:6432/erasure',
  KAFKA_BROKERS: 'kafka-1:9092,kafka-2:9092',
  SCHEMA_REGISTRY_URL: 'http://registry.internal:8081/apis/ccompat/v7',
  S3_ENDPOINT: 'https://s3.internal',
};
const infra = loadInfraConfig(ENV);

describe('nameDependency', () => {
  const cases: [string, unknown, string | undefined][] = [
    [
      'a kafkajs error',
      new KafkaJSNumberOfRetriesExceeded(
        new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:1'),
        {
          retryCount: 5,
          retryTime: 1000,
        },
      ),
      'KAFKA_BROKERS',
    ],
    [
      'a PostgreSQL server error',
      Object.assign(new pg.DatabaseError('no such database', 0, 'error'), {
        code: '3D000',
        severity: 'FATAL',
      }),
      'DATABASE_URL',
    ],
    [
      "node-postgres' connect timeout",
      new Error('Connection terminated due to connection timeout', { cause: new Error('timeout expired') }),
      'DATABASE_URL',
    ],
    [
      'an AWS SDK error',
      Object.assign(new Error('Access Denied'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }),
      'S3_ENDPOINT',
    ],
    ['a dataset store error', new DatasetStoreError('GetObject failed: TimeoutError', true), 'S3_ENDPOINT'],
    [
      "the registry client's error",
      Object.assign(
        new Error('Confluent_Schema_Registry - Error, status 400: connect ECONNREFUSED 127.0.0.1:8081'),
        {
          name: 'ResponseError',
        },
      ),
      'SCHEMA_REGISTRY_URL',
    ],
    ['a refused connection to the database address', refused('db.internal', 6432), 'DATABASE_URL'],
    ['a refused connection to a broker address', refused('kafka-2', 9092), 'KAFKA_BROKERS'],
    ['a refused connection to S3 (https, no port)', refused('s3.internal', 443), 'S3_ENDPOINT'],
    [
      'an address named only in the message',
      new Error('connect ECONNREFUSED registry.internal:8081'),
      'SCHEMA_REGISTRY_URL',
    ],
    ['under a cause', new Error('start failed', { cause: refused('db.internal', 6432) }), 'DATABASE_URL'],
    ['an address nothing is configured at', refused('elsewhere', 1), undefined],
    ['something else', new Error('boom'), undefined],
  ];
  for (const [what, err, variable] of cases)
    it(`${what}: ${variable ?? 'unknown'}`, () => {
      assert.equal(nameDependency(err, infra)?.variable, variable);
    });
});

describe('startFailureLine', () => {
  it('names the service, the dependency and the variable, and keeps the cause', () => {
    const err = new ServiceStartError(
      'relay',
      new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:1'),
    );
    assert.equal(
      startFailureLine(err, ENV),
      'erasure: ERR_START: relay could not start: Kafka (check KAFKA_BROKERS): Connection error: connect ECONNREFUSED 127.0.0.1:1',
    );
  });
  it('keeps a configuration error as it was', () => {
    assert.equal(
      startFailureLine(new ServiceStartError('relay', new ConfigurationError(['LOG_LEVEL must be x'])), ENV),
      'erasure: ERR_CONFIG: invalid configuration: LOG_LEVEL must be x',
    );
  });
  it('says nothing it does not know', () => {
    assert.equal(
      startFailureLine(new ServiceStartError('api', new Error('boom')), ENV),
      'erasure: ERR_START: api could not start: boom',
    );
  });
});

describe('classifyS3Error', () => {
  it("keeps the network error's code, message and the error itself", () => {
    const cause = Object.assign(refused('127.0.0.1', 9000), { $metadata: { attempts: 3 } });
    const err = classifyS3Error(cause, 'GetObject');
    assert.equal(err.message, 'GetObject failed: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9000');
    assert.equal(err.retriable, true);
    assert.equal(err.cause, cause);
    assert.equal(err.detail?.['code'], 'ECONNREFUSED');
  });
  it("keeps the SDK's timeout", () => {
    const cause = Object.assign(new Error('the request socket timed out after 30000 ms of inactivity'), {
      name: 'TimeoutError',
      $metadata: {},
    });
    const err = classifyS3Error(cause, 'PutObject');
    assert.match(err.message, /^PutObject failed: TimeoutError: the request socket timed out/);
    assert.equal(err.retriable, true);
  });
  it('an HTTP error keeps its status and is final below 500', () => {
    const cause = Object.assign(new Error('Access Denied'), {
      name: 'AccessDenied',
      $metadata: { httpStatusCode: 403 },
    });
    const err = classifyS3Error(cause, 'ListObjectsV2');
    assert.equal(err.message, 'ListObjectsV2 failed: AccessDenied (HTTP 403): Access Denied');
    assert.equal(err.retriable, false);
  });
});
