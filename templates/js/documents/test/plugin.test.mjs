// The plugin in airlock against a loopback stand-in of the service: each
// request goes out with the token the host injected. `npm test`, after
// `npm run build`.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Airlock, TOKEN, connect, upstream } from './harness.mjs';

function answer(method, path) {
  const route = path.split('?')[0];
  if (method === 'GET' && route === '/api/me') return [200, { name: 'Smoke Test' }];
  if (method === 'GET' && route === '/api/spaces') return [200, [{ key: 'OPS', name: 'Operations' }]];
  return [404, { error: 'not found' }];
}

let airlock;
let service;

before(async () => {
  service = await upstream(answer);
  airlock = new Airlock();
  await connect(airlock, service);
});

after(() => {
  airlock?.remove();
  service?.close();
});

test('test-connection goes out with the injected token', async () => {
  const report = await airlock.call('connector.test-connection');
  assert.equal(report.account, 'Smoke Test');
});

test('list-spaces goes out with the injected token', async () => {
  const spaces = await airlock.call('documents.list-spaces', { limit: 5 });
  assert.deepEqual(spaces.map((s) => s.name), ['Operations']);
  assert.equal(service.seen.at(-1).path, '/api/spaces?limit=5');
});

test('an operation not written yet is unsupported, not a crash', async () => {
  await assert.rejects(airlock.call('documents.get-page', { id: '1' }), /unsupported/);
});

test('every request carried the token', () => {
  for (const request of service.seen) assert.equal(request.authorization, `Bearer ${TOKEN}`);
});
