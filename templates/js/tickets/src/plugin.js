// {{name}}: an airlock tickets plugin in JavaScript. The host runs it in
// a sandbox, adds the connection's credential to its requests and records
// each one; the plugin only ever sees its settings and the answers.
//
// The service here is a plain REST shape; replace the paths and `ticket`
// with your service's:
//
//   connector.test-connection  GET   {base-url}/api/me
//   tickets.search             GET   {base-url}/api/tickets?q=&limit=
//   tickets.create             POST  {base-url}/api/tickets
//   tickets.get                GET   {base-url}/api/tickets/{id}
//   tickets.update             PATCH {base-url}/api/tickets/{id}
//   sync.fetch-page            GET   {base-url}/api/tickets?offset=&limit=
//
// WIT names become camelCase here (`test-connection` -> testConnection,
// `page-size` -> pageSize); an absent option is `undefined`; returning is
// `ok`, throwing a pluginError(...) is `err`.

import { api, pluginError, url } from './airlock.js';

const PRIORITIES = ['p1', 'p2', 'p3', 'p4'];

/** A ticket as the service answers it, in the WIT's `ticket` shape. */
function ticket(wire) {
  return {
    id: String(wire.id),
    number: wire.number ?? undefined,
    title: wire.title ?? '',
    description: wire.description ?? undefined,
    kind: undefined,
    state: wire.state ?? undefined,
    priority: PRIORITIES.includes(wire.priority) ? wire.priority : undefined,
    url: url(`/tickets/${encodeURIComponent(wire.id)}`),
    createdAt: undefined,
    updatedAt: wire.updated_at ?? undefined,
    fields: '{}',
  };
}

/** `fields` is a JSON object (as a string) of extra service fields. */
function extraFields(fields) {
  if (fields === undefined || fields === null) return {};
  let parsed;
  try {
    parsed = JSON.parse(fields);
  } catch {
    parsed = null;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw pluginError('invalid-input', 'fields must be a JSON object');
  }
  return parsed;
}

export const connector = {
  async testConnection() {
    const me = await api('GET', '/api/me');
    return { account: me.name, message: `connected to ${url('')} as ${me.name}`, details: [] };
  },
};

export const tickets = {
  async search(query) {
    if (query.nativeQuery) {
      throw pluginError('unsupported', 'this service has no query language: search by text');
    }
    const limit = query.limit === 0 ? 20 : Math.min(query.limit, 100);
    const q = encodeURIComponent(query.text ?? '');
    const found = await api('GET', `/api/tickets?q=${q}&limit=${limit}`);
    return found.map(ticket);
  },

  async create(input) {
    const title = input.title.trim();
    if (title === '') throw pluginError('invalid-input', 'title is empty');
    const body = {
      ...extraFields(input.fields),
      title,
      description: input.description ?? null,
      priority: input.priority ?? null,
    };
    return ticket(await api('POST', '/api/tickets', body));
  },

  async get(id) {
    return ticket(await api('GET', `/api/tickets/${encodeURIComponent(id)}`));
  },

  async update(update) {
    const body = extraFields(update.fields);
    for (const key of ['title', 'description', 'state', 'priority']) {
      if (update[key] !== undefined && update[key] !== null) body[key] = update[key];
    }
    return ticket(await api('PATCH', `/api/tickets/${encodeURIComponent(update.id)}`, body));
  },
};

export const sync = {
  // Pages by offset; a real service wants a "changed since" query and a
  // cursor of (timestamp, id) so nothing is skipped or read twice.
  async fetchPage(request) {
    const offset = request.cursor === undefined || request.cursor === null ? 0 : Number(request.cursor);
    if (!Number.isInteger(offset) || offset < 0) {
      throw pluginError('invalid-input', `cursor ${JSON.stringify(request.cursor)} is not ours`);
    }
    const limit = Math.min(Math.max(request.pageSize, 1), 100);
    const page = await api('GET', `/api/tickets?offset=${offset}&limit=${limit}`);
    const records = page.map((t) => ({
      id: String(t.id),
      kind: 'ticket',
      updatedAt: t.updated_at ?? undefined,
      data: JSON.stringify(t),
    }));
    return { records, nextCursor: String(offset + records.length), hasMore: page.length === limit };
  },
};
