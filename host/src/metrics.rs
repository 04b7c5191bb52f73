//! Prometheus metrics, kept in process and rendered in the text exposition
//! format (`/metrics`): plugin calls, their errors, latency, the egress
//! requests and the WASI operations (sockets, files) the host refused, per
//! plugin and connection; and the management API's requests per route and
//! status.
//!
//! Calls are recorded at the service layer ([`crate::service::Airlock`]), so a call counts the
//! same whether it came from the API, the CLI or an embedding application;
//! refused WASI operations by the runtime when each call ends (however it
//! ends), into the metrics its [`RuntimeConfig`](crate::RuntimeConfig) names.
//! Label sets are bounded: plugins and connections are what the store holds,
//! routes are the router's templates (never raw paths).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct CallSeries {
    calls: u64,
    errors: u64,
    egress_denials: u64,
    wasi_denials: u64,
    /// Cumulative counts per bucket of `BUCKETS`.
    buckets: [u64; BUCKETS.len()],
    seconds: f64,
}

/// How a recorded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The call returned a result.
    Ok,
    /// Failed; `egress_denials` outbound requests were refused by the host.
    Error {
        /// Outbound requests the host refused during the call (0 when the
        /// call failed before or outside the plugin).
        egress_denials: usize,
    },
}

/// The process's metrics. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    calls: Mutex<BTreeMap<(String, String), CallSeries>>,
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl Metrics {
    /// No series yet: each appears with its first recorded call or request.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record one plugin call of `plugin` through `connection` (the
    /// connection's name, used as the label value).
    pub fn record_call(
        &self,
        plugin: &str,
        connection: &str,
        duration: Duration,
        outcome: CallOutcome,
    ) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let s = calls
            .entry((plugin.to_string(), connection.to_string()))
            .or_default();
        s.calls += 1;
        if let CallOutcome::Error { egress_denials } = outcome {
            s.errors += 1;
            s.egress_denials += egress_denials as u64;
        }
        let secs = duration.as_secs_f64();
        s.seconds += secs;
        for (bound, count) in BUCKETS.iter().zip(s.buckets.iter_mut()) {
            if secs <= *bound {
                *count += 1;
            }
        }
    }

    /// Record `count` WASI operations (socket, name lookup, file) the host
    /// refused during one call of `plugin` through `connection`.
    pub fn record_wasi_denials(&self, plugin: &str, connection: &str, count: u64) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .entry((plugin.to_string(), connection.to_string()))
            .or_default()
            .wasi_denials += count;
    }

    /// Record one management-API request: `route` is the matched template.
    pub fn record_http(&self, method: &str, route: &str, status: u16) {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        *http
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut out = String::new();
        let labels = |(p, c): &(String, String)| {
            format!("plugin=\"{}\",connection=\"{}\"", escape(p), escape(c))
        };
        let mut counter = |name: &str, help: &str, get: &dyn Fn(&CallSeries) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, s) in &calls {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(k), get(s));
            }
        };
        counter(
            "airlock_calls_total",
            "Plugin calls, by plugin and connection.",
            &|s| s.calls,
        );
        counter(
            "airlock_call_errors_total",
            "Plugin calls that failed, by plugin and connection.",
            &|s| s.errors,
        );
        counter(
            "airlock_egress_denials_total",
            "Outbound requests the host refused during calls, by plugin and connection.",
            &|s| s.egress_denials,
        );
        counter(
            "airlock_wasi_denials_total",
            "WASI operations (sockets, name lookups, files) the host refused during calls, by plugin and connection.",
            &|s| s.wasi_denials,
        );
        let name = "airlock_call_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Plugin call latency, by plugin and connection.\n# TYPE {name} histogram"
        );
        for (k, s) in &calls {
            let l = labels(k);
            for (bound, count) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(out, "{name}_bucket{{{l},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", s.calls);
            let _ = writeln!(out, "{name}_sum{{{l}}} {}", s.seconds);
            let _ = writeln!(out, "{name}_count{{{l}}} {}", s.calls);
        }
        let http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        let name = "airlock_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Management API requests, by method, route and status.\n# TYPE {name} counter"
        );
        for ((method, route, status), n) in http.iter() {
            let _ = writeln!(
                out,
                "{name}{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        out
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_errors_denials_and_buckets_are_counted_per_connection() {
        let m = Metrics::new();
        m.record_call("sn", "prod", Duration::from_millis(20), CallOutcome::Ok);
        m.record_call(
            "sn",
            "prod",
            Duration::from_secs(3),
            CallOutcome::Error { egress_denials: 2 },
        );
        m.record_call("sn", "we\"ird", Duration::from_millis(1), CallOutcome::Ok);
        let text = m.render();
        assert!(text.contains("airlock_calls_total{plugin=\"sn\",connection=\"prod\"} 2"));
        assert!(text.contains("airlock_call_errors_total{plugin=\"sn\",connection=\"prod\"} 1"));
        assert!(text.contains("airlock_egress_denials_total{plugin=\"sn\",connection=\"prod\"} 2"));
        assert!(text.contains(
            "airlock_call_duration_seconds_bucket{plugin=\"sn\",connection=\"prod\",le=\"0.025\"} 1"
        ));
        assert!(text.contains(
            "airlock_call_duration_seconds_bucket{plugin=\"sn\",connection=\"prod\",le=\"5\"} 2"
        ));
        assert!(text.contains("connection=\"we\\\"ird\""));
        assert!(text.contains("airlock_wasi_denials_total{plugin=\"sn\",connection=\"prod\"} 0"));
    }

    #[test]
    fn wasi_denials_add_up_per_connection() {
        let m = Metrics::new();
        m.record_call("py", "c", Duration::from_millis(1), CallOutcome::Ok);
        m.record_wasi_denials("py", "c", 2);
        m.record_wasi_denials("py", "c", 3);
        let text = m.render();
        assert!(
            text.contains("# TYPE airlock_wasi_denials_total counter"),
            "{text}"
        );
        assert!(
            text.contains("airlock_wasi_denials_total{plugin=\"py\",connection=\"c\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("airlock_calls_total{plugin=\"py\",connection=\"c\"} 1"),
            "{text}"
        );
    }
}
