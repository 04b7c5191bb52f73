//! The operation table: every operation a plugin exports, named once by its
//! WIT name (`interface.operation`), with the interface that exports it, the
//! shape of its JSON input and the typed [`Runtime`] method that calls it.
//!
//! Generated from the table: the typed methods, [`OPERATIONS`],
//! [`Runtime::invoke_json`] (what `airlock call` and the management API's
//! invoke route use) and the operation name every [`CallError`] carries, so
//! messages always say `tickets.get`, never a Rust method name.
//!
//! The JSON side goes through the mirror types of [`json`](super::json),
//! which own the contract (snake_case fields, the WIT's enum spellings,
//! `fields` as an object, errors naming the field path). Operations without
//! arguments take `null` or `{}`; single-argument operations take an object
//! naming the argument, e.g. `{"id": "INC0010001"}` for `tickets.get`; the
//! rest take the argument's record. [`operation_schemas`] gives each
//! operation's input and output as JSON Schemas.

use serde_json::Value;

use super::Runtime;
use super::bindings::types::*;
use super::invoke::{CallError, not_exported};
use super::json::{self, FromJson, ToJson};
use super::plugin::{Interface, Plugin};
use crate::connection::Connection;

/// The [`Interface`] of an interface's field name in the plugin's exports.
macro_rules! interface {
    (connector) => {
        Interface::Connector
    };
    (documents) => {
        Interface::Documents
    };
    (tickets) => {
        Interface::Tickets
    };
    (sync) => {
        Interface::Sync
    };
    (chat) => {
        Interface::Chat
    };
}

/// Copy small arguments; borrow the rest, as the generated bindings expect.
macro_rules! pass {
    (copy $arg:ident) => {
        $arg
    };
    (borrow $arg:ident) => {
        &$arg
    };
}

/// The mirror type (see [`json`](super::json)) a row's JSON input is
/// decoded into, by the table's input shape: `none` takes no argument,
/// `record` the argument's own mirror, a wrapper (`Id`, `Limit`) an object
/// whose one field names the argument.
macro_rules! json_input {
    (none) => {
        json::NoInput
    };
    (record, $ty:ty) => {
        <$ty as FromJson>::Json
    };
    ($wrapper:ident, $ty:ty) => {
        json::$wrapper
    };
}

/// One typed call from a row's decoded JSON input.
macro_rules! json_call {
    ($rt:ident.$method:ident($p:ident, $c:ident), none, $input:ident) => {{
        let json::NoInput {} = $input;
        $rt.$method($p, $c).await?
    }};
    ($rt:ident.$method:ident($p:ident, $c:ident, $arg:ident), record, $input:ident) => {
        $rt.$method($p, $c, FromJson::from_json($input)).await?
    };
    ($rt:ident.$method:ident($p:ident, $c:ident, $arg:ident), $wrapper:ident, $input:ident) => {{
        let json::$wrapper { $arg } = $input;
        $rt.$method($p, $c, $arg).await?
    }};
}

/// A streamed operation: opened once, then pulled delta by delta.
#[derive(Debug)]
pub(super) struct Streamed {
    /// The WIT name of the export that opens the stream.
    pub name: &'static str,
    /// The name a failure while pulling the next delta is reported under.
    pub next: &'static str,
    /// The interface that exports it.
    pub interface: Interface,
}

/// Generates everything the table drives; see the module docs.
macro_rules! operations {
    (
        json {$(
            $(#[$doc:meta])*
            $iface:ident $op:literal => $method:ident ( $( $pass:ident $arg:ident : $ty:ty ),* )
                -> $ret:ty, $call:ident, json $shape:ident;
        )*}
        streamed {$(
            $(#[$sdoc:meta])*
            $siface:ident $sop:literal => $smethod:ident ( $( $sarg:ident ),* ) as $sconst:ident;
        )*}
    ) => {
        /// Every operation `invoke_json` knows, as `interface.operation`.
        pub const OPERATIONS: &[&str] = &[$(concat!(stringify!($iface), ".", $op)),*];

        /// The JSON contract of every operation in [`OPERATIONS`], in that
        /// order, as JSON Schemas: what [`Runtime::invoke_json`] takes and
        /// answers (see [`json`](super::json) for the spelling rules).
        pub fn operation_schemas() -> Vec<json::OperationSchema> {
            vec![$(
                json::OperationSchema::of::<
                    json_input!($shape $(, $ty)*),
                    <$ret as ToJson>::Json,
                >(concat!(stringify!($iface), ".", $op)),
            )*]
        }

        $(
            $(#[$sdoc])*
            pub(super) const $sconst: Streamed = Streamed {
                name: concat!(stringify!($siface), ".", $sop),
                next: concat!(stringify!($siface), ".", $sop, " (next delta)"),
                interface: interface!($siface),
            };
            // The typed method the row names is written by hand; make sure
            // it exists.
            const _: () = {
                let _ = Runtime::$smethod;
            };
        )*

        /// Every row as (interface, operation, argument names), for the
        /// test that holds the table to the WIT.
        #[cfg(test)]
        const TABLE: &[(Interface, &str, &[&str])] = &[
            $((interface!($iface), $op, &[$(stringify!($arg)),*]),)*
            $((interface!($siface), $sop, &[$(stringify!($sarg)),*]),)*
        ];

        impl Runtime {
            $(
                $(#[$doc])*
                #[doc = ""]
                #[doc = concat!("The `", stringify!($iface), ".", $op, "` export.")]
                pub async fn $method(
                    &self,
                    plugin: &Plugin,
                    connection: &Connection,
                    $( $arg: $ty ),*
                ) -> Result<$ret, CallError> {
                    const OP: &str = concat!(stringify!($iface), ".", $op);
                    if plugin.exports.$iface.is_none() {
                        return Err(not_exported(plugin, interface!($iface), OP));
                    }
                    self.run(plugin, connection, OP, move |call, plugin| {
                        Box::pin(async move {
                            let guest = plugin
                                .exports
                                .$iface
                                .as_ref()
                                .expect("checked above")
                                .load(&mut call.store, &call.instance)?;
                            guest.$call(&mut call.store $(, pass!($pass $arg))*).await
                        })
                    })
                    .await
                }
            )*

            /// Run `operation` (`interface.operation`, as in [`OPERATIONS`])
            /// with a JSON input and return its result as JSON, both in the
            /// contract of [`json`](super::json).
            pub async fn invoke_json(
                &self,
                plugin: &Plugin,
                connection: &Connection,
                operation: &str,
                value: Value,
            ) -> Result<Value, CallError> {
                let (p, c) = (plugin, connection);
                match operation {
                    $(
                        concat!(stringify!($iface), ".", $op) => {
                            let input: json_input!($shape $(, $ty)*) =
                                json::input(operation, value)?;
                            Ok(json::output(json_call!(
                                self.$method(p, c $(, $arg)*), $shape, input
                            )))
                        }
                    )*
                    other => Err(CallError::UnknownOperation {
                        operation: other.to_string(),
                        known: OPERATIONS.join(", "),
                    }),
                }
            }
        }
    };
}

operations! {
    json {
        /// Check that the connection's settings and credential work.
        connector "test-connection" => test_connection() -> ConnectionReport,
            call_test_connection, json none;
        /// Spaces the credential can see, up to `limit`.
        documents "list-spaces" => list_spaces(copy limit: u32) -> Vec<Space>,
            call_list_spaces, json Limit;
        /// Pages matching a CQL expression or free text, optionally in one space.
        documents "search-pages" => search_pages(borrow query: PageQuery) -> Vec<PageSummary>,
            call_search_pages, json record;
        /// One page with its body in storage format.
        documents "get-page" => get_page(borrow id: String) -> Page,
            call_get_page, json Id;
        /// Create a page, optionally under a parent page.
        documents "publish-page" => publish_page(borrow page: NewPage) -> Page,
            call_publish_page, json record;
        /// Replace a page's body (and optionally title), bumping its version.
        documents "update-page" => update_page(borrow update: PageUpdate) -> Page,
            call_update_page, json record;
        /// Tickets matching free text or a query in the service's own language.
        tickets "search" => search_tickets(borrow query: TicketQuery) -> Vec<Ticket>,
            call_search, json record;
        /// Create a ticket.
        tickets "create" => create_ticket(borrow ticket: NewTicket) -> Ticket,
            call_create, json record;
        /// One ticket by stable id or by human number (`INC0010001`, `1234`).
        tickets "get" => get_ticket(borrow id: String) -> Ticket,
            call_get, json Id;
        /// Change a ticket.
        tickets "update" => update_ticket(borrow update: TicketUpdate) -> Ticket,
            call_update, json record;
        /// One page of records after `request.cursor`.
        sync "fetch-page" => fetch_page(borrow request: SyncRequest) -> SyncPage,
            call_fetch_page, json record;
        /// One whole chat answer.
        chat "complete" => complete(borrow request: ChatRequest) -> ChatResponse,
            call_complete, json record;
        /// Models the connection offers.
        chat "list-models" => list_models() -> Vec<ModelInfo>,
            call_list_models, json none;
    }
    streamed {
        /// A chat answer as deltas ([`Runtime::chat_stream`]); it returns a
        /// resource, so it has no JSON form.
        chat "complete-stream" => chat_stream(request) as CHAT_STREAM;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use wit_parser::{FunctionKind, Resolve};

    use super::*;

    /// Each interface's freestanding functions, with their parameter names,
    /// as `wit/` declares them.
    fn wit_functions() -> BTreeSet<(String, String, Vec<String>)> {
        let mut resolve = Resolve::default();
        let (pkg, _) = resolve
            .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit"))
            .unwrap();
        let mut out = BTreeSet::new();
        for iface in Interface::ALL {
            let id = resolve.packages[pkg].interfaces[iface.name()];
            for (name, func) in &resolve.interfaces[id].functions {
                if matches!(func.kind, FunctionKind::Freestanding) {
                    let params = func.params.iter().map(|p| p.name.clone()).collect();
                    out.insert((iface.name().to_string(), name.clone(), params));
                }
            }
        }
        out
    }

    /// The table names exactly the WIT's operations, and each argument as
    /// the WIT does (the JSON input's field names depend on it).
    #[test]
    fn table_matches_the_wit() {
        let table: BTreeSet<(String, String, Vec<String>)> = TABLE
            .iter()
            .map(|(iface, op, args)| {
                let args = args.iter().map(|a| a.replace('_', "-")).collect();
                (iface.name().to_string(), op.to_string(), args)
            })
            .collect();
        assert_eq!(table, wit_functions());
        assert_eq!(TABLE.len(), table.len(), "a row appears twice");
    }

    #[test]
    fn operations_are_the_json_rows() {
        let streamed = [&CHAT_STREAM];
        assert_eq!(OPERATIONS.len() + streamed.len(), TABLE.len());
        for (iface, op, _) in TABLE {
            let name = format!("{iface}.{op}");
            let is_streamed = streamed.iter().any(|s| s.name == name);
            assert_eq!(OPERATIONS.contains(&name.as_str()), !is_streamed, "{name}");
        }
        assert_eq!(CHAT_STREAM.name, "chat.complete-stream");
        assert_eq!(CHAT_STREAM.interface, Interface::Chat);
        assert!(CHAT_STREAM.next.starts_with(CHAT_STREAM.name));
    }
}
