// The plugin in airlock against a loopback stand-in of the service: each
// request goes out with the token the host injected. `npm test`, after
// `npm run build`.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Airlock, TOKEN, connect, upstream } from './harness.mjs';

const TICKET = { id: '42', number: 'T-42', title: 'Printer on fire', state: 'new', priority: 'p2' };

function answer(method, path) {
  if (method === 'GET' && path === '/api/me') return [200, { name: 'Smoke Test' }];
  if (method === 'POST' && path === '/api/tickets') return [201, TICKET];
  if (method === 'GET' && path === '/api/tickets/42') return [200, TICKET];
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

test('create and get go out with the injected token', async () => {
  const created = await airlock.call('tickets.create', {
    title: 'Printer on fire', description: null, kind: null, priority: 'p2', fields: null,
  });
  assert.equal(created.number, 'T-42');
  assert.equal(created.priority, 'p2');
  const got = await airlock.call('tickets.get', { id: '42' });
  assert.equal(got.title, 'Printer on fire');
  const sent = service.seen.find((r) => r.method === 'POST');
  assert.deepEqual(JSON.parse(sent.body), { title: 'Printer on fire', description: null, priority: 'p2' });
});

test('a native query is unsupported, not a crash', async () => {
  await assert.rejects(
    airlock.call('tickets.search', { text: null, native_query: 'state=new', limit: 5 }),
    /unsupported/,
  );
});

test('every request carried the token', () => {
  assert.ok(service.seen.length >= 3);
  for (const request of service.seen) assert.equal(request.authorization, `Bearer ${TOKEN}`);
});
