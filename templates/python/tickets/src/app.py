"""{{name}}: an airlock tickets plugin in Python. The host runs it in a
sandbox, adds the connection's credential to its requests and records each
one; the plugin only ever sees its settings and the answers.

The service here is a plain REST shape; replace the paths and `ticket`
with your service's:

    connector.test-connection  GET   {base-url}/api/me
    tickets.search             GET   {base-url}/api/tickets?q=&limit=
    tickets.create             POST  {base-url}/api/tickets
    tickets.get                GET   {base-url}/api/tickets/{id}
    tickets.update             PATCH {base-url}/api/tickets/{id}
    sync.fetch-page            GET   {base-url}/api/tickets?offset=&limit=

Each exported WIT interface is a class of the same name here (`connector`
-> Connector), its functions methods in snake_case; returning is `ok`,
raising `fail(...)` (an `Err` holding a `plugin-error`) is `err`.
"""

import json
from typing import List, Optional

from wit_world import exports
from wit_world.imports import airlock_plugin_types as t
from rest import api, encode, fail, url

PRIORITIES = {"p1": t.Priority.P1, "p2": t.Priority.P2, "p3": t.Priority.P3, "p4": t.Priority.P4}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}


def ticket(wire: dict) -> t.Ticket:
    """A ticket as the service answers it, in the WIT's `ticket` shape."""
    return t.Ticket(
        id=str(wire["id"]),
        number=wire.get("number"),
        title=wire.get("title") or "",
        description=wire.get("description"),
        kind=None,
        state=wire.get("state"),
        priority=PRIORITIES.get(wire.get("priority")),
        url=url(f"/tickets/{encode(str(wire['id']))}"),
        created_at=None,
        updated_at=wire.get("updated_at"),
        fields="{}",
    )


def extra_fields(fields: Optional[str]) -> dict:
    """`fields` is a JSON object (as a string) of extra service fields."""
    if fields is None:
        return {}
    try:
        parsed = json.loads(fields)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise fail(t.PluginError_InvalidInput("fields must be a JSON object"))
    return parsed


class Connector(exports.Connector):
    def test_connection(self) -> t.ConnectionReport:
        me = api("GET", "/api/me")
        return t.ConnectionReport(
            account=me["name"], message=f"connected to {url('')} as {me['name']}", details=[]
        )


class Tickets(exports.Tickets):
    def search(self, query: t.TicketQuery) -> List[t.Ticket]:
        if query.native_query:
            raise fail(t.PluginError_Unsupported("this service has no query language: search by text"))
        limit = 20 if query.limit == 0 else min(query.limit, 100)
        found = api("GET", f"/api/tickets?q={encode(query.text or '')}&limit={limit}")
        return [ticket(w) for w in found]

    def create(self, new: t.NewTicket) -> t.Ticket:
        title = new.title.strip()
        if not title:
            raise fail(t.PluginError_InvalidInput("title is empty"))
        body = extra_fields(new.fields)
        body.update(
            title=title,
            description=new.description,
            priority=PRIORITY_NAMES.get(new.priority),
        )
        return ticket(api("POST", "/api/tickets", body))

    def get(self, id: str) -> t.Ticket:
        return ticket(api("GET", f"/api/tickets/{encode(id)}"))

    def update(self, update: t.TicketUpdate) -> t.Ticket:
        body = extra_fields(update.fields)
        changes = {
            "title": update.title,
            "description": update.description,
            "state": update.state,
            "priority": PRIORITY_NAMES.get(update.priority),
        }
        body.update({key: value for key, value in changes.items() if value is not None})
        return ticket(api("PATCH", f"/api/tickets/{encode(update.id)}", body))


class Sync(exports.Sync):
    def fetch_page(self, request: t.SyncRequest) -> t.SyncPage:
        """Pages by offset; a real service wants a "changed since" query and a
        cursor of (timestamp, id) so nothing is skipped or read twice."""
        cursor = request.cursor or "0"
        if not cursor.isdigit():
            raise fail(t.PluginError_InvalidInput(f"cursor {cursor!r} is not ours"))
        offset = int(cursor)
        limit = max(1, min(request.page_size, 100))
        page = api("GET", f"/api/tickets?offset={offset}&limit={limit}")
        records = [
            t.SyncRecord(id=str(w["id"]), kind="ticket", updated_at=w.get("updated_at"), data=json.dumps(w))
            for w in page
        ]
        return t.SyncPage(records=records, next_cursor=str(offset + len(records)), has_more=len(page) == limit)
