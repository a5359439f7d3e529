import { existsSync, readFileSync } from 'node:fs';
import express from 'express';
import type pg from 'pg';
import { Counter, Histogram, type Registry } from 'prom-client';
import { problem } from '../shared/errors.ts';
import type { IdentifierType } from '../shared/identifiers.ts';
import type { Logger } from '../shared/logger.ts';
import { runChecks, type Check } from '../shared/readiness.ts';
import { authenticate } from './auth/authenticate.ts';
import type { TokenStore } from './auth/token-store.ts';
import type { ApiConfig } from './config.ts';
import { consoleRoutes } from './console/console-routes.ts';
import { problemHandler, sendProblem } from './http/problem-handler.ts';
import { createAcceptBatcher } from './intake/accept-batcher.ts';
import { ackRoutes } from './routes/acks.ts';
import { adminRoutes } from './routes/admin.ts';
import { erasureRequestRoutes } from './routes/erasure-requests.ts';
import { targetRoutes } from './routes/targets.ts';

export interface AppDeps {
  cfg: Pick<
    ApiConfig,
    | 'hmacKey'
    | 'bodyLimitBytes'
    | 'batchBodyLimitBytes'
    | 'maxBatchSize'
    | 'rateLimitPerSecond'
    | 'rateLimitBurst'
    | 'acceptMaxBatch'
    | 'acceptMaxInFlight'
  >;
  pool: pg.Pool;
  tokens: TokenStore;
  logger: Logger;
  checks: Record<string, Check>;
  metrics: Registry;
  /** What /metrics serves, if not `metrics` alone (an API worker: the whole process group's). */
  metricsText?: () => Promise<string>;
  openApiPath: string;
  now?: () => number;
}

/** Loads identifier types, cached briefly: every request validates against them. */
function identifierTypeCache(pool: pg.Pool, ttlMs = 5000) {
  let cached: { at: number; types: Map<string, IdentifierType> } | undefined;
  return {
    async get(): Promise<ReadonlyMap<string, IdentifierType>> {
      if (cached && Date.now() - cached.at < ttlMs) return cached.types;
      const { rows } = await pool.query<IdentifierType & { max_length: number }>(
        'SELECT name, builtin, pattern, max_length, lowercase FROM identifier_types',
      );
      const types = new Map(rows.map((r) => [r.name, { ...r, maxLength: r.max_length }]));
      cached = { at: Date.now(), types };
      return types;
    },
    invalidate() {
      cached = undefined;
    },
  };
}

/**
 * The route a request matched, as a metrics label: the mount path and the router's pattern
 * ('/v1/erasure-requests/:id'), never the raw URL (ids would make a series per request).
 * Express restores req.baseUrl before 'finish', so each mount records its literal path in
 * res.locals (see `at` below).
 */
function routeLabel(req: express.Request, res: express.Response): string {
  const base = typeof res.locals['routeBase'] === 'string' ? (res.locals['routeBase'] as string) : '';
  if (!req.route) return base || 'unmatched';
  const path = String(req.route.path);
  return path === '/' ? base || '/' : `${base}${path}`;
}

/** Records a mount's literal path for routeLabel. */
const at =
  (base: string): express.RequestHandler =>
  (_req, res, next) => {
    res.locals['routeBase'] = base;
    next();
  };

/** %00–%1F, %7F, and C1 controls as UTF-8 (%C2%80–%C2%9F). */
const ENCODED_CONTROL_CHARACTER = /%(?:[01][0-9a-f]|7f|c2%[89][0-9a-f])/i;

export function createApp(deps: AppDeps): express.Express {
  const { pool, logger, metrics } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false); // answers are per call; hashing every body costs CPU for nothing
  app.set('query parser', 'simple');

  const httpDuration = new Histogram({
    name: 'erasure_api_http_request_duration_seconds',
    help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [metrics],
  });
  const accepted = new Counter({
    name: 'erasure_requests_accepted_total',
    help: 'Erasure requests accepted, by outcome (created, existing, linked, conflict)',
    labelNames: ['outcome'],
    registers: [metrics],
  });
  const batchSize = new Histogram({
    name: 'erasure_batch_size',
    help: 'Requests per batch call',
    buckets: [1, 10, 100, 1000, 5000, 10000],
    registers: [metrics],
  });
  app.use((req, res, next) => {
    // Every answer declares its type (JSON, metrics text, and HTML only for the console and
    // the report): a browser must not sniff a problem's detail, which can echo request text,
    // into HTML.
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const end = httpDuration.startTimer({ method: req.method });
    res.on('finish', () =>
      end({
        route: routeLabel(req, res),
        status: res.statusCode,
      }),
    );
    next();
  });

  // A percent-encoded control character in a path or query value (%00 above all: PostgreSQL
  // refuses NUL in text) is refused here for every route, before a handler passes it on.
  // Raw control bytes never get this far: node's HTTP parser refuses them.
  app.use((req, _res, next) => {
    if (ENCODED_CONTROL_CHARACTER.test(req.url)) {
      throw problem('ERR_CONTROL_CHARACTERS', 'the URL holds a percent-encoded control character');
    }
    next();
  });

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const result = await runChecks(deps.checks);
    res.status(result.ready ? 200 : 503).json(result);
  });
  app.get('/metrics', async (_req, res) => {
    const text = await (deps.metricsText ?? (() => metrics.metrics()))();
    res.type(metrics.contentType).send(text);
  });
  const openApi = existsSync(deps.openApiPath) ? readFileSync(deps.openApiPath, 'utf8') : undefined;
  app.get('/openapi.json', (_req, res) => {
    if (!openApi) throw problem('ERR_NOT_FOUND', 'no OpenAPI document is installed');
    res.type('application/json').send(openApi);
  });

  const types = identifierTypeCache(pool);
  const batcher = createAcceptBatcher({
    pool,
    hmacKey: deps.cfg.hmacKey,
    maxBatch: deps.cfg.acceptMaxBatch,
    maxInFlight: deps.cfg.acceptMaxInFlight,
  });
  const auth = authenticate({
    tokens: deps.tokens,
    rateLimitPerSecond: deps.cfg.rateLimitPerSecond,
    rateLimitBurst: deps.cfg.rateLimitBurst,
    now: deps.now ?? Date.now,
  });
  const requests = erasureRequestRoutes({
    pool,
    logger,
    hmacKey: deps.cfg.hmacKey,
    bodyLimitBytes: deps.cfg.bodyLimitBytes,
    batchBodyLimitBytes: deps.cfg.batchBodyLimitBytes,
    maxBatchSize: deps.cfg.maxBatchSize,
    identifierTypes: () => types.get(),
    accepted,
    batchSize,
    acceptOne: batcher.accept,
  });
  const admin = adminRoutes({
    pool,
    tokens: deps.tokens,
    bodyLimitBytes: deps.cfg.bodyLimitBytes,
    onTypesChanged: () => types.invalidate(),
  });

  // The contract's literal path has a colon, which Express would read as a parameter. Like the
  // other routes (Express's defaults), it matches in any case and with one trailing slash.
  app.use(/^\/v1\/erasure-requests:batch\/?$/i, at('/v1/erasure-requests:batch'), auth, requests.batch);
  app.use('/v1/erasure-requests', at('/v1/erasure-requests'), auth, requests.router);
  app.use(
    '/v1/targets',
    at('/v1/targets'),
    auth,
    targetRoutes({
      pool,
      bodyLimitBytes: deps.cfg.bodyLimitBytes,
      actorOf: (req) => (req as express.Request).principal!.tokenId,
    }),
  );
  app.use('/v1/tokens', at('/v1/tokens'), auth, admin.tokens);
  app.use('/v1/identifier-types', at('/v1/identifier-types'), auth, admin.types);
  app.use('/v1/acks', at('/v1/acks'), auth, ackRoutes({ pool, bodyLimitBytes: deps.cfg.bodyLimitBytes }));
  // The console's page and assets carry no data: no token (the page sends one on its API calls).
  app.use('/console', at('/console'), consoleRoutes());
  app.use((req, res) => {
    sendProblem(res, 'ERR_NOT_FOUND', `no route for ${req.method} ${req.path.slice(0, 100)}`);
  });
  app.use(problemHandler(logger));
  return app;
}
