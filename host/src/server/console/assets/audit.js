// Audit: the recorded outbound requests, filtered by connection, plugin,
// project, decision and time, newest first a page at a time; denied rows
// stand out; a row's detail; the hash chain's check and its head.

import { api } from './api.js';
import { h, field, kv, replace, select, table, badge, when } from './dom.js';

const PAGE = 50;

function isoOrNull(local) {
  if (!local) return null;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export async function render(main, ctx) {
  const connections = await api('GET', '/connections').catch(() => []);
  const names = new Map(connections.map((c) => [c.id, c.name]));
  const connection = select('connection', [['', 'any'], ...connections.map((c) => [c.id, c.name])], ctx.params.get('connection') || '');
  const plugin = h('input', { type: 'text', name: 'plugin', autocomplete: 'off', value: ctx.params.get('plugin') || '' });
  const project = h('input', { type: 'text', name: 'project', autocomplete: 'off', value: ctx.params.get('project') || '' });
  const decision = select('decision', [['', 'any'], ['allowed', 'allowed'], ['denied', 'denied']], ctx.params.get('decision') || '');
  const since = h('input', { type: 'datetime-local', name: 'since' });
  const until = h('input', { type: 'datetime-local', name: 'until' });
  const apply = h('button', { type: 'submit', id: 'audit-filter' }, 'Filter');
  const form = h(
    'form',
    { class: 'panel', id: 'audit-form' },
    field('Connection', connection),
    field('Plugin id', plugin),
    ctx.me.project ? null : field('Project', project),
    field('Decision', decision),
    field('Since (your local time)', since),
    field('Until (your local time)', until),
    h('div', { class: 'actions' }, apply),
  );
  const rowsBox = h('div', { id: 'audit-rows' });
  const detail = h('div', { id: 'audit-detail' });
  const verifyBox = h('div', { id: 'verify' });
  const verify = h('button', { type: 'button', class: 'secondary', id: 'verify-chain' }, 'Verify the chain');
  verify.addEventListener('click', async () => {
    verify.disabled = true;
    try {
      const v = await api('GET', '/audit/verify');
      replace(
        verifyBox,
        h(
          'div',
          { class: `panel ${v.ok ? 'verified' : 'broken'}`, id: 'verify-result' },
          h('h3', {}, v.ok ? 'The chain verifies' : 'The chain is broken'),
          kv([['Rows checked', String(v.rows)], ['Head sequence', v.last_seq ?? '—'], ['Head hash', h('code', { id: 'head-hash' }, v.last_hash)], ['Summary', v.summary]]),
          h('p', { class: 'muted' }, 'Keep the head outside this machine: `airlock audit verify --anchor` detects a log cut back to before it.'),
        ),
      );
    } catch (error) {
      ctx.fail(error);
    } finally {
      verify.disabled = false;
    }
  });

  // The `before` cursors of the pages shown so far, for Previous.
  let stack = [];
  async function draw(before) {
    const query = {
      connection: connection.value,
      plugin: plugin.value.trim(),
      project: ctx.me.project ? null : project.value.trim(),
      decision: decision.value,
      since: isoOrNull(since.value),
      until: isoOrNull(until.value),
      limit: PAGE,
      before,
    };
    let rows;
    try {
      rows = await api('GET', '/audit', { query });
    } catch (error) {
      ctx.fail(error);
      return;
    }
    replace(detail);
    replace(
      rowsBox,
      table(
        ['Time', 'Decision', 'Method', 'URL', ['Connection', 'wide-only'], ['Plugin', 'wide-only'], 'Status'],
        rows.map((r) => {
          const tr = h(
            'tr',
            { class: `clickable ${r.decision}`, tabindex: '0', 'data-seq': String(r.seq) },
            h('td', {}, when(r.time)),
            h('td', { class: 'decision' }, badge(r.decision)),
            h('td', {}, r.method),
            h('td', { class: 'mono' }, r.url),
            h('td', { class: 'wide-only' }, names.get(r.connection_id) || r.connection_id),
            h('td', { class: 'wide-only' }, r.plugin_id),
            h('td', {}, r.outcome && r.outcome.status ? String(r.outcome.status) : r.reason || ''),
          );
          const open = () => {
            for (const s of rowsBox.querySelectorAll('tr.selected')) s.classList.remove('selected');
            tr.classList.add('selected');
            showDetail(r);
          };
          tr.addEventListener('click', open);
          tr.addEventListener('keydown', (e) => {
            if (e.key === 'Enter') open();
          });
          return tr;
        }),
        { empty: 'No recorded request matches.' },
      ),
      h(
        'div',
        { class: 'pager' },
        h('button', { type: 'button', class: 'secondary', disabled: !stack.length, onclick: () => draw(stack.pop()) }, 'Newer'),
        h('button', {
          type: 'button',
          class: 'secondary',
          id: 'audit-older',
          disabled: rows.length < PAGE,
          onclick: () => {
            stack.push(before);
            draw(rows[rows.length - 1].seq);
          },
        }, 'Older'),
      ),
    );
  }

  function showDetail(r) {
    const outcome = r.outcome || {};
    replace(
      detail,
      h(
        'section',
        { class: 'panel', id: 'audit-row' },
        h('h3', {}, `Request ${r.seq}`),
        kv([
          ['Time', r.time],
          ['Decision', badge(r.decision)],
          ['Reason', r.reason || '—'],
          ['Method', r.method],
          ['URL', h('span', { class: 'mono' }, r.url)],
          ['Connection', `${names.get(r.connection_id) || ''} ${r.connection_id}`],
          ['Plugin', `${r.plugin_id} ${r.plugin_version}`],
          ['Project', r.project || '—'],
          ['Credential added', r.credential_used ? 'yes' : 'no'],
          ['Request body', `${r.request_bytes} bytes ${r.request_sha256 ? `sha256 ${r.request_sha256}` : ''}`],
          ['Outcome', r.outcome ? h('pre', {}, JSON.stringify(outcome, null, 2)) : 'not recorded (in flight, or the host stopped)'],
          ['Detail', r.detail ? h('pre', {}, r.detail) : '—'],
        ]),
      ),
    );
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    stack = [];
    draw(null);
  });
  replace(main, h('h1', {}, 'Audit'), form, ctx.me.project ? null : h('div', { class: 'actions' }, verify), verifyBox, rowsBox, detail);
  await draw(null);
}
