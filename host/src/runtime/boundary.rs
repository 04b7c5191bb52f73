//! What may cross from a plugin into the host in one call: the data of each
//! host call, the operation's result and the resource handles the call
//! holds, each bounded by [`Limits`] before the host allocates anything.
//!
//! wasmtime copies a guest's strings and lists into host memory while it
//! lifts them, against the store's "hostcall fuel" (128 MiB by default, for
//! host-call arguments and export results alike). The call hook below swaps
//! the budget as control crosses the boundary: the host-call budget while a
//! host function is entered, the result budget otherwise (the result is
//! lifted after the guest has returned).

use wasmtime::component::ResourceTableError;
use wasmtime::{CallHook, Store, WasmBacktrace};

use super::call_data::{CallState, LimitHit};
use crate::limits::Limits;

/// Put the call's data and handle budgets on its store.
pub(super) fn bound(store: &mut Store<CallState>, limits: &Limits) {
    let (hostcall, result) = (limits.hostcall_budget(), limits.result_bytes);
    store.set_hostcall_fuel(result);
    store.set_max_component_handles(limits.resource_handles);
    // Every entry into the host (host functions and libcalls alike) is
    // paired with a return, error or not, so the result budget is back in
    // place whenever guest code runs or its result is lifted.
    store.call_hook(move |mut ctx, hook| {
        match hook {
            CallHook::CallingHost => ctx.set_hostcall_fuel(hostcall),
            CallHook::ReturningFromHost => ctx.set_hostcall_fuel(result),
            CallHook::CallingWasm | CallHook::ReturningFromWasm => {}
        }
        Ok(())
    });
}

/// The boundary limit behind a failed call, if one was.
///
/// wasmtime 48 reports these breaches as plain messages (its error types
/// are private), so their texts are matched here; the hostile e2e tests
/// fail with a `Trap` instead of a `Limit` if wasmtime ever rewords them.
pub(super) fn breach(err: &wasmtime::Error) -> Option<LimitHit> {
    let says = |needle: &str| err.chain().any(|e| e.to_string().contains(needle));
    if matches!(
        err.downcast_ref::<ResourceTableError>(),
        Some(ResourceTableError::Full)
    ) || says("resource table has no free keys")
        || says("store handle limit exceeded")
    {
        return Some(LimitHit::Handles);
    }
    if says("fuel allocated for hostcalls has been exhausted") {
        // A host call's arguments are lifted with the guest on the stack, so
        // the error unwinds through it and carries its backtrace; a result
        // is lifted after the guest returned, with no guest frame left.
        return Some(if err.is::<WasmBacktrace>() {
            LimitHit::HostcallData
        } else {
            LimitHit::Result
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_handle_table_is_the_handle_limit() {
        let host = wasmtime::Error::from(ResourceTableError::Full);
        assert_eq!(breach(&host), Some(LimitHit::Handles));
        let guest =
            wasmtime::format_err!("cannot allocate another handle: store handle limit exceeded");
        assert_eq!(breach(&guest), Some(LimitHit::Handles));
    }

    #[test]
    fn spent_hostcall_fuel_without_a_guest_frame_is_the_result_limit() {
        let err = wasmtime::format_err!(
            "too much data is being copied between the host and the guest: \
             fuel allocated for hostcalls has been exhausted"
        );
        assert_eq!(breach(&err), Some(LimitHit::Result));
    }

    #[test]
    fn other_errors_are_no_limit() {
        assert_eq!(breach(&wasmtime::format_err!("unreachable")), None);
        let other = wasmtime::Error::from(ResourceTableError::NotPresent);
        assert_eq!(breach(&other), None);
    }
}
