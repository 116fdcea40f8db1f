//! The router's Prometheus metrics (served by
//! [`causeway_common::metrics_http`]).
//!
//! Every metric name is a constant below, with its meaning.

use causeway_common::metrics_http::Render;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
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
        Metrics { registry, ..m }
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
