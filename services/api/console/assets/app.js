// @ts-check
/* global document, window, location, sessionStorage, fetch, FormData, HTMLElement, HTMLFormElement */
/**
 * The web console: calls the /v1 API with the bearer token the user pastes in, so it shows
 * exactly what that token's scopes allow. The token is kept in sessionStorage only (gone
 * when the tab closes; never a cookie, never localStorage). API answers are rendered by
 * render.js, which escapes every value, and are kept nowhere but the DOM.
 */
import {
  listQuery,
  parseRoute,
  renderProblem,
  renderReportSummary,
  renderRequestDetail,
  renderRequestList,
  renderTargets,
} from './render.js';

const TOKEN_KEY = 'erasure-console-token';

/** @param {string} id */
function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page lacks #${id}`);
  return el;
}

const view = byId('view');
const banner = byId('banner');
const tokenForm = /** @type {HTMLFormElement} */ (byId('token-form'));
const tokenInput = /** @type {HTMLInputElement} */ (byId('token'));
const tokenState = byId('token-state');

/** An API answer other than 2xx (status 0: no answer at all). */
class ApiProblem extends Error {
  /**
   * @param {number} status
   * @param {{ title?: unknown, detail?: unknown, code?: unknown }} problem
   */
  constructor(status, problem) {
    super(typeof problem.detail === 'string' ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * One API call with the session's token.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function api(method, path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new ApiProblem(0, { title: 'No token', detail: 'paste a bearer token above' });
  /** @type {Record<string, string>} */
  const headers = { authorization: `Bearer ${token}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiProblem(0, { title: 'Network error', detail: 'the API could not be reached' });
  }
  const raw = await res.text();
  let data;
  try {
    data = raw ? JSON.parse(raw) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) throw new ApiProblem(res.status, data ?? { title: res.statusText || 'Request failed' });
  return data;
}

/** @param {unknown} err */
function showError(err) {
  banner.innerHTML =
    err instanceof ApiProblem
      ? renderProblem(err.status, err.problem)
      : renderProblem(0, { title: 'Error', detail: String(err) });
  banner.hidden = false;
}

function clearError() {
  banner.hidden = true;
  banner.textContent = '';
}

function showTokenState() {
  const set = sessionStorage.getItem(TOKEN_KEY) !== null;
  tokenState.textContent = set ? 'Token set for this tab.' : 'No token: paste one to see data.';
}

// A later navigation wins: an answer for a view the user has left is dropped.
let generation = 0;

async function show() {
  const mine = ++generation;
  const current = () => mine === generation;
  clearError();
  const route = parseRoute(location.hash);
  for (const a of document.querySelectorAll('nav a')) {
    const on = a.getAttribute('data-view') === (route.view === 'request' ? 'requests' : route.view);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    view.innerHTML = '<p class="empty">Paste a bearer token above to load this view.</p>';
    return;
  }
  view.innerHTML = '<p class="loading">loading…</p>';
  try {
    if (route.view === 'requests') {
      const page = await api('GET', `/v1/erasure-requests${listQuery(route.filter)}`);
      if (current()) view.innerHTML = renderRequestList(page, route.filter);
    } else if (route.view === 'request') {
      const path = `/v1/erasure-requests/${encodeURIComponent(route.id)}`;
      const request = await api('GET', path);
      if (!current()) return;
      view.innerHTML = renderRequestDetail(request);
      const section = byId('report');
      try {
        const report = await api('GET', `${path}/report`);
        if (current()) section.innerHTML = renderReportSummary(report);
      } catch (err) {
        if (current()) section.textContent = 'The erasure report could not be loaded.';
        throw err;
      }
    } else if (route.view === 'targets') {
      const list = await api('GET', '/v1/targets');
      if (current()) view.innerHTML = renderTargets(list);
    } else {
      view.innerHTML = '<p class="empty">No such view.</p>';
    }
  } catch (err) {
    if (!current()) return;
    // Nothing was shown for this view yet: drop the "loading…" line, keep what was.
    if (view.firstElementChild?.classList.contains('loading')) view.textContent = '';
    showError(err);
  }
}

/** @param {string} hash */
function navigate(hash) {
  if (location.hash === hash) void show();
  else location.hash = hash;
}

/**
 * Runs a button's action, then shows the view again; a refusal (a 409 for a request already
 * dispatched, a 403 for a token without the admin scope) is shown in the banner.
 * @param {HTMLElement} button
 */
async function act(button) {
  const action = button.dataset['action'];
  button.setAttribute('disabled', '');
  try {
    if (action === 'cancel') {
      const id = button.dataset['id'] ?? '';
      if (!window.confirm('Cancel this erasure request?')) return;
      await api('POST', `/v1/erasure-requests/${encodeURIComponent(id)}/cancel`);
    } else if (action === 'pause' || action === 'resume') {
      const name = button.dataset['name'] ?? '';
      await api('PATCH', `/v1/targets/${encodeURIComponent(name)}`, { paused: action === 'pause' });
    } else {
      return;
    }
    await show();
  } catch (err) {
    showError(err);
  } finally {
    button.removeAttribute('disabled');
  }
}

tokenForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const token = tokenInput.value.trim().replace(/^Bearer\s+/i, '');
  tokenInput.value = '';
  if (!token) return;
  // A header cannot carry other characters: fetch would fail as if the API were down.
  if (!/^[\x21-\x7e]+$/.test(token)) {
    showError(new ApiProblem(0, { title: 'Not a token', detail: 'a bearer token is printable ASCII' }));
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  showTokenState();
  void show();
});

byId('forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  tokenInput.value = '';
  showTokenState();
  void show();
});

view.addEventListener('click', (e) => {
  const target = e.target instanceof HTMLElement ? e.target.closest('button[data-action]') : null;
  if (target instanceof HTMLElement) void act(target);
});

view.addEventListener('submit', (e) => {
  const form = e.target;
  if (!(form instanceof HTMLFormElement) || form.id !== 'filters') return;
  e.preventDefault();
  /** @type {Record<string, string>} */
  const filter = {};
  for (const [k, v] of new FormData(form)) if (typeof v === 'string' && v.trim()) filter[k] = v.trim();
  navigate(`#/requests${listQuery(filter)}`);
});

window.addEventListener('hashchange', () => void show());
showTokenState();
void show();
