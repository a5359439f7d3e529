/**
 * The web console (`GET /console`): one HTML page and its static assets. They carry no data,
 * so they need no token (a browser cannot send a bearer token when it navigates); the page
 * asks for one and calls the /v1 API with it, so the console has exactly the API's auth and
 * scopes. Unknown paths under /console fall through to the app's 404 problem.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Router } from 'express';

/**
 * Scripts, styles and API calls from this origin only, nothing inline: a value the escaping
 * missed still cannot run. No framing, no <base>, no form posts.
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Served path (under /console) → file in the assets folder and its content type. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/render.js': { file: 'render.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

/**
 * Routes to mount at /console. The files are read once, here: a missing one fails start-up,
 * not a page view. `assetsDir` defaults to the assets folder beside this file.
 */
export function consoleRoutes(assetsDir: string = join(import.meta.dirname, 'assets')): Router {
  const router = Router();
  for (const [path, { file, type }] of Object.entries(FILES)) {
    const body = readFileSync(join(assetsDir, file), 'utf8');
    router.get(path, (_req, res) => {
      // no-cache: the browser asks again before each use, so a new deploy's app.js never runs
      // under an old page (the files are small, and the app sends no ETag).
      res.set('Cache-Control', 'no-cache').type(type);
      if (path === '/') {
        res.set('Content-Security-Policy', CONSOLE_CSP);
        res.set('Referrer-Policy', 'no-referrer');
      }
      res.send(body);
    });
  }
  return router;
}
