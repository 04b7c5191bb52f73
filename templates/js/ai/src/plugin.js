// {{name}}: an airlock AI provider plugin in JavaScript. The host runs it
// in a sandbox, adds the connection's credential (an API key) to its
// requests, redacts personal data from what it sends and records each
// request; the plugin only ever sees its settings and the answers.
//
// The service here speaks the OpenAI chat-completions shape:
//
//   connector.test-connection  GET  {base-url}/v1/models
//   chat.list-models           GET  {base-url}/v1/models
//   chat.complete              POST {base-url}/v1/chat/completions
//
// `chat.complete-stream` answers `unsupported`: the host then uses
// `complete`. WIT names become camelCase here (`max-tokens` -> maxTokens);
// an absent option is `undefined`; returning is `ok`, throwing a
// pluginError(...) is `err`.

import { setting } from 'airlock:plugin/host@0.1.0';

import { api, pluginError, url } from './airlock.js';

async function models() {
  const answer = await api('GET', '/v1/models');
  return answer.data.map((m) => ({ id: m.id, ownedBy: m.owned_by ?? undefined }));
}

export const connector = {
  async testConnection() {
    const all = await models();
    return { account: undefined, message: `${url('')} offers ${all.length} models`, details: [] };
  },
};

/** The resource `complete-stream` would answer; this plugin does not stream. */
class CompletionStream {
  next() {
    throw pluginError('unsupported', 'not streaming');
  }
}

export const chat = {
  CompletionStream,

  async complete(request) {
    const body = {
      model: request.model ?? setting('model') ?? null,
      messages: request.messages.map((m) => ({ role: m.role, content: m.content })),
      temperature: request.temperature ?? null,
      max_tokens: request.maxTokens ?? null,
    };
    const answer = await api('POST', '/v1/chat/completions', body);
    const choice = answer.choices?.[0];
    if (!choice) throw pluginError('internal', 'the provider answered no choice');
    return {
      content: choice.message.content,
      model: answer.model ?? undefined,
      finishReason: choice.finish_reason ?? undefined,
      usage: undefined,
    };
  },

  completeStream() {
    throw pluginError('unsupported', 'this plugin does not stream: use complete');
  },

  listModels: models,
};
