// Helpers for airlock plugins written in JavaScript: the connection's
// settings, JSON over fetch() with answers mapped to the WIT's
// plugin-error, and that error's shape. fetch() goes out through
// wasi:http; the host checks each request, adds the credential and
// records it, so no secret is ever handled here.

import { setting } from 'airlock:plugin/host@0.1.0';

/** A `plugin-error` to throw: `throw pluginError('not-found', 'no ticket 7')`. */
export function pluginError(tag, val) {
  return { tag, val };
}

/** A setting the manifest marks required (`base-url`, ...). */
export function requiredSetting(name) {
  const value = setting(name);
  if (value === undefined || value === null || value === '') {
    throw pluginError('invalid-input', `the connection has no ${name} setting`);
  }
  return value;
}

/** `path` (starting with `/`) under the connection's base-url. */
export function url(path) {
  return requiredSetting('base-url').replace(/\/+$/, '') + path;
}

/**
 * Send `body` (if any) as JSON to `path` under base-url; answers the
 * parsed JSON. A non-2xx answer throws the matching plugin-error.
 */
export async function api(method, path, body) {
  const init = { method, headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path), init);
  } catch (e) {
    // No answer: refused by the host (not granted, not routable), or the
    // connection failed. The host's audit log says which.
    throw pluginError('upstream', { status: 0, message: `${method} ${path}: ${e.message ?? e}` });
  }
  const text = await response.text();
  if (!response.ok) {
    throw statusError(response, `${method} ${path}: HTTP ${response.status} ${text.slice(0, 200)}`);
  }
  try {
    return text === '' ? null : JSON.parse(text);
  } catch {
    throw pluginError('upstream', { status: response.status, message: `${method} ${path}: not JSON` });
  }
}

function statusError(response, message) {
  switch (response.status) {
    case 401: return pluginError('unauthorized', message);
    case 403: return pluginError('forbidden', message);
    case 404: return pluginError('not-found', message);
    case 409: return pluginError('conflict', message);
    case 429: {
      const seconds = Number.parseInt(response.headers.get('retry-after') ?? '', 10);
      // u64 fields are BigInt in JavaScript.
      const retryAfterSecs = Number.isNaN(seconds) ? undefined : BigInt(seconds);
      return pluginError('rate-limited', { retryAfterSecs, message });
    }
    default: return pluginError('upstream', { status: response.status, message });
  }
}
