// Connections: list with status and scope, create from the plugin's
// settings schema and auth kinds, test, pause, resume, replace the
// secret, OAuth connect, delete. No secret is ever shown: credential
// inputs are write-only and the API never answers one.

import { api, enc } from './api.js';
import { h, field, kv, replace, select, badge, confirmInline, paged, when } from './dom.js';
import { settingsForm, credentialForm } from './forms.js';

export function scopeText(scope) {
  if (scope === 'global' || !scope) return 'global';
  if (scope.projects) return `projects: ${scope.projects.join(', ')}`;
  return JSON.stringify(scope);
}

export async function render(main, ctx) {
  if (ctx.parts[0] === 'new') return create(main, ctx);
  if (ctx.parts[0]) return detail(main, ctx, ctx.parts[0]);
  const list = await api('GET', '/connections');
  replace(
    main,
    h('h1', {}, 'Connections'),
    h('div', { class: 'actions' }, h('a', { href: '#/connections/new', id: 'new-connection' }, 'New connection')),
    paged(
      list,
      20,
      (rows) =>
        rows.map((c) =>
          h(
            'tr',
            { 'data-connection': c.name },
            h('td', {}, h('a', { href: `#/connections/${enc(c.id)}` }, c.name)),
            h('td', { class: 'mono' }, c.plugin_id),
            h('td', {}, badge(c.status)),
            h('td', {}, scopeText(c.scope)),
            h('td', { class: 'wide-only' }, c.auth_kind),
            h('td', { class: 'wide-only' }, when(c.created_at)),
          ),
        ),
      ['Name', 'Plugin', 'Status', 'Scope', ['Auth', 'wide-only'], ['Created', 'wide-only']],
      { empty: 'No connection yet.' },
    ),
  );
}

async function create(main, ctx) {
  const plugins = ctx.me.project ? [] : await api('GET', '/plugins');
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' });
  const pluginSelect = select('plugin', [['', 'Choose a plugin'], ...plugins.map((p) => [p.id, `${p.manifest.name} (${p.id})`])], ctx.params.get('plugin') || '');
  const pluginText = h('input', { type: 'text', name: 'plugin', autocomplete: 'off' });
  const projects = h('input', { type: 'text', name: 'projects', autocomplete: 'off' });
  const test = h('input', { type: 'checkbox', name: 'test', checked: true });
  const settingsBox = h('fieldset', { id: 'settings' }, h('legend', {}, 'Settings'));
  const authBox = h('fieldset', { id: 'auth' }, h('legend', {}, 'Credential'));
  let settings = settingsForm([]);
  let credential = credentialForm('none');
  let kindSelect = null;

  const drawCredential = () => {
    credential = credentialForm(kindSelect.value);
    replace(authBox, h('legend', {}, 'Credential'), field('Auth kind', kindSelect), credential.nodes);
  };
  const drawPlugin = () => {
    const plugin = plugins.find((p) => p.id === pluginSelect.value);
    const manifest = plugin ? plugin.manifest : { settings: [], auth: { kinds: [] } };
    settings = settingsForm(manifest.settings);
    replace(settingsBox, h('legend', {}, 'Settings'), settings.nodes.length ? settings.nodes : h('p', { class: 'muted' }, 'This plugin has no settings.'));
    const kinds = manifest.auth.kinds.length ? manifest.auth.kinds : ['none'];
    kindSelect = select('auth-kind', kinds.map((k) => [k, k]), kinds[0]);
    kindSelect.addEventListener('change', drawCredential);
    drawCredential();
  };
  pluginSelect.addEventListener('change', drawPlugin);
  drawPlugin();

  const submit = h('button', { type: 'submit', id: 'create-connection' }, 'Create');
  const form = h(
    'form',
    { id: 'connection-form' },
    field('Name', name, 'Unique; how calls and the CLI refer to it.'),
    plugins.length ? field('Plugin', pluginSelect) : field('Plugin id', pluginText),
    settingsBox,
    authBox,
    field('Projects', projects, 'Comma-separated projects it serves; empty: every project (global).'),
    field('Test the credential before saving (not for oauth2)', test),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const auth = credential.read();
      const body = {
        name: name.value.trim(),
        plugin: plugins.length ? pluginSelect.value : pluginText.value.trim(),
        settings: settings.read(),
        auth,
        test: test.checked && auth.kind !== 'oauth2',
      };
      const list = projects.value.split(',').map((p) => p.trim()).filter(Boolean);
      if (list.length) body.projects = list;
      const created = await api('POST', '/connections', { json: body });
      credential.wipe();
      ctx.flash(`Created connection ${created.name}${body.test ? ' (its connection test passed)' : ''}.`);
      window.location.hash = `#/connections/${enc(created.id)}`;
    } catch (error) {
      ctx.fail(error);
    } finally {
      submit.disabled = false;
    }
  });
  replace(main, h('p', {}, h('a', { href: '#/connections' }, '← Connections')), h('h1', {}, 'New connection'), form);
}

async function detail(main, ctx, id) {
  const c = await api('GET', `/connections/${enc(id)}`);
  const report = h('div', { id: 'test-report' });
  const section = h('section', { class: 'panel' });
  const button = (label, idAttr, action, cls) => {
    const b = h('button', { type: 'button', id: idAttr, class: cls }, label);
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await action();
      } catch (error) {
        ctx.fail(error);
      } finally {
        b.disabled = false;
      }
    });
    return b;
  };
  const reload = () => detail(main, ctx, c.id);
  const actions = h(
    'div',
    { class: 'actions' },
    button('Test', 'test-connection', async () => {
      const r = await api('POST', `/connections/${enc(c.id)}/test`);
      replace(report, h('div', { class: 'panel' }, h('h3', {}, 'Connection test passed'), kv([['Account', r.account || '—'], ['Report', r.message]])));
    }),
    c.status === 'paused'
      ? button('Resume', 'resume', async () => {
          await api('POST', `/connections/${enc(c.id)}/resume`);
          ctx.flash(`Resumed ${c.name}.`);
          await reload();
        }, 'secondary')
      : button('Pause', 'pause', async () => {
          await api('POST', `/connections/${enc(c.id)}/pause`);
          ctx.flash(`Paused ${c.name}: calls are refused until you resume it.`);
          await reload();
        }, 'secondary'),
    c.auth_kind === 'oauth2'
      ? button('Connect with the provider', 'oauth-connect', async () => {
          const started = await api('POST', `/connections/${enc(c.id)}/oauth/start`);
          // Same tab: the provider sends the browser back to this server's
          // callback page, which links back here (the token stays in this
          // tab's session storage).
          window.location.assign(started.authorization_url);
        })
      : null,
    button('Edit settings', 'edit-settings', async () => settingsEditor(section, ctx, c), 'secondary'),
    c.auth_kind !== 'none' ? button('Replace the secret', 'replace-secret', async () => secretForm(section, ctx, c), 'secondary') : null,
    button('Delete', 'delete', async () =>
      confirmInline(section, `Delete connection ${c.name}? Its credential, cursors, records and conversations are destroyed.`, 'Delete connection', async () => {
        try {
          await api('DELETE', `/connections/${enc(c.id)}`);
          ctx.flash(`Deleted ${c.name}.`);
          window.location.hash = '#/connections';
        } catch (error) {
          ctx.fail(error);
        }
      }), 'danger'),
  );
  replace(
    section,
    kv([
      ['Id', h('code', {}, c.id)],
      ['Plugin', h('a', { href: `#/plugins/${enc(c.plugin_id)}` }, c.plugin_id)],
      ['Status', badge(c.status)],
      ['Scope', scopeText(c.scope)],
      ['Auth', c.auth_kind],
      ['Created', when(c.created_at)],
      ['Updated', when(c.updated_at)],
    ]),
    h('h3', {}, 'Settings'),
    kv(Object.entries(c.settings).map(([k, v]) => [k, h('span', { class: 'mono' }, v)])),
    actions,
    report,
  );
  replace(
    main,
    h('p', {}, h('a', { href: '#/connections' }, '← Connections')),
    h('h1', { id: 'connection-title' }, c.name),
    section,
    h(
      'div',
      { class: 'actions' },
      h('a', { href: `#/operations?connection=${enc(c.id)}` }, 'Run an operation'),
      h('a', { href: `#/chat?connection=${enc(c.id)}` }, 'Chat'),
      h('a', { href: `#/sync?connection=${enc(c.id)}` }, 'Sync'),
      h('a', { href: `#/audit?connection=${enc(c.id)}` }, 'Audit log'),
    ),
  );
}

function secretForm(section, ctx, c) {
  const existing = section.querySelector('#secret-form');
  if (existing) existing.remove();
  const credential = credentialForm(c.auth_kind);
  const submit = h('button', { type: 'submit' }, 'Replace');
  const form = h('form', { id: 'secret-form', class: 'panel' }, h('h3', {}, `New ${c.auth_kind} credential`), credential.nodes, h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      await api('PUT', `/connections/${enc(c.id)}/secret`, { json: credential.read() });
      credential.wipe();
      form.remove();
      ctx.flash(`Replaced the credential of ${c.name}; the old one is destroyed.`);
    } catch (error) {
      ctx.fail(error);
    } finally {
      submit.disabled = false;
    }
  });
  section.appendChild(form);
  const first = form.querySelector('input');
  if (first) first.focus();
}

// The plugin's settings schema when the token may read it (unrestricted),
// else the connection's current settings as free text.
async function settingSpecs(ctx, c) {
  if (!ctx.me.project) {
    try {
      const view = await api('GET', `/plugins/${enc(c.plugin_id)}`);
      if (view.installed) return view.installed.manifest.settings;
    } catch (_) {
      // fall back below
    }
  }
  return Object.keys(c.settings).map((name) => ({ name, type: 'string', required: false, description: '', values: [] }));
}

async function settingsEditor(section, ctx, c) {
  const existing = section.querySelector('#settings-form');
  if (existing) existing.remove();
  const specs = await settingSpecs(ctx, c);
  const form = settingsForm(specs, c.settings);
  const submit = h('button', { type: 'submit' }, 'Save settings');
  const el = h(
    'form',
    { id: 'settings-form', class: 'panel' },
    h('h3', {}, 'Settings'),
    h('p', { class: 'muted' }, "Empty removes a setting (its default applies). A connection with a credential keeps its base-url's origin."),
    form.nodes,
    h('div', { class: 'actions' }, submit),
  );
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const wanted = form.read();
      const change = {};
      for (const { name } of specs) {
        if (wanted[name] !== undefined && wanted[name] !== c.settings[name]) change[name] = wanted[name];
        if (wanted[name] === undefined && c.settings[name] !== undefined) change[name] = null;
      }
      if (!Object.keys(change).length) {
        ctx.flash('Nothing changed.');
        return;
      }
      await api('PATCH', `/connections/${enc(c.id)}`, { json: { settings: change } });
      ctx.flash(`Saved the settings of ${c.name}.`);
      await detail(document.getElementById('main'), ctx, c.id);
    } catch (error) {
      ctx.fail(error);
    } finally {
      submit.disabled = false;
    }
  });
  section.appendChild(el);
  const first = el.querySelector('input, select, textarea');
  if (first) first.focus();
}
