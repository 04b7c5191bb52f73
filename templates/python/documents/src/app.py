"""{{name}}: an airlock documents plugin in Python. The host runs it in a
sandbox, adds the connection's credential to its requests and records each
one; the plugin only ever sees its settings and the answers.

The service here is a plain REST shape; replace the paths and mappings
with your service's:

    connector.test-connection  GET {base-url}/api/me
    documents.list-spaces      GET {base-url}/api/spaces?limit=
    documents.search-pages     GET {base-url}/api/pages?q=&limit=

The other operations answer `unsupported` until you write them. Each
exported WIT interface is a class of the same name here (`documents` ->
Documents), its functions methods in snake_case; returning is `ok`,
raising `fail(...)` (an `Err` holding a `plugin-error`) is `err`.
"""

from typing import List

from wit_world import exports
from wit_world.imports import airlock_plugin_types as t
from rest import api, encode, fail, url


def unsupported(what: str):
    return fail(t.PluginError_Unsupported(f"{what} is not written yet"))


class Connector(exports.Connector):
    def test_connection(self) -> t.ConnectionReport:
        me = api("GET", "/api/me")
        return t.ConnectionReport(
            account=me["name"], message=f"connected to {url('')} as {me['name']}", details=[]
        )


class Documents(exports.Documents):
    def list_spaces(self, limit: int) -> List[t.Space]:
        n = 25 if limit == 0 else min(limit, 100)
        spaces = api("GET", f"/api/spaces?limit={n}")
        return [t.Space(key=s["key"], name=s["name"], id=None, kind=None, url=None) for s in spaces]

    def search_pages(self, query: t.PageQuery) -> List[t.PageSummary]:
        if query.cql:
            raise fail(t.PluginError_Unsupported("this service has no query language: search by text"))
        n = 10 if query.limit == 0 else min(query.limit, 100)
        path = f"/api/pages?q={encode(query.text or '')}&limit={n}"
        if query.space_key:
            path += f"&space={encode(query.space_key)}"
        return [
            t.PageSummary(id=str(p["id"]), title=p["title"], space_key=p.get("space"),
                          version=None, url=None, excerpt=None)
            for p in api("GET", path)
        ]

    def get_page(self, id: str) -> t.Page:
        raise unsupported("get-page")

    def publish_page(self, page: t.NewPage) -> t.Page:
        raise unsupported("publish-page")

    def update_page(self, update: t.PageUpdate) -> t.Page:
        raise unsupported("update-page")


class Sync(exports.Sync):
    def fetch_page(self, request: t.SyncRequest) -> t.SyncPage:
        raise unsupported("sync")
