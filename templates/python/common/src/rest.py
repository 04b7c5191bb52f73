"""JSON over HTTP for airlock plugins written in Python.

Requests go out through wasi:http (Python's own `urllib` and sockets are not
available in the sandbox); the host checks each one, adds the connection's
credential and records it, so no secret is ever handled here. A non-2xx
answer raises the matching `plugin-error`.
"""

import json
from typing import Any, Optional
from urllib.parse import quote, urlsplit

from componentize_py_types import Err
from wit_world.imports import host, outgoing_handler, streams
from wit_world.imports import airlock_plugin_types as t
from wit_world.imports.wasi_http_types import (
    Fields, IncomingBody, Method_Delete, Method_Get, Method_Patch, Method_Post,
    Method_Put, OutgoingBody, OutgoingRequest, Scheme_Http, Scheme_Https,
)

METHODS = {"GET": Method_Get(), "POST": Method_Post(), "PUT": Method_Put(),
           "PATCH": Method_Patch(), "DELETE": Method_Delete()}


def fail(error: t.PluginError) -> Err:
    """A `plugin-error` to raise: `raise fail(t.PluginError_NotFound("no ticket 7"))`."""
    return Err(error)


def required_setting(name: str) -> str:
    """A setting the manifest marks required (`base-url`, ...)."""
    value = host.setting(name)
    if not value:
        raise fail(t.PluginError_InvalidInput(f"the connection has no {name} setting"))
    return value


def url(path: str) -> str:
    """`path` (starting with `/`) under the connection's base-url."""
    return required_setting("base-url").rstrip("/") + path


def encode(text: str) -> str:
    """`text` as one path segment or query value."""
    return quote(text, safe="")


def api(method: str, path: str, body: Any = None) -> Any:
    """Send `body` (if not None) as JSON to `path` under base-url; answers the parsed JSON."""
    what = f"{method} {path}"
    target = urlsplit(url(path))
    headers = [("accept", b"application/json")]
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers.append(("content-type", b"application/json"))
    request = OutgoingRequest(Fields.from_list(headers))
    request.set_method(METHODS[method])
    request.set_scheme(Scheme_Https() if target.scheme == "https" else Scheme_Http())
    request.set_authority(target.netloc)
    request.set_path_with_query(target.path + (f"?{target.query}" if target.query else ""))
    outgoing = request.body()
    if data is not None:
        with outgoing.write() as stream:
            for start in range(0, len(data), 4096):
                stream.blocking_write_and_flush(data[start:start + 4096])
    OutgoingBody.finish(outgoing, None)

    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        # Refused by the host before anything was sent; its audit log says why.
        raise fail(t.PluginError_EgressDenied(f"{what}: {e.value}"))
    with future.subscribe() as ready:
        ready.block()
    answer = future.get()
    if answer is None or isinstance(answer.value, Err):
        raise fail(t.PluginError_Upstream(t.UpstreamFailure(0, f"{what}: no answer")))
    if isinstance(answer.value.value, Err):
        error = answer.value.value.value
        raise fail(t.PluginError_Upstream(t.UpstreamFailure(0, f"{what}: {error}")))
    response = answer.value.value

    status = response.status()
    with response.headers() as fields:
        retry_after = [v.decode() for v in fields.get("retry-after")]
    text = _read(response.consume()).decode("utf-8", "replace")
    if not 200 <= status < 300:
        raise fail(_status_error(status, retry_after, f"{what}: HTTP {status} {text[:200]}"))
    try:
        return json.loads(text) if text else None
    except ValueError:
        raise fail(t.PluginError_Upstream(t.UpstreamFailure(status, f"{what}: not JSON")))


def _read(body: IncomingBody) -> bytes:
    chunks = []
    with body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(64 * 1024))
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise fail(t.PluginError_Upstream(t.UpstreamFailure(0, "the answer broke off")))
    IncomingBody.finish(body)
    return b"".join(chunks)


def _status_error(status: int, retry_after: list, message: str) -> t.PluginError:
    if status == 401:
        return t.PluginError_Unauthorized(message)
    if status == 403:
        return t.PluginError_Forbidden(message)
    if status == 404:
        return t.PluginError_NotFound(message)
    if status == 409:
        return t.PluginError_Conflict(message)
    if status == 429:
        seconds: Optional[int] = int(retry_after[0]) if retry_after and retry_after[0].isdigit() else None
        return t.PluginError_RateLimited(t.RateLimit(seconds, message))
    return t.PluginError_Upstream(t.UpstreamFailure(status, message))
