"""The plugin in airlock against a loopback stand-in of the service: each
request goes out with the token the host injected. `python3 -m unittest`,
after `python3 build.py`."""

import json
import unittest

from .harness import TOKEN, Airlock, Upstream, connect

TICKET = {"id": "42", "number": "T-42", "title": "Printer on fire", "state": "new", "priority": "p2"}


def answer(method, path, body):
    if (method, path) == ("GET", "/api/me"):
        return 200, {"name": "Smoke Test"}
    if (method, path) == ("POST", "/api/tickets"):
        return 201, TICKET
    if (method, path) == ("GET", "/api/tickets/42"):
        return 200, TICKET
    return 404, {"error": "not found"}


class PluginInAirlock(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.service = Upstream(answer)
        cls.airlock = Airlock()
        cls.addClassCleanup(cls.service.close)
        cls.addClassCleanup(cls.airlock.remove)
        connect(cls.airlock, cls.service)

    def tearDown(self):
        for request in self.service.seen:
            self.assertEqual(request["authorization"], f"Bearer {TOKEN}")

    def test_connection_goes_out_with_the_injected_token(self):
        report = self.airlock.call("connector.test-connection")
        self.assertEqual(report["account"], "Smoke Test")

    def test_create_and_get(self):
        created = self.airlock.call("tickets.create", {
            "title": "Printer on fire", "description": None, "kind": None, "priority": "p2", "fields": None,
        })
        self.assertEqual((created["number"], created["priority"]), ("T-42", "p2"))
        got = self.airlock.call("tickets.get", {"id": "42"})
        self.assertEqual(got["title"], "Printer on fire")
        sent = next(r for r in self.service.seen if r["method"] == "POST")
        self.assertEqual(json.loads(sent["body"]), {"title": "Printer on fire", "description": None, "priority": "p2"})

    def test_a_native_query_is_unsupported_not_a_crash(self):
        with self.assertRaisesRegex(AssertionError, "unsupported"):
            self.airlock.call("tickets.search", {"text": None, "native_query": "state=new", "limit": 5})
