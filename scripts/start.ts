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
  loadCrmPartnerConfig,
  start as startCrmPartner,
  type RunningCrmPartner,
} from '../services/example-partner-crm/index.ts';
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
import {
  createProcessGroup,
  handleSignals,
  loadProcessConfig,
  startServices,
  SERVICES,
} from '../services/main.ts';
import { migrate } from '../services/shared/db/migrate.ts';
import { loadDatasetSettings } from '../services/shared/dataset/dataset-config.ts';
import { TOPICS } from '../services/shared/event-codec.ts';
import { quietAwsSdkNotice } from '../services/shared/quiet-aws-sdk-notice.ts';
import { ensureTopics, loadTopicDefinitions, registerSchemas } from '../services/shared/event-log.ts';
import { loadStackConfig, REPO_ROOT } from './stack/stack-config.ts';
import { PART_NAMES, stackUp } from './stack/stack.ts';

quietAwsSdkNotice(process.env);

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
  const schemas = await registerSchemas(cfg.infra.schemaRegistryUrl, join(REPO_ROOT, 'schemas', 'avro'), {
    timeoutMs: cfg.infra.schemaRegistryTimeoutMs,
  });
  say(`schemas registered: ${schemas.map((r) => `${r.subject}=${r.id}`).join(', ')}`);

  // The demo needs an admin; a deployment sets its own ERASURE_ADMIN_TOKEN.
  const adminToken = process.env['ERASURE_ADMIN_TOKEN'] || `demo_${randomBytes(24).toString('base64url')}`;
  // The crm partner's auth secret, shared with the sync dispatcher in this process the way a
  // deployment shares it: both read ERASURE_SECRET_<ref>. A new one each run unless set; the
  // target stores only the reference, so nothing else changes when it does.
  const crmSecretVar = `ERASURE_SECRET_${process.env['CRM_PARTNER_SECRET_REF'] || 'DEMO_CRM'}`;
  process.env[crmSecretVar] ||= `demo_${randomBytes(24).toString('base64url')}`;
  const crmCfg = loadCrmPartnerConfig(process.env);
  const processCfg = loadProcessConfig(process.env);
  const group = createProcessGroup(processCfg);
  // Before anything starts: Ctrl-C during a slow start stops what has started too.
  handleSignals(() =>
    group.stop().then((report) => {
      say(
        report.ok
          ? 'pipeline stopped; the stack is still running (npm run stack:down stops it)'
          : `pipeline stopped with problems (${[...report.failed, ...report.pending].join(', ')}: see the log)`,
      );
      process.exit(report.ok ? 0 : 1);
    }),
  );
  const env = { ...process.env, ERASURE_ADMIN_TOKEN: adminToken };
  const running = await startServices(SERVICES, env, group, processCfg);

  // The example partners run in this process too, in the same group: they stop first on
  // Ctrl-C (reverse order).
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
  const orders = await group.add('example-partner-orders', () => startOrdersPartner(ordersCfg));
  const profiles = await group.add('example-partner-profiles', () => startProfilesPartner(profilesCfg));
  const crm = await group.add('example-partner-crm', () => startCrmPartner(crmCfg));
  // Undefined when Ctrl-C came meanwhile: the group is stopping, and its handler exits.
  if (!orders || !profiles || !crm) return;
  const partners = { orders, profiles, crm };
  say(
    `example partners started: orders-db (${partners.orders.url}), profiles (${partners.profiles.url}), ` +
      `${crmCfg.target} (delete API ${partners.crm.url}, contacts in ${partners.crm.databaseUrl})`,
  );

  const api = running[0]!.url;
  const demo = await runDemo(api, adminToken, partners, crmCfg);
  const dataset = loadDatasetSettings(process.env, []);
  const datasetAt = dataset ? `s3://${dataset.bucket}/${dataset.prefix}/` : '(DATASET_PREFIX is invalid)';
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
      `Web console: ${api}/console  (paste the token)`,
      '',
      `Demo: three targets registered, served by the example partners: orders-db and profiles`,
      '(services/example-partner-orders, -profiles) consume erasure events and acknowledge;',
      `${crmCfg.target} (services/example-partner-crm) is a synchronous delete API at ${partners.crm.url}/erase`,
      `that the sync dispatcher calls (${crmCfg.authType}, secret ${crmSecretVar}). One request:`,
      `  curl -s -H "Authorization: Bearer ${adminToken}" ${api}${demo.self}`,
      'Its erasure report (JSON; add -H "Accept: text/html" for a page):',
      `  curl -s -H "Authorization: Bearer ${adminToken}" ${api}${demo.self}/report`,
      'Submit your own:',
      `  curl -s -X POST ${api}/v1/erasure-requests -H "Authorization: Bearer ${adminToken}" \\`,
      `       -H "Content-Type: application/json" -H "Idempotency-Key: $(date +%s%N)" \\`,
      `       -d '{"identifiers":[{"type":"email","value":"someone@example.com"}],"reason":"gdpr_art17"}'`,
      `API reference: ${api}/openapi.json   Journal check: npx erasure journal verify`,
      '',
      `Running: ${SERVICES.join(', ')}, and the three example partners.`,
      '  relay publishes the outbox to Kafka; partners acknowledge on privacy.erasure.acks.v1',
      `  (packages/partner-sdk) or with POST ${api}/v1/acks and an ack token; ack-consumer applies`,
      '  the acks; redelivery re-sends events to partners late on their SLA; sync-dispatcher calls',
      `  sync_http targets; exporter writes the Parquet dataset to ${datasetAt}`,
      '  (`npx erasure dataset compact --help`, README "Offline dataset").',
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

type DemoPartners = {
  orders: RunningOrdersPartner;
  profiles: RunningProfilesPartner;
  crm: RunningCrmPartner;
};
type Call = (
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
) => Promise<{ status: number; body: Record<string, unknown> }>;

const TARGET_FIELDS = 'identifierTypes ackSlaSeconds after http verifyUrlTemplate paused owner'.split(' ');
const HTTP_FIELDS =
  'method urlTemplate headers bodyTemplate timeoutMs rateLimitPerSecond concurrency notFoundStatuses auth maxAttempts maxAgeSeconds'.split(
    ' ',
  );

/**
 * Registers a demo target, or, when one of that name is left from an earlier run (the crm
 * partner listens on a new port each run; a target may have been paused or edited), brings it
 * back to this run's settings with PATCH. Merge-patch keeps fields the body leaves out, so
 * every other field is sent as null (its default): the target ends exactly as `spec` says.
 */
async function registerDemoTarget(
  call: Call,
  spec: Record<string, unknown>,
): Promise<'registered' | 'updated'> {
  const created = await call('POST', '/v1/targets', spec);
  if (created.status === 201) return 'registered';
  if (created.body['code'] !== 'ERR_CONFLICT')
    throw new Error(
      `demo: registering target ${String(spec['name'])} answered ${created.status} ${String(created.body['code'])}`,
    );
  const patch: Record<string, unknown> = {};
  for (const f of TARGET_FIELDS) patch[f] = spec[f] ?? null;
  if (spec['http']) {
    const http = spec['http'] as Record<string, unknown>;
    patch['http'] = Object.fromEntries(HTTP_FIELDS.map((f) => [f, http[f] ?? null]));
  }
  patch['paused'] = false;
  const updated = await call('PATCH', `/v1/targets/${String(spec['name'])}`, patch, {
    'content-type': 'application/merge-patch+json',
  });
  if (updated.status !== 200)
    throw new Error(
      `demo: target ${String(spec['name'])} exists and could not be updated (${updated.status} ` +
        `${String(updated.body['code'])}: ${String(updated.body['detail'])}); a target's kind cannot change, so ` +
        'remove it or pick another name (CRM_PARTNER_TARGET for the crm partner)',
    );
  return 'updated';
}

/**
 * Registers the demo targets (or updates ones left by an earlier run), seeds the example partners with the demo subject's
 * data and a bystander's, submits one request through the public API, and waits (bounded)
 * for it to complete, printing one line either way: the demo never hangs start-up.
 */
async function runDemo(
  api: string,
  token: string,
  partners: DemoPartners,
  crm: { target: string; authType: string; secretRef: string },
): Promise<{ self: string }> {
  const call: Call = async (method, path, body, headers = {}) => {
    const res = await fetch(`${api}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const outcomes: string[] = [];
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
    {
      name: crm.target,
      kind: 'sync_http',
      // Email only: the body template names {{email}}, so every request the target is planned
      // for can be rendered (a template naming a type the request lacks fails the task).
      identifierTypes: ['email'],
      owner: 'demo',
      http: {
        method: 'POST',
        urlTemplate: `${partners.crm.url}/erase`,
        bodyTemplate: '{"email":"{{email}}"}',
        auth: { type: crm.authType, secretRef: crm.secretRef },
        timeoutMs: 5000,
        // Modest on purpose: a partner's live API, not a bulk endpoint.
        rateLimitPerSecond: 5,
        concurrency: 2,
      },
    },
  ]) {
    outcomes.push(`${target.name} ${await registerDemoTarget(call, target)}`);
  }
  say(`demo targets: ${outcomes.join(', ')}`);
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
  await partners.crm.seed([
    { userId: DEMO_SUBJECT.userId, email: DEMO_SUBJECT.email, name: 'Demo User' },
    { userId: DEMO_SUBJECT.userId, email: DEMO_SUBJECT.email, name: 'Demo User (newsletter)' },
  ]);
  if ((await partners.crm.count(idsOf(DEMO_BYSTANDER))) === 0)
    await partners.crm.seed([
      { userId: DEMO_BYSTANDER.userId, email: DEMO_BYSTANDER.email, name: 'Other User' },
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
  partners: DemoPartners,
): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < DEMO_COMPLETION_WAIT_MS) {
    const { body } = await get(self);
    if (body['status'] === 'completed' || body['status'] === 'needs_attention') {
      const tasks = (body['tasks'] ?? []) as {
        target: string;
        kind: string;
        state: string;
        outcome: string | null;
        evidence?: { status?: string; httpStatus?: number; detail?: string | null } | null;
      }[];
      // A sync call's evidence is the partner's answer (counts only, for the crm partner).
      const outcomes = tasks
        .map((t) => {
          const how = t.evidence?.status ?? t.outcome ?? t.state;
          const http = t.evidence?.httpStatus;
          return http
            ? `${t.target} ${how} (HTTP ${http} ${t.evidence?.detail ?? ''})`
            : `${t.target} ${how}`;
        })
        .join(', ');
      const ordersLeft = await partners.orders.count(idsOf(DEMO_SUBJECT));
      const bystanderRows = await partners.orders.count(idsOf(DEMO_BYSTANDER));
      const crmLeft = await partners.crm.count(idsOf(DEMO_SUBJECT));
      const crmBystander = await partners.crm.count(idsOf(DEMO_BYSTANDER));
      const profilesNow = await partners.profiles.latest([DEMO_SUBJECT.userId, DEMO_BYSTANDER.userId]);
      say(
        `demo request ${String(body['status'])} in ${Date.now() - started} ms (${tasks.length} targets: ${outcomes}); ` +
          `subject: ${ordersLeft} order rows, ${crmLeft} crm contacts, profile ${profilesNow.get(DEMO_SUBJECT.userId) ? 'present' : 'gone'}; ` +
          `bystander: ${bystanderRows} order rows, ${crmBystander} crm contacts, profile ${profilesNow.get(DEMO_BYSTANDER.userId) ? 'present' : 'gone'}`,
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
