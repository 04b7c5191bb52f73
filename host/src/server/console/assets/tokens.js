// Tokens (admin): create one (its value is shown once, here, and never
// again), list them, revoke one.

import { api, enc } from './api.js';
import { h, field, replace, select, paged, confirmInline, when } from './dom.js';

export async function render(main, ctx) {
  const list = await api('GET', '/tokens');
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' });
  const role = select('role', [['user', 'user: run operations and chat'], ['operator', 'operator: manage connections, sync, audit'], ['admin', 'admin: everything, plugins and tokens too']], 'user');
  const project = h('input', { type: 'text', name: 'project', autocomplete: 'off' });
  const shown = h('div', { id: 'new-token' });
  const submit = h('button', { type: 'submit', id: 'create-token' }, 'Create token');
  const form = h(
    'form',
    { class: 'panel', id: 'token-form' },
    h('h2', {}, 'New token'),
    field('Name', name),
    field('Role', role),
    field('Project', project, 'Restrict the token to one project; empty: every project.'),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const body = { name: name.value.trim(), role: role.value };
      if (project.value.trim()) body.project = project.value.trim();
      const created = await api('POST', '/tokens', { json: body });
      const value = created.token;
      name.value = '';
      project.value = '';
      await render(main, ctx);
      replace(
        main.querySelector('#new-token'),
        h('div', { class: 'secret-once', role: 'alert' }, h('p', {}, `Token ${body.name} created. Copy it now: it is shown only once and cannot be read back.`), h('code', { id: 'token-value' }, value)),
      );
    } catch (error) {
      ctx.fail(error);
    } finally {
      submit.disabled = false;
    }
  });
  const row = (t) => {
    const revoked = Boolean(t.revoked_at || t.revoked);
    const tr = h(
      'tr',
      { 'data-token': t.name },
      h('td', {}, t.name),
      h('td', {}, t.role),
      h('td', {}, t.project || 'every project'),
      h('td', { class: 'wide-only' }, when(t.created_at)),
      h('td', {}, revoked ? `revoked ${when(t.revoked_at)}` : t.id === ctx.me.id ? 'live (signed in)' : 'live'),
      h('td', {}),
    );
    // The token signed in cannot revoke itself (the server refuses it too).
    if (!revoked && t.id !== ctx.me.id) {
      const b = h('button', { type: 'button', class: 'danger', 'data-revoke': t.name }, 'Revoke');
      b.addEventListener('click', () =>
        confirmInline(main.querySelector('#tokens-list'), `Revoke token ${t.name}? Requests with it are refused from now on.`, 'Revoke', async () => {
          try {
            await api('DELETE', `/tokens/${enc(t.id)}`);
            ctx.flash(`Revoked ${t.name}.`);
            await render(main, ctx);
          } catch (error) {
            ctx.fail(error);
          }
        }),
      );
      tr.lastChild.appendChild(b);
    }
    return tr;
  };
  replace(
    main,
    h('h1', {}, 'Tokens'),
    shown,
    form,
    h('section', { id: 'tokens-list' }, h('h2', {}, 'Tokens'), paged(list, 25, (rows) => rows.map(row), ['Name', 'Role', 'Project', ['Created', 'wide-only'], 'State', ''])),
  );
}
