// EXPORTER_FROM_BEGINNING and ACK_CONSUMER_FROM_BEGINNING decide where a new consumer group
// starts: read as anything but exactly `false` = true, `0`, `no` or `off` started a group at
// the oldest retained event. They are parsed strictly, as problems of their loader, as are
// the example partners' ORDERS_ and PROFILES_PARTNER_FROM_BEGINNING (one boolSetting for all).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadAckConsumerConfig } from '../../services/ack-consumer/index.ts';
import { loadOrdersPartnerConfig } from '../../services/example-partner-orders/config.ts';
import { loadProfilesPartnerConfig } from '../../services/example-partner-profiles/config.ts';
import { loadExporterConfig } from '../../services/exporter/index.ts';
import { ConfigurationError } from '../../services/shared/errors.ts';
import { boolSetting } from '../../services/shared/infra-config.ts';

describe('boolSetting', () => {
  it('reads true and false in any case; unset or blank takes the default', () => {
    const read = (v: string | undefined, fallback: boolean) => {
      const problems: string[] = [];
      const got = boolSetting({ X: v }, problems, 'X', fallback);
      assert.deepEqual(problems, []);
      return got;
    };
    assert.deepEqual(
      ['true', 'TRUE', ' True ', 'false', 'FALSE', 'False'].map((v) => read(v, false)),
      [true, true, true, false, false, false],
    );
    assert.equal(read(undefined, true), true);
    assert.equal(read('  ', false), false);
  });

  it('adds a problem naming the variable for anything else', () => {
    for (const v of ['0', '1', 'no', 'yes', 'off', 'on', 'f', 'falsey']) {
      const problems: string[] = [];
      boolSetting({ X_FROM: v }, problems, 'X_FROM', true);
      assert.deepEqual(problems, ['X_FROM must be true or false'], v);
    }
  });
});

const loaders = [
  ['EXPORTER_FROM_BEGINNING', loadExporterConfig, 'EXPORTER_MAX_FILE_ROWS'],
  ['ACK_CONSUMER_FROM_BEGINNING', loadAckConsumerConfig, 'ACK_CONSUMER_BATCH_SIZE'],
  ['ORDERS_PARTNER_FROM_BEGINNING', loadOrdersPartnerConfig, 'ORDERS_PARTNER_DATABASE'],
  ['PROFILES_PARTNER_FROM_BEGINNING', loadProfilesPartnerConfig, 'PROFILES_PARTNER_SCAN_TIMEOUT_MS'],
] as const;

for (const [name, load, other] of loaders)
  describe(`${name}`, () => {
    it('defaults to true; true and false in any case', () => {
      assert.equal(load({}).fromBeginning, true);
      assert.equal(load({ [name]: 'false' }).fromBeginning, false);
      assert.equal(load({ [name]: 'FALSE' }).fromBeginning, false);
      assert.equal(load({ [name]: 'True' }).fromBeginning, true);
    });

    for (const bad of ['0', 'no', 'off', 'nope'])
      it(`refuses ${name}=${bad}, with the loader's other problems`, () => {
        assert.throws(
          () => load({ [name]: bad, [other]: '0' }),
          (err: unknown) =>
            err instanceof ConfigurationError &&
            err.problems.includes(`${name} must be true or false`) &&
            err.problems.some((p) => p.startsWith(other)),
        );
      });
  });
