//! The router's Prometheus metrics (served by
//! [`causeway_common::metrics_http`]).
//!
//! Every metric name is a constant below, with its meaning.

use crate::health::{Lag, ServerHealth, Status};
use causeway_common::metrics_http::Render;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Client connections accepted.
pub const CONNECTIONS: &str = "causeway_router_client_connections";
/// Client sessions open now (handshake included).
pub const SESSIONS: &str = "causeway_router_client_sessions";
/// Handshakes that failed (bad packets, timeouts, TLS, backend refusals).
pub const HANDSHAKE_FAILURES: &str = "causeway_router_handshake_failures";
/// Logins refused because of a wrong user or password.
pub const AUTH_FAILURES: &str = "causeway_router_auth_failures";
/// Backend connections that could not be opened.
pub const BACKEND_CONNECT_ERRORS: &str = "causeway_router_backend_connect_errors";
/// Client commands relayed.
pub const COMMANDS: &str = "causeway_router_commands";
/// Statements routed, by route (why: read, write, transaction,
/// session_state, hint, rule) and hostgroup.
pub const QUERIES: &str = "causeway_router_queries";
/// Errors sent to clients by the router itself, by kind (no_backend,
/// split_brain, backend_failed, hint, user_limit).
pub const ERRORS: &str = "causeway_router_errors";
/// Seconds from a statement's arrival to the end of its response.
pub const QUERY_SECONDS: &str = "causeway_router_query_seconds";
/// Configuration reloads put in force.
pub const RELOADS: &str = "causeway_router_reloads";
/// Configuration reloads refused (the running configuration stayed).
pub const RELOAD_FAILURES: &str = "causeway_router_reload_failures";
/// Backend connections per server and state (in_use, idle), at scrape time.
pub const POOL_CONNECTIONS: &str = "causeway_router_pool_connections";
/// Consecutive failed connects per server, at scrape time.
pub const POOL_CONNECT_FAILURES: &str = "causeway_router_pool_connect_failures";
/// 1 when the server is usable (not shunned), per server.
pub const SERVER_UP: &str = "causeway_router_server_up";
/// 1 when the monitor saw the server read-only (absent until known).
pub const SERVER_READ_ONLY: &str = "causeway_router_server_read_only";
/// Replication lag the monitor last saw, in seconds (absent for a source
/// or when unknown; -1 when replication is broken).
pub const SERVER_LAG_SECONDS: &str = "causeway_router_server_lag_seconds";
/// Health checks in a row the server did not answer, per server (what
/// `monitor.shun_after_errors` counts; refusals of the monitor's login or
/// queries are not counted here but in [`MONITOR_MISCONFIGURED`]).
pub const SERVER_CHECK_FAILURES: &str = "causeway_router_server_check_failures";
/// Per server: 1 while it refuses the health monitor's login or queries
/// (access denied, a missing privilege, a locked account: the monitor's
/// user, password or grants are wrong), else 0. Such a server is not
/// shunned: it serves by its configured role, unchecked, and each change is
/// logged at error level with the server, the user and MySQL's error.
pub const MONITOR_MISCONFIGURED: &str = "causeway_router_monitor_misconfigured";

/// Causal reads (reads in a reader hostgroup of a consistent pair), by
/// scope, where they were served (replica, primary) and why.
pub const CAUSAL_READS: &str = "causeway_router_causal_reads";
/// Seconds causal reads waited for a replica to catch up (only reads that
/// waited).
pub const CAUSAL_WAIT_SECONDS: &str = "causeway_router_causal_wait_seconds";
/// Per server: seconds since its view was last confirmed (the reader's
/// view age plus the time since it last spoke); absent until heard from.
pub const VIEW_AGE_SECONDS: &str = "causeway_router_view_age_seconds";
/// Per server: GTIDs the primary of its cluster is known to have and its
/// view lacks.
pub const VIEW_GTID_DISTANCE: &str = "causeway_router_view_gtid_distance";
/// Per server: 1 while the stream from its reader is up.
pub const READER_CONNECTED: &str = "causeway_router_reader_connected";
/// Per server: moving average of the seconds GTIDs other servers (its
/// cluster's primary) returned in OK packets took to reach its view (absent
/// until measured).
pub const VIEW_CATCH_UP_SECONDS: &str = "causeway_router_view_catch_up_seconds";
/// Per server: moving average of the seconds causal reads sent to it as the
/// writer took, from the statement sent to the first packet of the answer
/// (what waiting for a replica competes with).
pub const WRITER_READ_SECONDS: &str = "causeway_router_writer_read_seconds";

/// Labels of [`CAUSAL_READS`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CausalLabels {
    /// eventual, session, token, global.
    pub scope: &'static str,
    /// replica or primary.
    pub served: &'static str,
    /// caught_up, not_caught_up, slow_catch_up, no_healthy_replica,
    /// global_fetch_failed.
    pub reason: &'static str,
}

/// Labels of [`QUERIES`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Why it went there.
    pub route: &'static str,
    /// The hostgroup's name.
    pub hostgroup: String,
}

/// Labels of [`ERRORS`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// What went wrong.
    pub kind: &'static str,
}

/// All metrics of one router.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// See [`CONNECTIONS`].
    pub connections: Counter,
    /// See [`SESSIONS`].
    pub sessions: Gauge,
    /// See [`HANDSHAKE_FAILURES`].
    pub handshake_failures: Counter,
    /// See [`AUTH_FAILURES`].
    pub auth_failures: Counter,
    /// See [`BACKEND_CONNECT_ERRORS`].
    pub backend_connect_errors: Counter,
    /// See [`COMMANDS`].
    pub commands: Counter,
    /// See [`QUERIES`].
    pub queries: Family<RouteLabels, Counter>,
    /// See [`ERRORS`].
    pub errors: Family<KindLabels, Counter>,
    /// See [`QUERY_SECONDS`].
    pub query_seconds: Histogram,
    /// See [`RELOADS`].
    pub reloads: Counter,
    /// See [`RELOAD_FAILURES`].
    pub reload_failures: Counter,
    /// See [`CAUSAL_READS`].
    pub causal_reads: Family<CausalLabels, Counter>,
    /// See [`CAUSAL_WAIT_SECONDS`].
    pub causal_wait_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            connections: Counter::default(),
            sessions: Gauge::default(),
            handshake_failures: Counter::default(),
            auth_failures: Counter::default(),
            backend_connect_errors: Counter::default(),
            commands: Counter::default(),
            queries: Family::default(),
            errors: Family::default(),
            query_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            causal_reads: Family::default(),
            causal_wait_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        };
        let strip = |name: &'static str| name.strip_prefix("causeway_router_").unwrap_or(name);
        let r = registry.sub_registry_with_prefix("causeway_router");
        r.register(
            strip(CONNECTIONS),
            "client connections accepted",
            m.connections.clone(),
        );
        r.register(strip(SESSIONS), "client sessions open", m.sessions.clone());
        r.register(
            strip(HANDSHAKE_FAILURES),
            "failed handshakes",
            m.handshake_failures.clone(),
        );
        r.register(
            strip(AUTH_FAILURES),
            "refused logins",
            m.auth_failures.clone(),
        );
        r.register(
            strip(BACKEND_CONNECT_ERRORS),
            "backend connections that failed",
            m.backend_connect_errors.clone(),
        );
        r.register(
            strip(COMMANDS),
            "client commands relayed",
            m.commands.clone(),
        );
        r.register(
            strip(QUERIES),
            "statements routed, by route and hostgroup",
            m.queries.clone(),
        );
        r.register(
            strip(ERRORS),
            "errors the router sent to clients, by kind",
            m.errors.clone(),
        );
        r.register(
            strip(QUERY_SECONDS),
            "statement latency through the router",
            m.query_seconds.clone(),
        );
        r.register(strip(RELOADS), "configuration reloads", m.reloads.clone());
        r.register(
            strip(RELOAD_FAILURES),
            "configuration reloads refused",
            m.reload_failures.clone(),
        );
        r.register(
            strip(CAUSAL_READS),
            "causal reads by scope, where they were served and why",
            m.causal_reads.clone(),
        );
        r.register(
            strip(CAUSAL_WAIT_SECONDS),
            "time causal reads waited for a replica to catch up",
            m.causal_wait_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a causal read.
    pub fn causal(&self, scope: &'static str, served: &'static str, reason: &'static str) {
        self.causal_reads
            .get_or_create(&CausalLabels {
                scope,
                served,
                reason,
            })
            .inc();
    }

    /// Counts a statement routed by `route` to `hostgroup`.
    pub fn routed(&self, route: &'static str, hostgroup: &str) {
        self.queries
            .get_or_create(&RouteLabels {
                route,
                hostgroup: hostgroup.to_string(),
            })
            .inc();
    }

    /// Counts an error of `kind` sent to a client.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
    }
}

/// The registry plus what is read at scrape time: pools and server health.
#[derive(Debug)]
pub struct Live(pub std::sync::Arc<crate::Shared>);

impl Render for Live {
    fn render(&self) -> String {
        use std::fmt::Write;
        let shared = &self.0;
        let mut out = shared.metrics.registry.render();
        // The registry ends with "# EOF"; live gauges go before it.
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
        let pools = shared.pools.stats();
        gauge(
            &mut out,
            POOL_CONNECTIONS,
            "backend connections by server and state",
        );
        for p in &pools {
            let s = escape(&p.server);
            let _ = writeln!(
                out,
                "{POOL_CONNECTIONS}{{server=\"{s}\",state=\"in_use\"}} {}",
                p.open - p.idle.min(p.open)
            );
            let _ = writeln!(
                out,
                "{POOL_CONNECTIONS}{{server=\"{s}\",state=\"idle\"}} {}",
                p.idle
            );
        }
        gauge(
            &mut out,
            POOL_CONNECT_FAILURES,
            "consecutive failed connects by server",
        );
        for p in &pools {
            let _ = writeln!(
                out,
                "{POOL_CONNECT_FAILURES}{{server=\"{}\"}} {}",
                escape(&p.server),
                p.failures
            );
        }
        let health = shared.monitor.snapshot();
        let rt = shared.runtime();
        let unknown = ServerHealth::default();
        let rows: Vec<_> = rt
            .servers
            .iter()
            .map(|s| {
                (
                    escape(&s.name),
                    health.get(&s.name).unwrap_or(&unknown).clone(),
                )
            })
            .collect();
        gauge(
            &mut out,
            SERVER_UP,
            "1 when the server is usable (not shunned)",
        );
        for (s, h) in &rows {
            let up = u8::from(!matches!(h.status, Status::Shunned { .. }));
            let _ = writeln!(out, "{SERVER_UP}{{server=\"{s}\"}} {up}");
        }
        gauge(&mut out, SERVER_READ_ONLY, "1 when the server is read-only");
        for (s, h) in &rows {
            if let Some(ro) = h.read_only {
                let _ = writeln!(out, "{SERVER_READ_ONLY}{{server=\"{s}\"}} {}", u8::from(ro));
            }
        }
        gauge(
            &mut out,
            SERVER_LAG_SECONDS,
            "replication lag in seconds (-1: broken)",
        );
        for (s, h) in &rows {
            let lag = match h.lag {
                Lag::Seconds(n) => n as i64,
                Lag::Broken => -1,
                _ => continue,
            };
            let _ = writeln!(out, "{SERVER_LAG_SECONDS}{{server=\"{s}\"}} {lag}");
        }
        gauge(
            &mut out,
            SERVER_CHECK_FAILURES,
            "health checks in a row the server did not answer",
        );
        for (s, h) in &rows {
            let _ = writeln!(
                out,
                "{SERVER_CHECK_FAILURES}{{server=\"{s}\"}} {}",
                h.consecutive_errors
            );
        }
        gauge(
            &mut out,
            MONITOR_MISCONFIGURED,
            "1 while the server refuses the monitor's login or queries (a configuration error; not shunned)",
        );
        for (s, h) in &rows {
            let _ = writeln!(
                out,
                "{MONITOR_MISCONFIGURED}{{server=\"{s}\"}} {}",
                u8::from(h.misconfigured.is_some())
            );
        }
        render_views(shared, &mut out);
        out.push_str("# EOF\n");
        out
    }
}

/// The HELP and TYPE lines of a gauge rendered at scrape time.
fn gauge(out: &mut String, name: &str, help: &str) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// Per-server view gauges: age, distance from the cluster's primary,
/// reader stream up.
fn render_views(shared: &crate::Shared, out: &mut String) {
    use std::fmt::Write;
    let rt = shared.runtime();
    let members = rt.members(&shared.monitor.snapshot());
    let views = shared.views.read();
    let now = std::time::Instant::now();
    let seconds =
        |out: &mut String,
         name: &str,
         help: &str,
         of: &dyn Fn(&crate::views::ServerView) -> Option<std::time::Duration>| {
            gauge(out, name, help);
            for s in &rt.servers {
                if let Some(d) = views.get(&s.name).and_then(of) {
                    let _ = writeln!(
                        out,
                        "{name}{{server=\"{}\"}} {:.6}",
                        escape(&s.name),
                        d.as_secs_f64()
                    );
                }
            }
        };
    seconds(
        out,
        VIEW_AGE_SECONDS,
        "seconds since the server's view was confirmed",
        &|v| v.age(now),
    );
    gauge(
        out,
        VIEW_GTID_DISTANCE,
        "GTIDs the cluster's primary has that the server's view lacks",
    );
    for s in &rt.servers {
        let primary = members.members[s.cluster]
            .first()
            .and_then(|&p| views.get(&rt.servers[p].name));
        if let (Some(p), Some(v)) = (primary, views.get(&s.name)) {
            let _ = writeln!(
                out,
                "{VIEW_GTID_DISTANCE}{{server=\"{}\"}} {}",
                escape(&s.name),
                p.set.difference(&v.set).count()
            );
        }
    }
    seconds(
        out,
        VIEW_CATCH_UP_SECONDS,
        "moving average of the seconds the primary's GTIDs took to reach the server's view",
        &|v| v.catch_up,
    );
    seconds(
        out,
        WRITER_READ_SECONDS,
        "moving average of the seconds causal reads sent to the writer took",
        &|v| v.read_cost,
    );
    gauge(out, READER_CONNECTED, "1 while the reader stream is up");
    for s in rt.servers.iter().filter(|s| s.reader.is_some()) {
        let up = views.get(&s.name).is_some_and(|v| v.connected);
        let _ = writeln!(
            out,
            "{READER_CONNECTED}{{server=\"{}\"}} {}",
            escape(&s.name),
            u8::from(up)
        );
    }
}

/// A label value with `\\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of every metric.
impl Render for Metrics {
    fn render(&self) -> String {
        self.registry.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_metric() {
        let m = Metrics::new();
        m.auth_failures.inc();
        let text = m.render();
        for name in [
            CONNECTIONS,
            SESSIONS,
            HANDSHAKE_FAILURES,
            AUTH_FAILURES,
            BACKEND_CONNECT_ERRORS,
            COMMANDS,
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert!(
            text.contains("causeway_router_auth_failures_total 1"),
            "{text}"
        );
    }
}
