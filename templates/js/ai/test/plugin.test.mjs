// The plugin in airlock against a loopback stand-in of an OpenAI-style
// API: each request goes out with the key the host injected. `npm test`,
// after `npm run build`.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Airlock, TOKEN, connect, upstream } from './harness.mjs';

function answer(method, path) {
  if (method === 'GET' && path === '/v1/models') return [200, { data: [{ id: 'small-1', owned_by: 'acme' }] }];
  if (method === 'POST' && path === '/v1/chat/completions') {
    const message = { role: 'assistant', content: 'Hello there.' };
    return [200, { model: 'small-1', choices: [{ message, finish_reason: 'stop' }] }];
  }
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

test('test-connection and a chat turn go out with the injected key', async () => {
  const report = await airlock.call('connector.test-connection');
  assert.match(report.message, /1 models/);
  const reply = await airlock.call('chat.complete', {
    model: null, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 50,
  });
  assert.equal(reply.content, 'Hello there.');
  const sent = JSON.parse(service.seen.at(-1).body);
  assert.deepEqual(sent.messages, [{ role: 'user', content: 'Hi' }]);
  for (const request of service.seen) assert.equal(request.authorization, `Bearer ${TOKEN}`);
});
