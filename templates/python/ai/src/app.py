"""{{name}}: an airlock AI provider plugin in Python. The host runs it in a
sandbox, adds the connection's credential (an API key) to its requests,
redacts personal data from what it sends and records each request; the
plugin only ever sees its settings and the answers.

The service here speaks the OpenAI chat-completions shape:

    connector.test-connection  GET  {base-url}/v1/models
    chat.list-models           GET  {base-url}/v1/models
    chat.complete              POST {base-url}/v1/chat/completions

`chat.complete-stream` answers `unsupported` (see chat.py): the host then
uses `complete`. Each exported WIT interface is a class of the same name
here (`chat` -> Chat), its functions methods in snake_case; returning is
`ok`, raising `fail(...)` (an `Err` holding a `plugin-error`) is `err`.
"""

from typing import List

from wit_world import exports
from wit_world.exports import chat
from wit_world.imports import airlock_plugin_types as t
from wit_world.imports import host
from rest import api, fail, url

ROLES = {t.Role.SYSTEM: "system", t.Role.USER: "user", t.Role.ASSISTANT: "assistant"}


def models() -> List[t.ModelInfo]:
    return [t.ModelInfo(id=m["id"], owned_by=m.get("owned_by")) for m in api("GET", "/v1/models")["data"]]


class Connector(exports.Connector):
    def test_connection(self) -> t.ConnectionReport:
        return t.ConnectionReport(account=None, message=f"{url('')} offers {len(models())} models", details=[])


class Chat(exports.Chat):
    def complete(self, request: t.ChatRequest) -> t.ChatResponse:
        body = {
            "model": request.model or host.setting("model"),
            "messages": [{"role": ROLES[m.role], "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        answer = api("POST", "/v1/chat/completions", body)
        if not answer.get("choices"):
            raise fail(t.PluginError_Internal("the provider answered no choice"))
        choice = answer["choices"][0]
        return t.ChatResponse(
            content=choice["message"]["content"],
            model=answer.get("model"),
            finish_reason=choice.get("finish_reason"),
            usage=None,
        )

    def complete_stream(self, request: t.ChatRequest) -> chat.CompletionStream:
        raise fail(t.PluginError_Unsupported("this plugin does not stream: use complete"))

    def list_models(self) -> List[t.ModelInfo]:
        return models()
