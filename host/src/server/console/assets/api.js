// The console's one way to the server: the management API on this origin,
// with the token from this tab's sessionStorage as a bearer token. No
// cookies are used, so another site cannot make requests with the
// operator's authority.

const TOKEN_KEY = 'airlock.token';

export const session = {
  token() {
    return window.sessionStorage.getItem(TOKEN_KEY);
  },
  set(token) {
    window.sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    window.sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthorized = () => {};

// What to do when the server says the token is unknown or revoked.
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

async function failure(response) {
  let code = 'error';
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch (_) {
    // not the API's error shape; keep the status line
  }
  if (response.status === 401) onUnauthorized(message);
  return new ApiError(response.status, code, message);
}

function request(method, path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const token = session.token();
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  } else if (opts.body !== undefined) {
    headers['Content-Type'] = opts.contentType || 'application/octet-stream';
    body = opts.body;
  }
  return fetch(`/api/v1${path}${query(opts.query)}`, {
    method,
    headers,
    body,
    credentials: 'omit',
    cache: 'no-store',
    referrerPolicy: 'no-referrer',
  });
}

// Call the API; the parsed JSON answer, or null for an empty one.
export async function api(method, path, opts = {}) {
  const response = await request(method, path, opts);
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

// POST `json` and read the answer as server-sent events, calling
// `onEvent(name, data)` for each as it arrives.
export async function apiEvents(path, json, onEvent) {
  const response = await request('POST', path, { json });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      let name = 'message';
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}

export const enc = encodeURIComponent;
