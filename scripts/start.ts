/**
 * `npm start`: bring the stack up, migrate, prepare topics and schemas, start the
 * pipeline's services in this process, and print where to look. Ctrl-C stops the
 * pipeline cleanly; the stack keeps running (`npm run stack:down` stops it).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import {
  loadOrdersPartnerConfig,
  start as startOrdersPartner,
  type RunningOrdersPartner,
} from '../services/example-partner-orders/index.ts';
import {
  loadProfilesPartnerConfig,
  start as startProfilesPartner,
  type RunningProfilesPartner,
} from '../services/example-partner-profiles/index.ts';
import { startServices, stopOnSignal, SERVICES } from '../services/main.ts';
import { migrate } from '../services/shared/db/migrate.ts';
import { TOPICS } from '../services/shared/event-codec.ts';
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

  // The example partners run in this process too, and stop first on Ctrl-C (reverse order).
  // On the dev stack the requested topic also holds every test run's events, some for targets
  // named like the demo's; a partner group would wade through all of them before reaching the
  // demo's. So the demo's groups start at the topic's end on each run. A real partner keeps
  // its committed offsets (the SDK default), so events published while it was down are erased.
  const ordersCfg = loadOrdersPartnerConfig(process.env);
  const profilesCfg = loadProfilesPartnerConfig(process.env);
  const resetAdmin = kafka.admin();
  await resetAdmin.connect();
  try {
    // Explicit end offsets: kafkajs' resetOffsets writes the -1 sentinel, which a consumer with
    // fromBeginning reads as "no offset" and starts from the beginning after all.
    const ends = await resetAdmin.fetchTopicOffsets(TOPICS.requested);
    const partitions = ends.map((p) => ({ partition: p.partition, offset: p.high }));
    for (const groupId of [ordersCfg.groupId, profilesCfg.groupId]) {
      await resetAdmin.setOffsets({ groupId, topic: TOPICS.requested, partitions }).catch((err: unknown) => {
        say(
          `WARNING could not move ${groupId} to the end (${err instanceof Error ? err.message : String(err)})`,
        );
      });
    }
  } finally {
    await resetAdmin.disconnect();
  }
  const partners = {
    orders: await startOrdersPartner(ordersCfg),
    profiles: await startProfilesPartner(profilesCfg),
  };
  running.push(partners.orders, partners.profiles);
  say(`example partners started: orders-db (${partners.orders.url}), profiles (${partners.profiles.url})`);

  const api = running[0]!.url;
  const demo = await runDemo(api, adminToken, partners);
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
      'Demo: two targets registered (orders-db, profiles), served by the example partners in',
      'services/example-partner-orders and services/example-partner-profiles; one request:',
      `  curl -s -H "Authorization: Bearer ${adminToken}" ${api}${demo.self}`,
      'Submit your own:',
      `  curl -s -X POST ${api}/v1/erasure-requests -H "Authorization: Bearer ${adminToken}" \\`,
      `       -H "Content-Type: application/json" -H "Idempotency-Key: $(date +%s%N)" \\`,
      `       -d '{"identifiers":[{"type":"email","value":"someone@example.com"}],"reason":"gdpr_art17"}'`,
      `API reference: ${api}/openapi.json   Journal check: npx erasure journal verify`,
      '',
      'Running: api, journal-sealer, relay (outbox → Kafka), ack-consumer, and the two example partners.',
      'Partners acknowledge on',
      `privacy.erasure.acks.v1 (see packages/partner-sdk) or with POST ${api}/v1/acks and an ack token.`,
      'Coming next (README "Roadmap"): late-partner redelivery, synchronous',
      'delete calls, and the Parquet dataset on S3.',
      'Ctrl-C stops the pipeline.',
      '',
    ].join('\n'),
  );
}

// A new subject per run: a request for a subject already in flight (an earlier demo run
// stopped before its partners answered) would be linked to that one, not fanned out again.
const DEMO_RUN = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
const DEMO_SUBJECT = { userId: `demo-user-${DEMO_RUN}`, email: `demo.user.${DEMO_RUN}@example.com` };
const DEMO_BYSTANDER = { userId: 'demo-user-2', email: 'other.user@example.com' };
const idsOf = (p: { userId: string; email: string }) => [
  { type: 'user_id', value: p.userId },
  { type: 'email', value: p.email },
];
const DEMO_COMPLETION_WAIT_MS = 30_000;

/**
 * Registers the demo targets (idempotent), seeds the example partners with the demo subject's
 * data and a bystander's, submits one request through the public API, and waits (bounded)
 * for it to complete, printing one line either way: the demo never hangs start-up.
 */
async function runDemo(
  api: string,
  token: string,
  partners: { orders: RunningOrdersPartner; profiles: RunningProfilesPartner },
): Promise<{ self: string }> {
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${api}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
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
  // Fresh data for the subject each run; the bystander's rows are added once and must survive.
  await partners.orders.seed([
    { userId: DEMO_SUBJECT.userId, email: DEMO_SUBJECT.email, item: 'demo book' },
    { userId: DEMO_SUBJECT.userId, email: DEMO_SUBJECT.email, item: 'demo lamp' },
  ]);
  if ((await partners.orders.count(idsOf(DEMO_BYSTANDER))) === 0)
    await partners.orders.seed([
      { userId: DEMO_BYSTANDER.userId, email: DEMO_BYSTANDER.email, item: 'chair' },
    ]);
  await partners.profiles.seed([
    { userId: DEMO_SUBJECT.userId, name: 'Demo User' },
    { userId: DEMO_BYSTANDER.userId, name: 'Other User' },
  ]);
  say('demo data seeded in the example partners (subject and a bystander)');

  // A key per run, not per day: the data was just seeded, so this run's request must erase it.
  const res = await call(
    'POST',
    '/v1/erasure-requests',
    { identifiers: idsOf(DEMO_SUBJECT), reason: 'gdpr_art17' },
    { 'idempotency-key': `demo-${new Date().toISOString()}` },
  );
  if (res.status !== 202)
    throw new Error(`demo: submitting a request answered ${res.status} ${String(res.body['code'])}`);
  say(
    `demo request ${String(res.body['id'])} accepted (${String(res.body['status'])}, deadline ${String(res.body['deadline'])})`,
  );
  const self = String((res.body['links'] as { self: string }).self);
  await reportDemoOutcome(self, (path) => call('GET', path), partners);
  return { self };
}

/** Polls the request for up to DEMO_COMPLETION_WAIT_MS and prints one line on how it ended. */
async function reportDemoOutcome(
  self: string,
  get: (path: string) => Promise<{ status: number; body: Record<string, unknown> }>,
  partners: { orders: RunningOrdersPartner; profiles: RunningProfilesPartner },
): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < DEMO_COMPLETION_WAIT_MS) {
    const { body } = await get(self);
    if (body['status'] === 'completed' || body['status'] === 'needs_attention') {
      const tasks = (body['tasks'] ?? []) as {
        target: string;
        state: string;
        evidence?: { status?: string };
      }[];
      const outcomes = tasks.map((t) => `${t.target} ${t.evidence?.status ?? t.state}`).join(', ');
      const ordersLeft = await partners.orders.count(idsOf(DEMO_SUBJECT));
      const bystanderRows = await partners.orders.count(idsOf(DEMO_BYSTANDER));
      const profilesNow = await partners.profiles.latest([DEMO_SUBJECT.userId, DEMO_BYSTANDER.userId]);
      say(
        `demo request ${String(body['status'])} in ${Date.now() - started} ms (${outcomes}); ` +
          `subject: ${ordersLeft} order rows, profile ${profilesNow.get(DEMO_SUBJECT.userId) ? 'present' : 'gone'}; ` +
          `bystander: ${bystanderRows} order rows, profile ${profilesNow.get(DEMO_BYSTANDER.userId) ? 'present' : 'gone'}`,
      );
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  say(
    `demo request still in progress after ${DEMO_COMPLETION_WAIT_MS / 1000} s; follow it with GET ${self} ` +
      "(tasks and journal) and the example partners' log lines above",
  );
}

main().catch((err: unknown) => {
  say(`FAILED: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
