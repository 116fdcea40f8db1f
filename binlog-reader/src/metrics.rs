//! The reader's Prometheus metrics, and the endpoint that serves them.
//!
//! Every metric name is a constant below, with its meaning.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// Binlog events received from the server (all types).
pub const EVENTS_SEEN: &str = "causeway_reader_binlog_events";
/// Heartbeat events received from the server.
pub const HEARTBEATS_SEEN: &str = "causeway_reader_server_heartbeats";
/// GTIDs announced to subscribers (confirmed visible).
pub const GTIDS_ANNOUNCED: &str = "causeway_reader_gtids_announced";
/// Confirmation queries sent to the server.
pub const CONFIRM_QUERIES: &str = "causeway_reader_confirm_queries";
/// Confirmation answers that left some GTIDs invisible (the binlog was
/// ahead of the engine commit).
pub const CONFIRM_INVISIBLE: &str = "causeway_reader_confirm_still_invisible";
/// Seconds a confirmation query took, round trip.
pub const CONFIRM_SECONDS: &str = "causeway_reader_confirm_seconds";
/// Subscribers connected now (both protocols).
pub const SUBSCRIBERS: &str = "causeway_reader_subscribers";
/// Subscribers dropped (garbage, bad token, write timeout, over the limit).
pub const SUBSCRIBERS_DROPPED: &str = "causeway_reader_subscribers_dropped";
/// Fresh snapshots sent to subscribers that fell behind.
pub const SUBSCRIBERS_RESNAPSHOT: &str = "causeway_reader_subscriber_resnapshots";
/// Seconds from a GTID's arrival in the binlog to its announcement.
pub const VISIBILITY_DELAY: &str = "causeway_reader_visibility_delay_seconds";
/// Reconnections to the server.
pub const RECONNECTS: &str = "causeway_reader_reconnects";
/// Resets of the view (server uuid changed, executed set shrank).
pub const RESETS: &str = "causeway_reader_resets";
/// Age of the view in seconds: it holds every GTID the server binlogged
/// before now minus this age.
pub const VIEW_AGE: &str = "causeway_reader_view_age_seconds";
/// 1 while the binlog connection is up.
pub const CONNECTED: &str = "causeway_reader_connected";

/// All metrics of one reader.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// See [`EVENTS_SEEN`].
    pub events_seen: Counter,
    /// See [`HEARTBEATS_SEEN`].
    pub heartbeats_seen: Counter,
    /// See [`GTIDS_ANNOUNCED`].
    pub gtids_announced: Counter,
    /// See [`CONFIRM_QUERIES`].
    pub confirm_queries: Counter,
    /// See [`CONFIRM_INVISIBLE`].
    pub confirm_invisible: Counter,
    /// See [`CONFIRM_SECONDS`].
    pub confirm_seconds: Histogram,
    /// See [`SUBSCRIBERS`].
    pub subscribers: Gauge,
    /// See [`SUBSCRIBERS_DROPPED`].
    pub subscribers_dropped: Counter,
    /// See [`SUBSCRIBERS_RESNAPSHOT`].
    pub subscribers_resnapshot: Counter,
    /// See [`VISIBILITY_DELAY`].
    pub visibility_delay: Histogram,
    /// See [`RECONNECTS`].
    pub reconnects: Counter,
    /// See [`RESETS`].
    pub resets: Counter,
    /// See [`VIEW_AGE`].
    pub view_age: Gauge<f64, AtomicU64>,
    /// See [`CONNECTED`].
    pub connected: Gauge,
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
        // 20 µs .. ~0.5 s, 25 % apart: fine enough for p50/p99 of a
        // sub-millisecond delay.
        let delay_buckets =
            prometheus_client::metrics::histogram::exponential_buckets(0.000_020, 1.25, 46);
        let m = Metrics {
            registry: Registry::default(),
            events_seen: Counter::default(),
            heartbeats_seen: Counter::default(),
            gtids_announced: Counter::default(),
            confirm_queries: Counter::default(),
            confirm_invisible: Counter::default(),
            confirm_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.000_020, 1.25, 46),
            ),
            subscribers: Gauge::default(),
            subscribers_dropped: Counter::default(),
            subscribers_resnapshot: Counter::default(),
            visibility_delay: Histogram::new(delay_buckets),
            reconnects: Counter::default(),
            resets: Counter::default(),
            view_age: Gauge::default(),
            connected: Gauge::default(),
        };
        let strip = |name: &'static str| name.strip_prefix("causeway_reader_").unwrap_or(name);
        let reader = registry.sub_registry_with_prefix("causeway_reader");
        reader.register(
            strip(EVENTS_SEEN),
            "binlog events received",
            m.events_seen.clone(),
        );
        reader.register(
            strip(HEARTBEATS_SEEN),
            "server heartbeats received",
            m.heartbeats_seen.clone(),
        );
        reader.register(
            strip(GTIDS_ANNOUNCED),
            "GTIDs announced as visible",
            m.gtids_announced.clone(),
        );
        reader.register(
            strip(CONFIRM_QUERIES),
            "visibility confirmation queries",
            m.confirm_queries.clone(),
        );
        reader.register(
            strip(CONFIRM_INVISIBLE),
            "confirmation answers with GTIDs not yet visible",
            m.confirm_invisible.clone(),
        );
        reader.register(
            strip(CONFIRM_SECONDS),
            "confirmation query round trip",
            m.confirm_seconds.clone(),
        );
        reader.register(
            strip(SUBSCRIBERS),
            "connected subscribers",
            m.subscribers.clone(),
        );
        reader.register(
            strip(SUBSCRIBERS_DROPPED),
            "subscribers dropped",
            m.subscribers_dropped.clone(),
        );
        reader.register(
            strip(SUBSCRIBERS_RESNAPSHOT),
            "snapshots resent to lagging subscribers",
            m.subscribers_resnapshot.clone(),
        );
        reader.register(
            strip(VISIBILITY_DELAY),
            "binlog arrival to announcement",
            m.visibility_delay.clone(),
        );
        reader.register(
            strip(RECONNECTS),
            "reconnections to the server",
            m.reconnects.clone(),
        );
        reader.register(strip(RESETS), "view resets", m.resets.clone());
        reader.register(
            strip(VIEW_AGE),
            "age of the announced view",
            m.view_age.clone(),
        );
        reader.register(
            strip(CONNECTED),
            "binlog connection up",
            m.connected.clone(),
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

/// Serves `GET /metrics` (any path, in fact) over plain HTTP/1.1 until the
/// task is dropped. One request per connection; bounded request size.
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
        m.gtids_announced.inc_by(3);
        m.visibility_delay.observe(0.0004);
        m.view_age.set(0.25);
        let text = m.render();
        for name in [
            EVENTS_SEEN,
            HEARTBEATS_SEEN,
            GTIDS_ANNOUNCED,
            CONFIRM_QUERIES,
            CONFIRM_INVISIBLE,
            CONFIRM_SECONDS,
            SUBSCRIBERS,
            SUBSCRIBERS_DROPPED,
            SUBSCRIBERS_RESNAPSHOT,
            VISIBILITY_DELAY,
            RECONNECTS,
            RESETS,
            VIEW_AGE,
            CONNECTED,
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        assert!(
            text.contains("causeway_reader_gtids_announced_total 3"),
            "{text}"
        );
        assert!(
            text.contains("causeway_reader_view_age_seconds 0.25"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn endpoint_answers_http() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let m = Arc::new(Metrics::new());
        m.reconnects.inc();
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
            resp.contains("causeway_reader_reconnects_total 1"),
            "{resp}"
        );
    }
}
