// {{name}}: an airlock connector plugin in JavaScript. The host runs it in
// a sandbox, adds the connection's credential to its requests and records
// each one; the plugin only ever sees its settings and the answers.
//
// WIT names become camelCase here (`test-connection` -> testConnection);
// returning is `ok`, throwing a pluginError(...) is `err`.

import { api, url } from './airlock.js';

export const connector = {
  // The cheapest authenticated call the service has. A non-2xx answer
  // throws the matching plugin-error (401 -> unauthorized, ...).
  async testConnection() {
    const me = await api('GET', '/api/me');
    return { account: me.name, message: `connected to ${url('')} as ${me.name}`, details: [] };
  },
};
