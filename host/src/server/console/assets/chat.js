// Chat: a conversation with an AI provider connection. The answer streams
// in as the provider sends it (server-sent events over fetch); what the
// host redacted before sending is shown under each answer.

import { api, apiEvents, enc } from './api.js';
import { h, field, replace, confirmInline, when } from './dom.js';
import { connectionPicker } from './operations.js';

function bubble(role, text) {
  return h('div', { class: `bubble ${role}`, 'data-role': role }, text);
}

function redactionText(redacted) {
  const entries = Object.entries(redacted || {}).filter(([, n]) => n > 0);
  if (!entries.length) return 'Nothing was redacted from what was sent.';
  return `Redacted before sending: ${entries.map(([kind, n]) => `${kind} ${n}`).join(', ')}.`;
}

export async function render(main, ctx) {
  const side = h('aside', { id: 'conversations' });
  const pane = h('section', { id: 'chat-pane' });
  const picker = await connectionPicker(ctx, (id) => open(id, null));
  replace(main, h('h1', {}, 'Chat'), picker.node, h('div', { class: 'cols' }, side, pane));
  let connection = '';

  async function drawList() {
    if (!connection) return replace(side);
    let list = [];
    try {
      list = await api('GET', '/conversations', { query: { connection, limit: 100 } });
    } catch (error) {
      ctx.fail(error);
    }
    replace(
      side,
      h('h2', {}, 'Conversations'),
      h('button', { type: 'button', class: 'secondary', id: 'new-conversation', onclick: () => open(connection, null) }, 'New conversation'),
      h(
        'ul',
        { class: 'list-plain' },
        list.map((c) => h('li', { 'data-conversation': c.id }, h('a', { href: `#/chat?connection=${enc(connection)}&conversation=${enc(c.id)}`, onclick: (e) => { e.preventDefault(); open(connection, c.id); } }, c.title || '(untitled)'), h('div', { class: 'muted' }, when(c.updated_at)))),
      ),
    );
  }

  async function open(connectionId, conversationId) {
    connection = connectionId;
    replace(pane);
    if (!connection) return replace(side);
    await drawList();
    const log = h('div', { class: 'chat-log', id: 'chat-log', 'aria-live': 'polite' });
    const info = h('p', { class: 'muted', id: 'chat-info' });
    let conversation = conversationId;
    const header = h('div', { class: 'actions' });
    const drawHeader = () => {
      replace(header);
      if (!conversation) return;
      const del = h('button', { type: 'button', class: 'danger', id: 'delete-conversation' }, 'Delete conversation');
      del.addEventListener('click', () =>
        confirmInline(pane, 'Delete this conversation and what the plugin kept for it?', 'Delete', async () => {
          try {
            await api('DELETE', `/conversations/${enc(conversation)}`);
            ctx.flash('Conversation deleted.');
            await open(connection, null);
          } catch (error) {
            ctx.fail(error);
          }
        }),
      );
      header.appendChild(del);
    };
    if (conversation) {
      try {
        const stored = await api('GET', `/conversations/${enc(conversation)}`);
        for (const m of stored.messages) log.appendChild(bubble(m.role, m.content));
      } catch (error) {
        ctx.fail(error);
      }
    }
    drawHeader();
    const message = h('textarea', { name: 'message', id: 'chat-message', required: true });
    const send = h('button', { type: 'submit', id: 'chat-send' }, 'Send');
    const form = h('form', { id: 'chat-form' }, field('Message', message, 'Ctrl+Enter sends.'), h('div', { class: 'actions' }, send));
    message.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) form.requestSubmit();
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const text = message.value;
      if (!text.trim()) return;
      send.disabled = true;
      message.value = '';
      log.appendChild(bubble('user', text));
      const answer = bubble('assistant', '');
      answer.id = 'chat-streaming';
      log.appendChild(answer);
      replace(info, 'Waiting for the provider…');
      const body = { message: text, stream: true };
      if (conversation) body.conversation = conversation;
      try {
        await apiEvents(`/connections/${enc(connection)}/chat`, body, (name, data) => {
          if (name === 'delta') {
            if (!answer.dataset.deltas) replace(info, 'Receiving…');
            answer.appendChild(document.createTextNode(data.content));
            answer.dataset.deltas = String(Number(answer.dataset.deltas || 0) + 1);
          } else if (name === 'done') {
            answer.removeAttribute('id');
            answer.dataset.done = 'true';
            conversation = data.conversation_id;
            replace(info, `${data.model ? `Model ${data.model}. ` : ''}${redactionText(data.redacted)}`);
          } else if (name === 'error') {
            answer.remove();
            replace(info);
            ctx.fail(data.error || data);
          }
        });
        drawHeader();
        await drawList();
      } catch (error) {
        answer.remove();
        replace(info);
        ctx.fail(error);
      } finally {
        send.disabled = false;
        message.focus();
      }
    });
    replace(pane, header, log, info, form);
  }

  await open(picker.initial, ctx.params.get('conversation'));
}
