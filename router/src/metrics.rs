//! The router's Prometheus metrics, and the endpoint that serves them.
//!
//! Every metric name is a constant below, with its meaning.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` (any path) over plain HTTP/1.1 until the task is
/// dropped. One request per connection; bounded request size.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (mut sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while n < buf.len() {
                    let k = sock.read(&mut buf[n..]).await?;
                    if k == 0 {
                        break;
                    }
                    n += k;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                debug!(%peer, "metrics request not read");
                return;
            }
            let body = metrics.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Binds the endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
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

    #[tokio::test]
    async fn endpoint_answers_http() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        m.connections.inc();
        let task = tokio::spawn(serve(listener, m));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        task.abort();
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        assert!(
            resp.contains("causeway_router_client_connections_total 1"),
            "{resp}"
        );
    }
}
