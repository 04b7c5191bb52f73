// {{name}}: an airlock documents plugin in JavaScript. The host runs it in
// a sandbox, adds the connection's credential to its requests and records
// each one; the plugin only ever sees its settings and the answers.
//
// The service here is a plain REST shape; replace the paths and mappings
// with your service's:
//
//   connector.test-connection  GET {base-url}/api/me
//   documents.list-spaces      GET {base-url}/api/spaces?limit=
//   documents.search-pages     GET {base-url}/api/pages?q=&limit=
//
// The other operations answer `unsupported` until you write them.
// WIT names become camelCase here (`list-spaces` -> listSpaces); an absent
// option is `undefined`; returning is `ok`, throwing a pluginError(...) is
// `err`.

import { api, pluginError, url } from './airlock.js';

const unsupported = (what) => async () => {
  throw pluginError('unsupported', `${what} is not written yet`);
};

export const connector = {
  async testConnection() {
    const me = await api('GET', '/api/me');
    return { account: me.name, message: `connected to ${url('')} as ${me.name}`, details: [] };
  },
};

export const documents = {
  async listSpaces(limit) {
    const n = limit === 0 ? 25 : Math.min(limit, 100);
    const spaces = await api('GET', `/api/spaces?limit=${n}`);
    return spaces.map((s) => ({ key: s.key, name: s.name, id: undefined, kind: undefined, url: undefined }));
  },

  async searchPages(query) {
    if (query.cql) throw pluginError('unsupported', 'this service has no query language: search by text');
    const n = query.limit === 0 ? 10 : Math.min(query.limit, 100);
    let path = `/api/pages?q=${encodeURIComponent(query.text ?? '')}&limit=${n}`;
    if (query.spaceKey) path += `&space=${encodeURIComponent(query.spaceKey)}`;
    const hits = await api('GET', path);
    return hits.map((p) => ({
      id: String(p.id),
      title: p.title,
      spaceKey: p.space ?? undefined,
      version: undefined,
      url: undefined,
      excerpt: undefined,
    }));
  },

  getPage: unsupported('get-page'),
  publishPage: unsupported('publish-page'),
  updatePage: unsupported('update-page'),
};

export const sync = {
  fetchPage: unsupported('sync'),
};
