// Every service's config loader validates LOG_LEVEL (an unknown level made winston print
// nothing at all), the infrastructure settings every loader shares (Kafka broker ports,
// dependency timeouts) and reports them with its other problems.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadAckConsumerConfig } from '../../services/ack-consumer/index.ts';
import { loadCrmPartnerConfig } from '../../services/example-partner-crm/config.ts';
import { loadOrdersPartnerConfig } from '../../services/example-partner-orders/config.ts';
import { loadProfilesPartnerConfig } from '../../services/example-partner-profiles/config.ts';
import { loadExporterConfig } from '../../services/exporter/index.ts';
import { loadSealerConfig } from '../../services/journal-sealer/index.ts';
import { loadProcessConfig } from '../../services/main.ts';
import { loadRedeliveryConfig } from '../../services/redelivery/index.ts';
import { loadRelayConfig } from '../../services/relay/index.ts';
import { ConfigurationError } from '../../services/shared/errors.ts';
import { loadInfraConfig } from '../../services/shared/infra-config.ts';
import { quietAwsSdkNotice } from '../../services/shared/quiet-aws-sdk-notice.ts';
import { loadSyncDispatcherConfig } from '../../services/sync-dispatcher/config.ts';

const CRM_SECRET = { ERASURE_SECRET_DEMO_CRM: 'a-crm-secret-of-sixteen-plus' };

const LOADERS: [string, (env: NodeJS.ProcessEnv) => { logLevel: string }][] = [
  ['journal-sealer', loadSealerConfig],
  ['relay', loadRelayConfig],
  ['ack-consumer', loadAckConsumerConfig],
  ['redelivery', loadRedeliveryConfig],
  ['sync-dispatcher', loadSyncDispatcherConfig],
  ['exporter', loadExporterConfig],
  ['example-partner-orders', loadOrdersPartnerConfig],
  ['example-partner-profiles', loadProfilesPartnerConfig],
  ['example-partner-crm', (env) => loadCrmPartnerConfig({ ...CRM_SECRET, ...env })],
  ['services/main.ts', loadProcessConfig],
];

const refuses = (load: () => unknown, ...names: RegExp[]) =>
  assert.throws(load, (err: unknown) => {
    assert.ok(err instanceof ConfigurationError, String(err));
    for (const n of names) assert.match(err.message, n);
    return true;
  });

describe('LOG_LEVEL, in every loader', () => {
  for (const [name, load] of LOADERS) {
    it(`${name}: refuses LOG_LEVEL=loud with the loader's other problems`, () => {
      refuses(
        () => load({ LOG_LEVEL: 'loud', KAFKA_BROKERS: 'nohost', SHUTDOWN_TIMEOUT_MS: 'soon' }),
        /LOG_LEVEL must be error, warn, info or debug/,
        // Reported together with the others, not first-problem-only.
        name === 'services/main.ts' ? /SHUTDOWN_TIMEOUT_MS/ : /KAFKA_BROKERS/,
      );
    });
    it(`${name}: takes the four levels, info by default`, () => {
      assert.equal(load({}).logLevel, 'info');
      for (const level of ['error', 'warn', 'info', 'debug'])
        assert.equal(load({ LOG_LEVEL: level }).logLevel, level);
    });
  }
});

describe('infrastructure settings', () => {
  for (const port of ['99999', '0', '65536'])
    it(`refuses a Kafka broker on port ${port}, naming the entry`, () => {
      refuses(
        () => loadInfraConfig({ KAFKA_BROKERS: `127.0.0.1:9092,127.0.0.1:${port}` }),
        /port outside 1 to 65535/,
      );
      refuses(
        () => loadRelayConfig({ KAFKA_BROKERS: `127.0.0.1:${port}` }),
        new RegExp(`127\\.0\\.0\\.1:${port}`),
      );
    });

  it('takes ports 1 and 65535', () => {
    assert.deepEqual(loadInfraConfig({ KAFKA_BROKERS: 'a:1,b:65535' }).kafkaBrokers, ['a:1', 'b:65535']);
  });

  it('gives every dependency a timeout by default', () => {
    const infra = loadInfraConfig({});
    assert.deepEqual(infra.databaseTimeouts, { connectMs: 10_000, queryMs: 60_000 });
    assert.equal(infra.schemaRegistryTimeoutMs, 10_000);
    assert.equal(infra.s3.connectTimeoutMs, 10_000);
    assert.equal(infra.s3.socketTimeoutMs, 30_000);
    assert.equal(loadProcessConfig({}).shutdownTimeoutMs, 30_000);
  });

  it('reads the timeouts, and refuses ones out of range together', () => {
    const infra = loadInfraConfig({
      DATABASE_CONNECT_TIMEOUT_MS: '500',
      DATABASE_QUERY_TIMEOUT_MS: '0',
      SCHEMA_REGISTRY_TIMEOUT_MS: '700',
      S3_CONNECT_TIMEOUT_MS: '800',
      S3_SOCKET_TIMEOUT_MS: '9000',
    });
    assert.deepEqual(infra.databaseTimeouts, { connectMs: 500, queryMs: 0 });
    assert.equal(infra.schemaRegistryTimeoutMs, 700);
    assert.equal(infra.s3.connectTimeoutMs, 800);
    assert.equal(infra.s3.socketTimeoutMs, 9000);
    refuses(
      () =>
        loadInfraConfig({
          DATABASE_CONNECT_TIMEOUT_MS: '0',
          DATABASE_QUERY_TIMEOUT_MS: '500',
          SCHEMA_REGISTRY_TIMEOUT_MS: 'soon',
          S3_CONNECT_TIMEOUT_MS: '-1',
          S3_SOCKET_TIMEOUT_MS: '10',
        }),
      /DATABASE_CONNECT_TIMEOUT_MS/,
      /DATABASE_QUERY_TIMEOUT_MS must be 0 \(no limit\) or at least 1000/,
      /SCHEMA_REGISTRY_TIMEOUT_MS/,
      /S3_CONNECT_TIMEOUT_MS/,
      /S3_SOCKET_TIMEOUT_MS/,
    );
    refuses(() => loadProcessConfig({ SHUTDOWN_TIMEOUT_MS: '30s' }), /SHUTDOWN_TIMEOUT_MS/);
  });

  it('METRICS_PORT listens on 127.0.0.1 unless HOST says otherwise, like the API', () => {
    assert.equal(loadProcessConfig({}).metricsHost, '127.0.0.1');
    assert.equal(loadProcessConfig({ HOST: '0.0.0.0' }).metricsHost, '0.0.0.0');
  });

  it('the services carry the timeouts to their clients', () => {
    const env = {
      DATABASE_CONNECT_TIMEOUT_MS: '1234',
      SCHEMA_REGISTRY_TIMEOUT_MS: '2345',
      S3_SOCKET_TIMEOUT_MS: '3456',
    };
    for (const load of [loadSealerConfig, loadRelayConfig, loadAckConsumerConfig, loadRedeliveryConfig])
      assert.equal(load(env).databaseTimeouts.connectMs, 1234);
    assert.equal(loadSyncDispatcherConfig(env).databaseTimeouts.connectMs, 1234);
    assert.equal(loadRelayConfig(env).schemaRegistryTimeoutMs, 2345);
    assert.equal(loadAckConsumerConfig(env).schemaRegistryTimeoutMs, 2345);
    assert.equal(loadExporterConfig(env).schemaRegistryTimeoutMs, 2345);
    assert.equal(loadExporterConfig(env).dataset.s3.socketTimeoutMs, 3456);
  });
});

describe('the AWS SDK notice', () => {
  const VAR = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';
  it('is off unless asked for: unset, or set the way a person means "disabled", becomes the SDK\'s `true`', () => {
    for (const v of [undefined, '', '1', 'yes', 'TRUE', 'on']) {
      const env: NodeJS.ProcessEnv = v === undefined ? {} : { [VAR]: v };
      quietAwsSdkNotice(env);
      assert.equal(env[VAR], 'true', String(v));
    }
  });
  it('stays on when set to false', () => {
    for (const v of ['false', '0']) {
      const env: NodeJS.ProcessEnv = { [VAR]: v };
      quietAwsSdkNotice(env);
      assert.equal(env[VAR], v);
    }
  });
});

describe('ack consumer fetch batching', () => {
  it('defaults to 64 KiB or 200 ms, and refuses values out of range with the others', () => {
    const c = loadAckConsumerConfig({});
    assert.equal(c.fetchMinBytes, 65_536);
    assert.equal(c.fetchMaxWaitMs, 200);
    const set = loadAckConsumerConfig({
      ACK_CONSUMER_FETCH_MIN_BYTES: '1',
      ACK_CONSUMER_FETCH_MAX_WAIT_MS: '50',
    });
    assert.equal(set.fetchMinBytes, 1);
    assert.equal(set.fetchMaxWaitMs, 50);
    refuses(
      () =>
        loadAckConsumerConfig({ ACK_CONSUMER_FETCH_MIN_BYTES: '0', ACK_CONSUMER_FETCH_MAX_WAIT_MS: '9000' }),
      /ACK_CONSUMER_FETCH_MIN_BYTES/,
      /ACK_CONSUMER_FETCH_MAX_WAIT_MS/,
    );
  });
});
