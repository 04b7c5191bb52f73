// Operations: run any operation a connection's plugin exports, with a form
// generated from the operation's input schema, and show the JSON answer.

import { api, enc } from './api.js';
import { h, field, replace, select } from './dom.js';
import { schemaForm } from './forms.js';

// A connection picker: a list for tokens that may list connections, a
// name box for those that may only use them.
export async function connectionPicker(ctx, onPick, filter = () => true) {
  const current = ctx.params.get('connection') || '';
  if (ctx.can('operator')) {
    const list = (await api('GET', '/connections')).filter(filter);
    const el = select('connection', [['', 'Choose a connection'], ...list.map((c) => [c.id, `${c.name} (${c.plugin_id})`])], current);
    el.id = 'connection-pick';
    el.addEventListener('change', () => onPick(el.value));
    return { node: field('Connection', el), initial: current && list.some((c) => c.id === current) ? current : '' };
  }
  const el = h('input', { type: 'text', name: 'connection', id: 'connection-pick', value: current, autocomplete: 'off' });
  el.addEventListener('change', () => onPick(el.value.trim()));
  return { node: field('Connection name or id', el), initial: current };
}

function opName(op) {
  const [iface, name] = op.operation.includes('.') ? op.operation.split('.') : [op.interface, op.operation];
  return { iface: op.interface || iface, name };
}

export async function render(main, ctx) {
  const body = h('div', {});
  const picker = await connectionPicker(ctx, (id) => load(id));
  replace(main, h('h1', {}, 'Operations'), picker.node, body);

  async function load(id) {
    replace(body);
    if (!id) return;
    let ops;
    try {
      ops = await api('GET', `/connections/${enc(id)}/operations`);
    } catch (error) {
      ctx.fail(error);
      return;
    }
    const keyed = ops.map((op) => ({ op, ...opName(op) }));
    const wanted = ctx.params.get('operation') || '';
    const opSelect = select('operation', keyed.map((k) => [`${k.iface}.${k.name}`, `${k.iface}.${k.name}`]), keyed.some((k) => `${k.iface}.${k.name}` === wanted) ? wanted : undefined);
    opSelect.id = 'operation-pick';
    const formBox = h('div', {});
    const result = h('div', { id: 'result' });
    const project = h('input', { type: 'text', name: 'project', autocomplete: 'off', value: ctx.me.project || '' });
    const draw = () => {
      const k = keyed.find((x) => `${x.iface}.${x.name}` === opSelect.value);
      replace(result);
      if (!k) return;
      const form = schemaForm(k.op.input, k.op.example);
      const run = h('button', { type: 'submit', id: 'run' }, 'Run');
      const el = h('form', { id: 'operation-form' }, form.node, ctx.me.project ? null : field('Project (optional)', project), h('div', { class: 'actions' }, run));
      el.addEventListener('submit', async (event) => {
        event.preventDefault();
        run.disabled = true;
        replace(result, h('p', { class: 'muted' }, 'Running…'));
        try {
          const input = form.read();
          const answer = await api('POST', `/connections/${enc(id)}/invoke/${enc(k.iface)}/${enc(k.name)}`, { json: input, query: { project: ctx.me.project ? null : project.value.trim() } });
          replace(result, h('h2', {}, 'Answer'), h('pre', { id: 'result-json' }, JSON.stringify(answer, null, 2)));
          ctx.clearFlash();
        } catch (error) {
          replace(result);
          ctx.fail(error);
        } finally {
          run.disabled = false;
        }
      });
      replace(formBox, el);
    };
    opSelect.addEventListener('change', draw);
    replace(body, keyed.length ? [field('Operation', opSelect), formBox, result] : h('p', {}, 'This plugin exports no operation.'));
    draw();
  }
  await load(picker.initial);
}
