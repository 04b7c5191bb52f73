"""The plugin in airlock against a loopback stand-in of the service: each
request goes out with the token the host injected. `python3 -m unittest`,
after `python3 build.py`."""

import unittest

from .harness import TOKEN, Airlock, Upstream, connect


def answer(method, path, body):
    route = path.split("?")[0]
    if (method, route) == ("GET", "/api/me"):
        return 200, {"name": "Smoke Test"}
    if (method, route) == ("GET", "/api/spaces"):
        return 200, [{"key": "OPS", "name": "Operations"}]
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

    def test_list_spaces(self):
        spaces = self.airlock.call("documents.list-spaces", {"limit": 5})
        self.assertEqual([s["name"] for s in spaces], ["Operations"])
        self.assertEqual(self.service.seen[-1]["path"], "/api/spaces?limit=5")

    def test_an_operation_not_written_yet_is_unsupported_not_a_crash(self):
        with self.assertRaisesRegex(AssertionError, "unsupported"):
            self.airlock.call("documents.get-page", {"id": "1"})
