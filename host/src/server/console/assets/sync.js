// Sync: run a full or delta sync of a connection, its runs with their
// status, and the records it stored, a page at a time.

import { api, enc } from './api.js';
import { h, field, replace, table, badge, when } from './dom.js';
import { connectionPicker } from './operations.js';

const PAGE = 50;

function titleOf(data) {
  try {
    const doc = JSON.parse(data);
    for (const key of ['title', 'name', 'short_description', 'summary', 'subject', 'System.Title']) {
      if (typeof doc[key] === 'string') return doc[key];
      if (doc.fields && typeof doc.fields[key] === 'string') return doc.fields[key];
    }
  } catch (_) {
    // not JSON: shown raw in the detail
  }
  return '';
}

export async function render(main, ctx) {
  const body = h('div', {});
  const picker = await connectionPicker(ctx, (id) => load(id));
  replace(main, h('h1', {}, 'Sync'), picker.node, body);

  async function load(id) {
    replace(body);
    if (!id) return;
    const runsBox = h('div', { id: 'runs' });
    const recordsBox = h('div', { id: 'records' });
    const detailBox = h('div', { id: 'record-detail' });
    const pageSize = h('input', { type: 'number', name: 'page_size', min: '1', step: '1', autocomplete: 'off' });
    const run = (full) => {
      const b = h('button', { type: 'button', id: full ? 'sync-full' : 'sync-delta', class: full ? 'secondary' : null }, full ? 'Run a full sync' : 'Run a delta sync');
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          const r = await api('POST', `/connections/${enc(id)}/sync`, { query: { full: full ? 'true' : null, page_size: pageSize.value.trim() } });
          ctx.flash(`Sync ${r.status}: ${r.records} records in ${r.pages} pages.${r.error ? ` ${r.error}` : ''}`, r.status === 'failed' ? 'error' : 'ok');
          await Promise.all([drawRuns(), drawRecords(0)]);
        } catch (error) {
          ctx.fail(error);
        } finally {
          b.disabled = false;
        }
      });
      return b;
    };
    async function drawRuns() {
      const runs = await api('GET', `/connections/${enc(id)}/sync/runs`, { query: { limit: 20 } });
      replace(
        runsBox,
        h('h2', {}, 'Runs'),
        table(
          ['Started', 'Kind', 'Status', 'Pages', 'Records', 'Error'],
          runs.map((r) => h('tr', { class: `run ${r.status}` }, h('td', {}, when(r.started_at)), h('td', {}, r.full ? 'full' : 'delta'), h('td', {}, badge(r.status)), h('td', {}, String(r.pages)), h('td', {}, String(r.records)), h('td', {}, r.error || ''))),
          { empty: 'No run yet.' },
        ),
      );
    }
    async function drawRecords(offset) {
      const rows = await api('GET', `/connections/${enc(id)}/sync/records`, { query: { limit: PAGE, offset } });
      replace(
        recordsBox,
        h('h2', {}, 'Records'),
        table(
          ['Kind', 'Id', 'Title', ['Updated', 'wide-only']],
          rows.map((r) =>
            h(
              'tr',
              { class: 'clickable record', tabindex: '0', onclick: () => show(r), onkeydown: (e) => { if (e.key === 'Enter') show(r); } },
              h('td', {}, r.kind),
              h('td', { class: 'mono' }, r.record_id),
              h('td', { class: 'record-title' }, titleOf(r.data)),
              h('td', { class: 'wide-only' }, when(r.updated_at)),
            ),
          ),
          { empty: 'No record stored.' },
        ),
        h(
          'div',
          { class: 'pager' },
          h('button', { type: 'button', class: 'secondary', disabled: offset === 0, onclick: () => drawRecords(Math.max(0, offset - PAGE)) }, 'Previous'),
          h('span', {}, rows.length ? `Records ${offset + 1}–${offset + rows.length}` : ''),
          h('button', { type: 'button', class: 'secondary', id: 'records-next', disabled: rows.length < PAGE, onclick: () => drawRecords(offset + PAGE) }, 'Next'),
        ),
      );
    }
    function show(r) {
      let pretty = r.data;
      try {
        pretty = JSON.stringify(JSON.parse(r.data), null, 2);
      } catch (_) {
        // shown as stored
      }
      replace(detailBox, h('h3', {}, `${r.kind} ${r.record_id}`), h('pre', {}, pretty));
      detailBox.scrollIntoView({ block: 'nearest' });
    }
    replace(body, field('Records per page asked of the plugin (optional)', pageSize, "Empty: the plugin's default."), h('div', { class: 'actions' }, run(false), run(true)), runsBox, recordsBox, detailBox);
    try {
      await Promise.all([drawRuns(), drawRecords(0)]);
    } catch (error) {
      ctx.fail(error);
    }
  }
  await load(picker.initial);
}
