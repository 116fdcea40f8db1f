//! The router's Prometheus metrics (served by
//! [`causeway_common::metrics_http`]).
//!
//! Every metric name is a constant below, with its meaning.

use causeway_common::metrics_http::Render;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Client connections accepted.
pub const CONNECTIONS: &str = "causeway_router_client_connections";
/// Client sessions open now (logged in; logins in progress are
/// `causeway_router_logins_in_progress`).
pub const SESSIONS: &str = "causeway_router_client_sessions";
/// Logins whose answer was delayed after repeated failures of the same
/// user from the same address (`frontend.failed_login_threshold`).
pub const LOGIN_DELAYS: &str = "causeway_router_login_delays";
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
/// 1 while the router is connected to etcd (configuration from etcd only).
pub const FLEET_ETCD_CONNECTED: &str = "causeway_router_fleet_etcd_connected";
/// The etcd revision of the configuration document in force.
pub const FLEET_CONFIG_REVISION: &str = "causeway_router_fleet_config_revision";
/// Writes to etcd, by kind (registration, acknowledged, keepalive).
pub const FLEET_ETCD_WRITES: &str = "causeway_router_fleet_etcd_writes";
/// Live routers in the fleet view (this one included).
pub const FLEET_ROUTERS: &str = "causeway_router_fleet_routers";
/// Statements that waited for a writer (a failover, a switchover), by how
/// the wait ended: `served` (a writer came), `timeout` (the cluster's
/// window ran out), `full` (its `max_waiting` statements waited already).
pub const WRITER_WAITS: &str = "causeway_router_writer_waits";
/// Statements a writer refused because it is read-only (ERR 1290 / 1836)
/// that the router ran again on the new writer instead of failing them.
pub const READ_ONLY_RETRIES: &str = "causeway_router_read_only_retries";
/// Plain reads whose backend connection broke (or whose server was found
/// unreachable) before they answered anything, run once more elsewhere.
pub const READ_RETRIES: &str = "causeway_router_read_retries";
/// Statements waiting for a writer now, per writer hostgroup (at scrape
/// time).
pub const WRITER_WAITING: &str = "causeway_router_writer_waiting";
/// Per server: 1 when it is its cluster's elected writer, at scrape time.
pub const SERVER_WRITER: &str = "causeway_router_server_writer";
/// Per server: 1 while it is fenced (writable but not the writer: it gets
/// no statement), at scrape time.
pub const SERVER_FENCED: &str = "causeway_router_server_fenced";
/// Per writer hostgroup: GTIDs the router acknowledged to clients that a
/// writer lacked when `missing_acknowledged = "accept"` took it (lost,
/// counted since the router started), plus, while writes wait for a
/// catching-up server, what it still lacks; at scrape time.
pub const ACKNOWLEDGED_MISSING: &str = "causeway_router_acknowledged_missing_gtids";
/// Per writer hostgroup: intervals of the set of GTIDs the router
/// acknowledged (what `router` reads need, and failover), at scrape time.
pub const ACKNOWLEDGED_INTERVALS: &str = "causeway_router_acknowledged_intervals";
/// Per writer hostgroup: users with an acknowledged set of their own (what
/// `user` reads need; at most 10,000), at scrape time.
pub const ACKNOWLEDGED_USERS: &str = "causeway_router_acknowledged_users";
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

/// Query log lines dropped because the log's writer was behind (a session
/// never waits for it).
pub const QUERY_LOG_DROPPED: &str = "causeway_router_query_log_dropped";

/// Sessions holding a backend connection for a reason (transaction,
/// temp_tables, named_locks, ...), by reason; a session counts once per
/// reason.
pub const PINNED_SESSIONS: &str = "causeway_router_pinned_sessions";
/// Seconds statements waited in a pool's queue for a backend connection
/// (only those that waited).
pub const POOL_WAIT_SECONDS: &str = "causeway_router_pool_wait_seconds";
/// Statements that waited for a backend connection in vain (ERR 9004).
pub const POOL_TIMEOUTS: &str = "causeway_router_pool_timeouts";
/// Backend connections opened (logins).
pub const BACKEND_OPENED: &str = "causeway_router_backend_connections_opened";
/// Statements one session ran on a backend connection before giving it
/// back.
pub const STATEMENTS_PER_BORROW: &str = "causeway_router_statements_per_borrow";
/// Session settings replayed on a connection before a statement (one round
/// trip each).
pub const STATE_REPLAYS: &str = "causeway_router_state_replays";
/// Read-backs of session state (user variables, LAST_INSERT_ID(), ...)
/// before a connection left its session.
pub const STATE_CAPTURES: &str = "causeway_router_state_captures";
/// Backend connections reset (COM_RESET_CONNECTION) before going back to
/// their pool, because a session left user variables or pinned state on them.
pub const BACKEND_RESETS: &str = "causeway_router_backend_resets";
/// Prepared statements closed on a backend because its connection's cache
/// was full (`backend.max_prepared_statements`).
pub const PREPARED_EVICTED: &str = "causeway_router_prepared_statements_evicted";
/// Requests waiting for a backend connection now, per server.
pub const POOL_WAITING: &str = "causeway_router_pool_waiting";
/// Always 1, labelled `version`, `commit` and `profile`: what this router
/// was built from (as `--version` prints it).
pub const BUILD_INFO: &str = "causeway_router_build_info";

/// Labels of [`PINNED_SESSIONS`].
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why (see `session::state::PinReason`).
    pub reason: &'static str,
}

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
    /// See [`LOGIN_DELAYS`].
    pub login_delays: Counter,
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
    /// See [`WRITER_WAITS`].
    pub writer_waits: Family<KindLabels, Counter>,
    /// See [`READ_ONLY_RETRIES`].
    pub read_only_retries: Counter,
    /// See [`READ_RETRIES`].
    pub read_retries: Counter,
    /// See [`CAUSAL_READS`].
    pub causal_reads: Family<CausalLabels, Counter>,
    /// See [`CAUSAL_WAIT_SECONDS`].
    pub causal_wait_seconds: Histogram,
    /// See [`PINNED_SESSIONS`].
    pub pinned_sessions: Family<ReasonLabels, Gauge>,
    /// See [`POOL_WAIT_SECONDS`].
    pub pool_wait_seconds: Histogram,
    /// See [`POOL_TIMEOUTS`].
    pub pool_timeouts: Counter,
    /// See [`BACKEND_OPENED`].
    pub backend_opened: Counter,
    /// See [`STATEMENTS_PER_BORROW`].
    pub statements_per_borrow: Histogram,
    /// See [`STATE_REPLAYS`].
    pub replays: Counter,
    /// See [`STATE_CAPTURES`].
    pub captures: Counter,
    /// See [`PREPARED_EVICTED`].
    pub statements_evicted: Counter,
    /// See [`BACKEND_RESETS`].
    pub resets: Counter,
    /// See [`QUERY_LOG_DROPPED`].
    pub query_log_dropped: Counter,
    /// See [`FLEET_ETCD_CONNECTED`].
    pub fleet_etcd_connected: Gauge,
    /// See [`FLEET_CONFIG_REVISION`].
    pub fleet_config_revision: Gauge,
    /// See [`FLEET_ETCD_WRITES`].
    pub fleet_etcd_writes: Family<KindLabels, Counter>,
    /// See [`FLEET_ROUTERS`].
    pub fleet_routers: Gauge,
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
            login_delays: Counter::default(),
            backend_connect_errors: Counter::default(),
            commands: Counter::default(),
            queries: Family::default(),
            errors: Family::default(),
            query_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            writer_waits: Family::default(),
            read_only_retries: Counter::default(),
            read_retries: Counter::default(),
            causal_reads: Family::default(),
            causal_wait_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            pinned_sessions: Family::default(),
            pool_wait_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
            pool_timeouts: Counter::default(),
            backend_opened: Counter::default(),
            statements_per_borrow: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            replays: Counter::default(),
            captures: Counter::default(),
            statements_evicted: Counter::default(),
            resets: Counter::default(),
            query_log_dropped: Counter::default(),
            fleet_etcd_connected: Gauge::default(),
            fleet_config_revision: Gauge::default(),
            fleet_etcd_writes: Family::default(),
            fleet_routers: Gauge::default(),
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
            strip(LOGIN_DELAYS),
            "login answers delayed after repeated failures",
            m.login_delays.clone(),
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
            strip(FLEET_ETCD_CONNECTED),
            "1 while connected to etcd (configuration from etcd)",
            m.fleet_etcd_connected.clone(),
        );
        r.register(
            strip(FLEET_CONFIG_REVISION),
            "etcd revision of the configuration document in force",
            m.fleet_config_revision.clone(),
        );
        r.register(
            strip(FLEET_ETCD_WRITES),
            "writes to etcd, by kind",
            m.fleet_etcd_writes.clone(),
        );
        r.register(
            strip(FLEET_ROUTERS),
            "live routers in the fleet view",
            m.fleet_routers.clone(),
        );
        r.register(
            strip(RELOAD_FAILURES),
            "configuration reloads refused",
            m.reload_failures.clone(),
        );
        r.register(
            strip(WRITER_WAITS),
            "statements that waited for a writer, by outcome",
            m.writer_waits.clone(),
        );
        r.register(
            strip(READ_RETRIES),
            "plain reads run once more elsewhere after their backend broke",
            m.read_retries.clone(),
        );
        r.register(
            strip(READ_ONLY_RETRIES),
            "statements refused for read_only and run again on the new writer",
            m.read_only_retries.clone(),
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
        r.register(
            strip(PINNED_SESSIONS),
            "sessions holding a backend connection, by reason",
            m.pinned_sessions.clone(),
        );
        r.register(
            strip(POOL_WAIT_SECONDS),
            "time statements waited for a backend connection",
            m.pool_wait_seconds.clone(),
        );
        r.register(
            strip(POOL_TIMEOUTS),
            "statements that waited for a backend connection in vain",
            m.pool_timeouts.clone(),
        );
        r.register(
            strip(BACKEND_OPENED),
            "backend connections opened",
            m.backend_opened.clone(),
        );
        r.register(
            strip(STATEMENTS_PER_BORROW),
            "statements a session ran on a backend connection before giving it back",
            m.statements_per_borrow.clone(),
        );
        r.register(
            strip(STATE_REPLAYS),
            "session settings replayed on a backend connection",
            m.replays.clone(),
        );
        r.register(
            strip(STATE_CAPTURES),
            "session state read back before a connection left its session",
            m.captures.clone(),
        );
        r.register(
            strip(PREPARED_EVICTED),
            "prepared statements closed on a backend to keep its cache bounded",
            m.statements_evicted.clone(),
        );
        r.register(
            strip(BACKEND_RESETS),
            "backend connections reset before going back to their pool",
            m.resets.clone(),
        );
        // Every outcome shows from the first scrape (as 0): a family
        // without a series is left out of the exposition, and dashboards
        // and alerts on a rate need the series before the first failover.
        for kind in ["served", "timeout", "full"] {
            let _ = m.writer_waits.get_or_create(&KindLabels { kind });
        }
        r.register(
            strip(QUERY_LOG_DROPPED),
            "query log lines dropped because its writer was behind",
            m.query_log_dropped.clone(),
        );
        crate::BUILD.register(r);
        Metrics { registry, ..m }
    }

    /// The gauge of sessions pinned for `reason`.
    pub fn pinned(&self, reason: crate::session::state::PinReason) -> Gauge {
        self.pinned_sessions
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .clone()
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

    /// The counter of statements routed by `route` to `hostgroup` (taken
    /// once per configuration, so counting a statement formats nothing).
    pub fn route_counter(&self, route: &'static str, hostgroup: &str) -> Counter {
        self.queries
            .get_or_create(&RouteLabels {
                route,
                hostgroup: hostgroup.to_string(),
            })
            .clone()
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

impl Metrics {
    /// The current values of the registry's series called `series` (with
    /// its suffix: `causeway_router_queries_total`), each with its labels:
    /// read back from the exposition, so every label set counted so far is
    /// there (the dashboard's read routing; once a second, not per
    /// statement).
    pub fn values(&self, series: &str) -> Vec<Series> {
        parse_series(&self.render(), series)
    }

    /// [`Metrics::values`] of several series, from one rendering.
    pub fn values_of<const N: usize>(&self, series: [&str; N]) -> [Vec<Series>; N] {
        let text = self.render();
        series.map(|name| parse_series(&text, name))
    }
}

/// One series of the text exposition: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label names and values, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Series {
    /// The value of label `name` (empty when absent).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The series called `name` in Prometheus text `text` (pure; lines that do
/// not parse are skipped).
pub fn parse_series(text: &str, name: &str) -> Vec<Series> {
    text.lines()
        .filter_map(|line| series_after_name(line.strip_prefix(name)?))
        .collect()
}

/// Every series of Prometheus text `text`, with its metric name (pure;
/// comments and lines that do not parse are skipped).
pub fn parse_all_series(text: &str) -> Vec<(String, Series)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let end = line.find(['{', ' '])?;
            let series = series_after_name(&line[end..])?;
            Some((line[..end].to_string(), series))
        })
        .collect()
}

/// The labels and value of a series line, after its metric name.
fn series_after_name(rest: &str) -> Option<Series> {
    let (labels, value) = match rest.strip_prefix('{') {
        Some(inner) => parse_labels(inner)?,
        None if rest.starts_with(' ') => (Vec::new(), rest),
        None => return None,
    };
    let value = value.split_whitespace().next()?.parse().ok()?;
    Some(Series { labels, value })
}

/// `k="v",...}` and what follows the closing brace.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches(',');
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        s = &rest[end + 1..];
    }
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
    fn series_are_read_back_with_their_labels() {
        let m = Metrics::new();
        m.causal("session", "replica", "caught_up");
        m.causal("session", "replica", "caught_up");
        m.causal("token", "primary", "not_caught_up");
        m.routed("read", "we\"ird\\name");
        let reads = m.values("causeway_router_causal_reads_total");
        assert_eq!(reads.len(), 2, "{reads:?}");
        let replica = reads
            .iter()
            .find(|s| s.label("served") == "replica")
            .unwrap();
        assert_eq!(replica.value, 2.0);
        assert_eq!(replica.label("scope"), "session");
        assert_eq!(replica.label("nothing"), "");
        let [routed, none] = m.values_of(["causeway_router_queries_total", "nothing_total"]);
        assert!(none.is_empty());
        assert_eq!(routed[0].label("hostgroup"), "we\"ird\\name");
        assert_eq!(routed[0].value, 1.0);
        let plain = parse_series(
            "x_total 3\nx_total_other 4\nx_total{a=\"1\"} 5 1700\n",
            "x_total",
        );
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[0].value, 3.0);
        assert_eq!(plain[1].value, 5.0);
        assert!(parse_series("x_total{a=\"1} 5\n", "x_total").is_empty());
    }

    #[test]
    fn render_names_every_metric() {
        let m = Metrics::new();
        m.auth_failures.inc();
        let text = m.render();
        for name in [
            CONNECTIONS,
            SESSIONS,
            BUILD_INFO,
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
