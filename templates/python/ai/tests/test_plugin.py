"""The plugin in airlock against a loopback stand-in of an OpenAI-style
API: each request goes out with the key the host injected.
`python3 -m unittest`, after `python3 build.py`."""

import json
import unittest

from .harness import TOKEN, Airlock, Upstream, connect


def answer(method, path, body):
    if (method, path) == ("GET", "/v1/models"):
        return 200, {"data": [{"id": "small-1", "owned_by": "acme"}]}
    if (method, path) == ("POST", "/v1/chat/completions"):
        message = {"role": "assistant", "content": "Hello there."}
        return 200, {"model": "small-1", "choices": [{"message": message, "finish_reason": "stop"}]}
    return 404, {"error": "not found"}


class PluginInAirlock(unittest.TestCase):
    def test_connection_and_a_chat_turn_go_out_with_the_injected_key(self):
        service = Upstream(answer)
        self.addCleanup(service.close)
        airlock = Airlock()
        self.addCleanup(airlock.remove)
        connect(airlock, service)
        report = airlock.call("connector.test-connection")
        self.assertIn("1 models", report["message"])
        reply = airlock.call("chat.complete", {
            "model": None, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50,
        })
        self.assertEqual(reply["content"], "Hello there.")
        sent = json.loads(service.seen[-1]["body"])
        self.assertEqual(sent["messages"], [{"role": "user", "content": "Hi"}])
        for request in service.seen:
            self.assertEqual(request["authorization"], f"Bearer {TOKEN}")
