//! The reader's Prometheus metrics (served by
//! [`causeway_common::metrics_http`]).
//!
//! Every metric name is a constant below, with its meaning.

use std::sync::atomic::AtomicU64;

use causeway_common::metrics_http::Render;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
/// Always 1, labelled `version`, `commit` and `profile`: what this reader
/// was built from (as `--version` prints it).
pub const BUILD_INFO: &str = "causeway_reader_build_info";

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
        crate::BUILD.register(reader);
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
            BUILD_INFO,
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
}
