"""The plugin in airlock against a loopback stand-in of the service: its
connection test goes out with the token the host injected.
`python3 -m unittest`, after `python3 build.py`."""

import unittest

from .harness import TOKEN, Airlock, Upstream, connect


def answer(method, path, body):
    if (method, path) == ("GET", "/api/me"):
        return 200, {"name": "Smoke Test"}
    return 404, {"error": "not found"}


class PluginInAirlock(unittest.TestCase):
    def test_connection_goes_out_with_the_injected_token(self):
        service = Upstream(answer)
        self.addCleanup(service.close)
        airlock = Airlock()
        self.addCleanup(airlock.remove)
        connect(airlock, service)
        report = airlock.call("connector.test-connection")
        self.assertEqual(report["account"], "Smoke Test")
        self.assertEqual(service.seen[0]["path"], "/api/me")
        self.assertEqual(service.seen[0]["authorization"], f"Bearer {TOKEN}")
