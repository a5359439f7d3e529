import express from 'express';
import type { Registry } from 'prom-client';
import { runChecks, type Check } from '../shared/readiness.ts';

export interface AppDeps {
  checks: Record<string, Check>;
  metrics: Registry;
}

/**
 * The HTTP surface. Until the intake issue lands it serves only the operational
 * endpoints; /v1 answers 501 with a problem document saying what is coming.
 */
export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const result = await runChecks(deps.checks);
    res.status(result.ready ? 200 : 503).json(result);
  });
  app.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.contentType).send(await deps.metrics.metrics());
  });
  app.use('/v1', (_req, res) => {
    res.status(501).type('application/problem+json').json({
      type: 'about:blank',
      title: 'Not implemented yet',
      status: 501,
      code: 'ERR_NOT_IMPLEMENTED',
      detail:
        'The intake API (POST /v1/erasure-requests and friends) is being built; see the README roadmap.',
    });
  });
  return app;
}
