// The console's shell: sign-in, the navigation the token's role allows,
// the hash router and the message line. Pages live in their own modules
// and render into <main> over the API.

import { api, session, setUnauthorizedHandler } from './api.js';
import { h, field, replace } from './dom.js';
import * as plugins from './plugins.js';
import * as connections from './connections.js';
import * as operations from './operations.js';
import * as chat from './chat.js';
import * as sync from './sync.js';
import * as audit from './audit.js';
import * as tokens from './tokens.js';

const RANK = { user: 1, operator: 2, admin: 3 };

// Page, title, least role, whether a project-restricted token may see it.
const PAGES = [
  ['plugins', 'Plugins', 'operator', false, plugins],
  ['connections', 'Connections', 'operator', true, connections],
  ['operations', 'Operations', 'user', true, operations],
  ['chat', 'Chat', 'user', true, chat],
  ['sync', 'Sync', 'operator', true, sync],
  ['audit', 'Audit', 'operator', true, audit],
  ['tokens', 'Tokens', 'admin', false, tokens],
];

// Everything a page blocked by CSP would have tried; the browser tests
// read it from the body's data attribute.
let violations = 0;
document.addEventListener('securitypolicyviolation', () => {
  violations += 1;
  document.body.dataset.cspViolations = String(violations);
});

let me = null;

export function can(role) {
  return me !== null && RANK[me.role] >= RANK[role];
}

function allowed([, , role, restrictedOk]) {
  return can(role) && (restrictedOk || !me.project);
}

export function flash(message, kind = 'ok') {
  const area = document.getElementById('flash');
  replace(area, h('div', { class: `msg ${kind}`, role: kind === 'error' ? 'alert' : null }, message));
}

export function clearFlash() {
  replace(document.getElementById('flash'));
}

// Report a failed action: the API's message as text, with its code.
export function fail(error) {
  // A refused token has already brought the sign-in form back, saying why.
  if (error && error.status === 401) return;
  const code = error && error.code ? ` (${error.code})` : '';
  flash(`${error && error.message ? error.message : String(error)}${code}`, 'error');
}

function route() {
  const hash = window.location.hash.replace(/^#\/?/, '');
  const [path, queryText] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(queryText || '') };
}

function drawNav(current) {
  const nav = document.getElementById('nav');
  replace(
    nav,
    me
      ? PAGES.filter(allowed).map(([id, title]) =>
          h('a', { href: `#/${id}`, 'aria-current': id === current ? 'page' : null, id: `nav-${id}` }, title),
        )
      : null,
  );
  const who = document.getElementById('who');
  replace(
    who,
    me
      ? [
          h('span', { id: 'whoami' }, `${me.name} · ${me.role}${me.project ? ` · project ${me.project}` : ''}`),
          h('button', { type: 'button', class: 'secondary', id: 'sign-out', onclick: signOut }, 'Sign out'),
        ]
      : null,
  );
}

function signOut() {
  session.clear();
  me = null;
  window.location.hash = '#/';
  render();
}

function signInPage(main, reason) {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const form = h(
    'form',
    { class: 'signin panel', id: 'signin' },
    h('h1', {}, 'Sign in'),
    reason ? h('p', { class: 'muted' }, reason) : null,
    field('API token', input, 'The admin token `airlock serve` printed at its first start, or one from `airlock token create`. It stays in this tab only (session storage) and is sent as a bearer token.'),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    session.set(input.value.trim());
    input.value = '';
    await render();
  });
  replace(main, form);
  input.focus();
}

async function render() {
  const main = document.getElementById('main');
  const { parts, params } = route();
  if (!session.token()) {
    me = null;
    drawNav(null);
    signInPage(main);
    return;
  }
  if (!me) {
    try {
      me = await api('GET', '/me');
    } catch (error) {
      session.clear();
      me = null;
      drawNav(null);
      signInPage(main, `That token was refused: ${error.message}`);
      return;
    }
  }
  const visible = PAGES.filter(allowed);
  const page = visible.find(([id]) => id === parts[0]) || visible[0];
  drawNav(page ? page[0] : null);
  if (!page) {
    replace(main, h('p', {}, 'This token may not use any console page.'));
    return;
  }
  replace(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    await page[4].render(main, { me, parts: parts.slice(1), params, can, flash, fail, clearFlash });
  } catch (error) {
    // A refused token has already brought the sign-in form back.
    if (error.status === 401) return;
    replace(main, h('h1', {}, page[1]));
    fail(error);
  }
}

setUnauthorizedHandler((message) => {
  session.clear();
  me = null;
  drawNav(null);
  signInPage(document.getElementById('main'), `Signed out: ${message}`);
});

window.addEventListener('hashchange', () => {
  clearFlash();
  render();
});
document.addEventListener('DOMContentLoaded', render);
