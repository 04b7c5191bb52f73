// Plugins: what is installed, uploads waiting for approval with exactly
// what they will reach and what changed, approve by hash, remove.

import { api, enc } from './api.js';
import { h, kv, table, replace, confirmInline, paged, shortHash, when } from './dom.js';

export async function render(main, ctx) {
  if (ctx.parts[0]) return detail(main, ctx, ctx.parts[0]);
  const [installed, pending] = await Promise.all([api('GET', '/plugins'), api('GET', '/plugins/pending').catch(() => [])]);
  replace(
    main,
    h('h1', {}, 'Plugins'),
    ctx.can('admin') ? uploadPanel(ctx) : null,
    pending.length
      ? [
          h('h2', {}, 'Waiting for approval'),
          table(
            ['Plugin', 'Version', 'SHA-256', ''],
            pending.map((p) =>
              h('tr', {}, h('td', {}, h('a', { href: `#/plugins/${enc(p.id)}` }, p.manifest ? p.manifest.name : p.id)), h('td', {}, p.version), h('td', { class: 'mono' }, shortHash(p.sha256)), h('td', {}, h('a', { href: `#/plugins/${enc(p.id)}` }, 'Review'))),
            ),
          ),
        ]
      : null,
    h('h2', {}, 'Installed'),
    paged(
      installed,
      25,
      (rows) =>
        rows.map((p) =>
          h(
            'tr',
            { 'data-plugin': p.id },
            h('td', {}, h('a', { href: `#/plugins/${enc(p.id)}` }, p.manifest.name)),
            h('td', { class: 'mono' }, p.id),
            h('td', {}, p.version),
            h('td', { class: 'wide-only' }, p.manifest.category),
            h('td', { class: 'mono wide-only' }, shortHash(p.sha256)),
            h('td', { class: 'wide-only' }, when(p.updated_at)),
          ),
        ),
      ['Name', 'Id', 'Version', ['Category', 'wide-only'], ['SHA-256', 'wide-only'], ['Updated', 'wide-only']],
      { empty: 'No plugin is installed.' },
    ),
  );
}

function uploadPanel(ctx) {
  const file = h('input', { type: 'file', id: 'upload-file', name: 'plugin', accept: '.wasm,application/wasm', required: true });
  const button = h('button', { type: 'submit', id: 'upload' }, 'Upload');
  const form = h(
    'form',
    { class: 'panel', id: 'upload-form' },
    h('h2', {}, 'Upload a plugin'),
    h('div', { class: 'field' }, h('label', { for: 'upload-file' }, 'Plugin file (.wasm)'), file, h('div', { class: 'hint' }, 'It is checked and compiled, then waits here for your approval; nothing runs before that.')),
    h('div', { class: 'actions' }, button),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    button.disabled = true;
    try {
      const bytes = await file.files[0].arrayBuffer();
      const plan = await api('POST', '/plugins', { body: bytes, contentType: 'application/wasm' });
      if (plan.status === 'unchanged') ctx.flash(`${plan.id} ${plan.version} is installed already with this exact file.`);
      else ctx.flash(`Uploaded ${plan.id} ${plan.version}: review what it asks for and approve it.`);
      window.location.hash = `#/plugins/${enc(plan.id)}`;
    } catch (error) {
      ctx.fail(error);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

async function detail(main, ctx, id) {
  const view = await api('GET', `/plugins/${enc(id)}`);
  const { installed, pending } = view;
  const name = (pending && pending.manifest && pending.manifest.name) || (installed && installed.manifest.name) || id;
  const body = h('div', {});
  replace(main, h('p', {}, h('a', { href: '#/plugins' }, '← Plugins')), h('h1', { id: 'plugin-title' }, name), body);
  if (pending) body.appendChild(pendingPanel(ctx, pending, installed));
  if (installed) body.appendChild(installedPanel(ctx, installed));
}

function pendingPanel(ctx, plan, installed) {
  const approve = h('button', { type: 'button', id: 'approve' }, `Approve ${shortHash(plan.sha256)}`);
  approve.addEventListener('click', async () => {
    approve.disabled = true;
    try {
      await api('POST', `/plugins/${enc(plan.id)}/approve`, { json: { sha256: plan.sha256 } });
      ctx.flash(`Installed ${plan.id} ${plan.version}.`);
      window.location.hash = `#/plugins/${enc(plan.id)}?approved=1`;
    } catch (error) {
      ctx.fail(error);
      approve.disabled = false;
    }
  });
  return h(
    'section',
    { class: 'panel', id: 'pending' },
    h('h2', {}, installed ? 'Upgrade waiting for approval' : 'Waiting for approval'),
    // An upgrade leads with what changes; a new plugin with what it is.
    installed ? [h('h3', {}, 'What changes from the installed version'), diffView(plan)] : null,
    plan.manifest ? manifestView(plan.manifest, plan.grant, plan.interfaces, plan.sha256) : kv([['Id', plan.id], ['Version', plan.version], ['SHA-256', plan.sha256]]),
    installed ? null : [h('h3', {}, 'What it adds'), diffView(plan)],
    ctx.can('admin') ? h('div', { class: 'actions' }, approve, h('span', { class: 'muted' }, 'Approves exactly this file, by its SHA-256.')) : null,
  );
}

function diffView(plan) {
  const items = plan.diff
    ? plan.diff.map((d) => h('li', { class: d.change, 'data-change': d.change }, d.change === 'added' ? '+ ' : d.change === 'removed' ? '− ' : '~ ', d.text))
    : plan.changes.map((c) => h('li', { class: c.startsWith('+') ? 'added' : c.startsWith('-') ? 'removed' : '' }, c));
  return h('ul', { class: 'diff', id: 'diff' }, items);
}

function installedPanel(ctx, p) {
  const section = h(
    'section',
    { class: 'panel', id: 'installed' },
    h('h2', {}, 'Installed'),
    manifestView(p.manifest, p.approved_grant, null, p.sha256),
    kv([['Installed', when(p.installed_at)], ['Updated', when(p.updated_at)]]),
  );
  if (ctx.can('admin')) {
    const remove = h('button', { type: 'button', class: 'danger', id: 'remove' }, 'Remove');
    remove.addEventListener('click', () =>
      confirmInline(section, `Remove plugin ${p.id}? Connections that use it must be deleted first.`, 'Remove plugin', async () => {
        try {
          await api('DELETE', `/plugins/${enc(p.id)}`);
          ctx.flash(`Removed ${p.id}.`);
          window.location.hash = '#/plugins';
        } catch (error) {
          ctx.fail(error);
        }
      }),
    );
    section.appendChild(h('div', { class: 'actions' }, remove));
  }
  return section;
}

// A manifest as the operator must read it: who it is, what it reaches,
// which destinations receive the credential, what it asks to be told.
export function manifestView(m, grant, interfaces, sha256) {
  const auth = m.auth || { kinds: [] };
  return h(
    'div',
    { class: 'manifest' },
    kv([
      ['Name', h('span', { class: 'plugin-name' }, m.name)],
      ['Description', h('span', { class: 'plugin-description' }, m.description || '—')],
      ['Id', h('code', {}, m.id)],
      ['Version', m.version],
      ['Category', m.category],
      interfaces ? ['Exports', interfaces.join(', ')] : null,
      ['SHA-256', h('code', { class: 'sha' }, sha256)],
      ['Auth kinds', auth.kinds.length ? auth.kinds.join(', ') : 'none'],
      auth.oauth2 ? ['OAuth2', `authorize ${auth.oauth2['authorize-url']} · token ${auth.oauth2['token-url']} · scopes ${(auth.oauth2.scopes || []).join(' ') || '—'}`] : null,
      auth['api-key'] ? ['API key', `header from setting ${auth['api-key']['header-setting']}${auth['api-key']['prefix-setting'] ? `, prefix from ${auth['api-key']['prefix-setting']}` : ''}`] : null,
    ]),
    h('h3', {}, 'What it may reach'),
    h('p', { class: 'muted' }, "Besides each connection's own base-url origin, which receives the connection's credential:"),
    table(
      ['Destination', 'Methods', 'Receives the credential', 'Why'],
      (grant || []).map((e) =>
        h('tr', { class: 'grant' }, h('td', { class: 'mono' }, e.url), h('td', {}, e.methods && e.methods.length ? e.methods.join(', ') : 'any'), h('td', {}, e.credential && e.credential.length ? e.credential.join(', ') : 'no'), h('td', {}, e.reason)),
      ),
      { empty: 'Nothing else.' },
    ),
    h('h3', {}, 'Settings'),
    table(
      ['Setting', 'Type', 'Required', 'Default', 'Description'],
      (m.settings || []).map((s) =>
        h('tr', {}, h('td', { class: 'mono' }, s.name), h('td', {}, s.type === 'enum' ? `enum: ${s.values.join(', ')}` : s.type), h('td', {}, s.required ? 'yes' : 'no'), h('td', {}, s.default ?? '—'), h('td', {}, s.description)),
      ),
      { empty: 'None.' },
    ),
  );
}
