// The plugin in airlock against a loopback stand-in of the service: its
// connection test goes out with the token the host injected. `npm test`,
// after `npm run build`.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Airlock, TOKEN, connect, upstream } from './harness.mjs';

function answer(method, path) {
  if (method === 'GET' && path === '/api/me') return [200, { name: 'Smoke Test' }];
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
  assert.equal(service.seen[0].path, '/api/me');
  assert.equal(service.seen[0].authorization, `Bearer ${TOKEN}`);
});
