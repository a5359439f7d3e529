/**
 * `npm start`: bring the stack up, migrate, prepare topics and schemas, start the
 * pipeline's services in this process, and print where to look. Ctrl-C stops the
 * pipeline cleanly; the stack keeps running (`npm run stack:down` stops it).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { startServices, stopOnSignal, SERVICES } from '../services/main.ts';
import { migrate } from '../services/shared/db/migrate.ts';
import { ensureTopics, loadTopicDefinitions, registerSchemas } from '../services/shared/event-log.ts';
import { loadStackConfig, REPO_ROOT } from './stack/stack-config.ts';
import { PART_NAMES, stackUp } from './stack/stack.ts';

// Node 20 is this project's baseline; the pinned AWS SDK supports it, so its notice about
// future releases needing Node 22 is noise in every command's output.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

const say = (line: string) => process.stderr.write(`start: ${line}\n`);

async function main(): Promise<void> {
  const cfg = loadStackConfig(process.env);
  say('bringing the stack up ...');
  const { failures } = await stackUp(cfg, PART_NAMES, (l) => say(`stack: ${l}`));
  if (failures.length > 0) {
    for (const f of failures) say(`FAILED ${f.line(process.cwd())}`);
    process.exit(1);
  }

  const pool = new pg.Pool({ connectionString: cfg.infra.databaseUrl, max: 2 });
  const applied = await migrate(pool, join(REPO_ROOT, 'schemas', 'sql'));
  await pool.end();
  say(`database migrated (${applied.length} new migration(s))`);

  // kafkajs' own logging is off: a failure reaches us as an error and ends in one FAILED line.
  const kafka = new Kafka({
    clientId: 'erasure-start',
    brokers: [...cfg.infra.kafkaBrokers],
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const defs = await loadTopicDefinitions(join(REPO_ROOT, 'schemas'));
    const { created, drift } = await ensureTopics(admin, defs);
    say(`topics ready (created: ${created.length > 0 ? created.join(', ') : 'none'})`);
    for (const d of drift) say(`WARNING topic differs from schemas/topics.json (left as is): ${d}`);
  } finally {
    await admin.disconnect();
  }
  const schemas = await registerSchemas(cfg.infra.schemaRegistryUrl, join(REPO_ROOT, 'schemas', 'avro'));
  say(`schemas registered: ${schemas.map((r) => `${r.subject}=${r.id}`).join(', ')}`);

  // The demo needs an admin; a deployment sets its own ERASURE_ADMIN_TOKEN.
  const adminToken = process.env['ERASURE_ADMIN_TOKEN'] || `demo_${randomBytes(24).toString('base64url')}`;
  const running = await startServices(SERVICES, { ...process.env, ERASURE_ADMIN_TOKEN: adminToken });
  stopOnSignal(running, () => {
    say('pipeline stopped; the stack is still running (npm run stack:down stops it)');
    process.exit(0);
  });

  const api = running[0]!.url;
  const demo = await runDemo(api, adminToken);
  process.stdout.write(
    [
      '',
      'Erasure pipeline is running.',
      `  API          ${api}   (health ${api}/healthz, readiness ${api}/readyz, metrics ${api}/metrics)`,
      `  Kafka        ${cfg.infra.kafkaBrokers.join(',')}`,
      `  Registry     ${cfg.infra.schemaRegistryUrl}`,
      `  S3           ${cfg.infra.s3.endpoint}  bucket ${cfg.infra.s3.bucket}`,
      `  Postgres     ${cfg.infra.external.postgres ? '(DATABASE_URL)' : `127.0.0.1:${cfg.ports.postgresPort}`}`,
      `  Stack logs   ${cfg.logsDir}`,
      '',
      `Admin token for this session: ${adminToken}`,
      '',
      'Demo: two targets registered (orders-db, profiles) and one request accepted:',
      `  curl -s -H "Authorization: Bearer ${adminToken}" ${api}${demo.self}`,
      'Submit your own:',
      `  curl -s -X POST ${api}/v1/erasure-requests -H "Authorization: Bearer ${adminToken}" \\`,
      `       -H "Content-Type: application/json" -H "Idempotency-Key: $(date +%s%N)" \\`,
      `       -d '{"identifiers":[{"type":"email","value":"someone@example.com"}],"reason":"gdpr_art17"}'`,
      `API reference: ${api}/openapi.json   Journal check: npx erasure journal verify`,
      '',
      'Running: api, journal-sealer, relay (outbox → Kafka), ack-consumer. Partners acknowledge on',
      `privacy.erasure.acks.v1 (see packages/partner-sdk) or with POST ${api}/v1/acks and an ack token.`,
      'Coming next (README "Roadmap"): example partners in the demo, late-partner redelivery, synchronous',
      'delete calls, and the Parquet dataset on S3.',
      'Ctrl-C stops the pipeline.',
      '',
    ].join('\n'),
  );
}

/** Registers the demo targets (idempotent) and submits one request, through the public API. */
async function runDemo(api: string, token: string): Promise<{ self: string }> {
  const call = async (method: string, path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${api}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  for (const target of [
    {
      name: 'orders-db',
      kind: 'async_event',
      identifierTypes: ['user_id', 'email'],
      ackSlaSeconds: 3600,
      owner: 'demo',
    },
    {
      name: 'profiles',
      kind: 'async_event',
      identifierTypes: ['user_id'],
      ackSlaSeconds: 3600,
      owner: 'demo',
    },
  ]) {
    const res = await call('POST', '/v1/targets', target);
    if (res.status !== 201 && res.body['code'] !== 'ERR_CONFLICT') {
      throw new Error(
        `demo: registering target ${target.name} answered ${res.status} ${String(res.body['code'])}`,
      );
    }
  }
  const res = await call(
    'POST',
    '/v1/erasure-requests',
    {
      identifiers: [
        { type: 'user_id', value: 'demo-user-1' },
        { type: 'email', value: 'demo.user@example.com' },
      ],
      reason: 'gdpr_art17',
    },
    { 'idempotency-key': `demo-${new Date().toISOString().slice(0, 10)}` },
  );
  if (res.status !== 202)
    throw new Error(`demo: submitting a request answered ${res.status} ${String(res.body['code'])}`);
  say(
    `demo request ${String(res.body['id'])} accepted (${String(res.body['status'])}, deadline ${String(res.body['deadline'])})`,
  );
  return { self: String((res.body['links'] as { self: string }).self) };
}

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
