"""{{name}}: an airlock connector plugin in Python. The host runs it in a
sandbox, adds the connection's credential to its requests and records each
one; the plugin only ever sees its settings and the answers.

Each exported WIT interface is a class of the same name here (`connector`
-> Connector), its functions methods in snake_case; returning is `ok`,
raising `fail(...)` (an `Err` holding a `plugin-error`) is `err`.
"""

from wit_world import exports
from wit_world.imports import airlock_plugin_types as t
from rest import api, url


class Connector(exports.Connector):
    def test_connection(self) -> t.ConnectionReport:
        """The cheapest authenticated call the service has. A non-2xx answer
        raises the matching plugin-error (401 -> unauthorized, ...)."""
        me = api("GET", "/api/me")
        return t.ConnectionReport(
            account=me["name"], message=f"connected to {url('')} as {me['name']}", details=[]
        )
