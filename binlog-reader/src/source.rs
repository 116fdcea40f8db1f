//! The replica connection to the local mysqld: reads the server's identity
//! and `gtid_executed`, registers as a replica, dumps the binlog from that
//! set with `COM_BINLOG_DUMP_GTID`, and turns the events into
//! [`SourceEvent`]s. Only GTID events are decoded; every other event is
//! skipped by its header. Silence longer than twice the heartbeat period
//! ends the connection; the caller reconnects with backoff.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use causeway_gtid::{Gtid, GtidSet, Uuid};
use futures_util::{FutureExt, StreamExt};
use mysql_async::binlog::events::{Event, EventData};
use mysql_async::binlog::EventType;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn, Opts, OptsBuilder, SslOpts};
use mysql_common::packets::{GnoInterval, Sid, Tag};
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::config::{MysqlConfig, TlsMode};
use crate::metrics::Metrics;
use crate::tracker::gtid_from_event;

/// Raw binlog event type of HEARTBEAT_LOG_EVENT_V2 (not typed by mysql_common).
const HEARTBEAT_V2: u8 = 0x29;

/// What the binlog connection tells the tracker.
#[derive(Debug)]
pub enum SourceEvent {
    /// A (re)connection: the server's identity and its visible set at the
    /// moment the dump starts.
    Connected {
        /// `@@server_uuid`.
        server_uuid: Uuid,
        /// `@@global.gtid_executed`.
        executed: GtidSet,
    },
    /// A GTID event from the binlog (not yet known to be visible).
    Gtid(Gtid, Instant),
    /// The server is alive (a heartbeat or any other event).
    Alive(Instant),
    /// The connection ended; the view stays as it is (a lower bound).
    Disconnected(String),
}

/// Why a binlog connection ended.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The server or the network failed.
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// No event and no heartbeat for too long.
    #[error("no event or heartbeat for {0:?}: connection presumed dead")]
    Silent(Duration),
    /// The server closed the stream.
    #[error("the server ended the binlog stream")]
    Closed,
    /// The server sent something that is not a valid GTID.
    #[error("bad data from the server: {0}")]
    Protocol(String),
    /// Connecting took too long.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The tracker is gone (shutting down).
    #[error("shutting down")]
    Shutdown,
}

/// Client options for the control and the binlog connections.
pub fn client_opts(cfg: &MysqlConfig, password: Option<&str>) -> Opts {
    let mut b = OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(password.map(str::to_string))
        .prefer_socket(false)
        .wait_timeout(None)
        .stmt_cache_size(0);
    b = match cfg.tls {
        TlsMode::Disabled => b,
        TlsMode::Required => b.ssl_opts(
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        TlsMode::VerifyIdentity => b.ssl_opts(SslOpts::default()),
    };
    b.into()
}

/// Connects with a timeout.
pub async fn connect(opts: &Opts, timeout: Duration) -> Result<Conn, SourceError> {
    tokio::time::timeout(timeout, Conn::new(opts.clone()))
        .await
        .map_err(|_| SourceError::ConnectTimeout(timeout))?
        .map_err(SourceError::from)
}

/// The server's UUID and `gtid_executed`, read in one statement.
pub async fn server_state(conn: &mut Conn) -> Result<(Uuid, GtidSet), SourceError> {
    let row: Option<(String, String)> = conn
        .query_first("SELECT @@server_uuid, @@global.gtid_executed")
        .await?;
    let (uuid, executed) = row.ok_or_else(|| SourceError::Protocol("no row".into()))?;
    let uuid = uuid
        .parse()
        .map_err(|e| SourceError::Protocol(format!("server_uuid {uuid:?}: {e}")))?;
    let executed = GtidSet::parse(&executed)
        .map_err(|e| SourceError::Protocol(format!("gtid_executed: {e}")))?;
    Ok((uuid, executed))
}

/// The `COM_BINLOG_DUMP_GTID` form of a set: intervals half-open.
fn dump_sids(set: &GtidSet) -> Vec<Sid<'static>> {
    set.iter()
        .map(|(source, intervals)| {
            let mut sid = Sid::new(*source.uuid().as_bytes()).with_intervals(
                intervals
                    .iter()
                    .map(|iv| {
                        let (start, end) = iv.to_half_open();
                        GnoInterval::new(start, end)
                    })
                    .collect(),
            );
            if let Some(tag) = source.tag() {
                if let Ok(tag) = Tag::new(tag.as_str().to_string()) {
                    sid = sid.with_tag(tag);
                }
            }
            sid
        })
        .collect()
}

/// One connection's life: identity, dump, events until it fails.
pub async fn stream_once(
    cfg: &MysqlConfig,
    opts: &Opts,
    server_id: u32,
    tx: &mpsc::Sender<SourceEvent>,
    metrics: &Metrics,
) -> Result<(), SourceError> {
    let mut conn = connect(opts, cfg.connect_timeout).await?;
    let (server_uuid, executed) = server_state(&mut conn).await?;
    let period_ns = cfg.heartbeat.as_nanos();
    conn.query_drop(format!(
        "SET @source_heartbeat_period = {period_ns}, @master_heartbeat_period = {period_ns}"
    ))
    .await?;
    let sids = dump_sids(&executed);
    info!(%server_uuid, executed = %executed, server_id, "dumping the binlog");
    tx.send(SourceEvent::Connected {
        server_uuid,
        executed,
    })
    .await
    .map_err(|_| SourceError::Shutdown)?;

    let request = BinlogStreamRequest::new(server_id)
        .with_gtid()
        .with_gtid_set(sids);
    let mut stream = conn.get_binlog_stream(request).await?;
    let silence = cfg.heartbeat * 2 + Duration::from_millis(100);
    loop {
        // The stream decodes each event as it yields it (see `contain`).
        let next = tokio::time::timeout(silence, AssertUnwindSafe(stream.next()).catch_unwind())
            .await
            .map_err(|_| SourceError::Silent(silence))?
            .map_err(|_| decoder_panicked())?;
        let event = match next {
            None => return Err(SourceError::Closed),
            Some(ev) => ev?,
        };
        let now = Instant::now();
        metrics.events_seen.inc();
        let item = match contain(|| classify(&event))? {
            Some(Item::Gtid(gtid)) => SourceEvent::Gtid(gtid, now),
            Some(Item::Heartbeat) => {
                metrics.heartbeats_seen.inc();
                SourceEvent::Alive(now)
            }
            None => continue,
        };
        tx.send(item).await.map_err(|_| SourceError::Shutdown)?;
    }
}

/// mysql_common 0.37 panics on some malformed events instead of failing:
/// `Event::read` unwraps a short read when an event's header claims more
/// bytes than its packet holds, and subtracts the footer's length from a
/// body that may be shorter (found by `binlog-reader/fuzz`). The decoding
/// runs inside mysql_async's stream, out of our reach, so the panic is
/// caught where the reader calls it and ends the connection like any other
/// bad data: the reader reconnects with backoff and keeps serving its view
/// (a lower bound) instead of dying.
fn contain<T>(f: impl FnOnce() -> Result<T, SourceError>) -> Result<T, SourceError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(decoder_panicked()))
}

fn decoder_panicked() -> SourceError {
    SourceError::Protocol("malformed binlog event: the decoder panicked".into())
}

/// What the reader takes from one binlog event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A transaction's GTID (untagged or tagged).
    Gtid(Gtid),
    /// A heartbeat (v1 or v2): the server is alive and has nothing new.
    Heartbeat,
}

/// Decodes only what the reader needs: GTID events (`GTID_LOG_EVENT`,
/// `GTID_TAGGED_LOG_EVENT`) and heartbeats; every other event (rows,
/// queries, compressed transaction payloads, rotations, ...) is recognised
/// by its header and skipped without decoding its body. (mysql_async's
/// stream still decompresses every Transaction_payload before yielding its
/// events, into a buffer of the size the event declares; see FUZZING.md.)
pub fn classify(event: &Event) -> Result<Option<Item>, SourceError> {
    let header = event.header();
    match header.event_type() {
        Ok(EventType::GTID_EVENT) | Ok(EventType::GTID_TAGGED_LOG_EVENT) => {
            let Some(EventData::GtidEvent(ev)) = event
                .read_data()
                .map_err(|e| SourceError::Protocol(format!("gtid event: {e}")))?
            else {
                return Err(SourceError::Protocol("gtid event without data".into()));
            };
            let tag = ev.tag().map(|t| t.as_str().to_string());
            let gtid = gtid_from_event(ev.sid(), tag.as_deref(), ev.gno())
                .map_err(|e| SourceError::Protocol(format!("gtid event: {e}")))?;
            Ok(Some(Item::Gtid(gtid)))
        }
        Ok(EventType::HEARTBEAT_EVENT) => Ok(Some(Item::Heartbeat)),
        _ if header.event_type_raw() == HEARTBEAT_V2 => Ok(Some(Item::Heartbeat)),
        other => {
            debug!(event_type = ?other, "skipped");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::binlog::{consts::BinlogVersion, BinlogFile};

    /// A binlog file written by the sandbox's MySQL 9.7.4 primary: plain
    /// transactions, a tagged one (`capture_tag`), a ZSTD-compressed one
    /// (Transaction_Payload), a multi-statement transaction and a DDL.
    const CAPTURE: &[u8] = include_bytes!("../testdata/capture.binlog");
    const UUID: &str = "5b29db5b-e58a-11f1-91d1-02fc00000001";

    #[test]
    fn real_binlog_capture_yields_every_gtid_in_order() {
        let file = BinlogFile::new(BinlogVersion::Version4, CAPTURE).unwrap();
        let mut gtids = Vec::new();
        let mut events = 0;
        let mut payloads = 0;
        for ev in file {
            let ev = ev.unwrap();
            events += 1;
            if ev.header().event_type() == Ok(EventType::TRANSACTION_PAYLOAD_EVENT) {
                payloads += 1;
            }
            if let Some(Item::Gtid(g)) = classify(&ev).unwrap() {
                gtids.push(g.to_string());
            }
        }
        let u = UUID;
        assert_eq!(
            gtids,
            vec![
                format!("{u}:1986"),
                format!("{u}:1987"),
                format!("{u}:capture_tag:1"),
                format!("{u}:1988"),
                format!("{u}:1989"),
                format!("{u}:1990"),
            ]
        );
        assert_eq!(payloads, 1, "the capture holds one compressed transaction");
        assert!(
            events > gtids.len() * 2,
            "other events were skipped, not lost"
        );
    }

    /// Found by the binlog_event fuzz target, minimised: the first packet
    /// of the stream is a bare 19-byte QUERY_EVENT header whose event_size
    /// says 0x33303030 (858 MB). mysql_common's `Event::read` allocates that
    /// much, then panics on the short read (`read_exact(..).unwrap()`); the
    /// reader must see an error, not die.
    #[test]
    fn event_longer_than_its_packet_is_an_error_not_a_panic() {
        use mysql_common::binlog::EventStreamReader;

        let packet: [u8; 20] = [
            0x00, // OK: an event follows
            0x00, 0x00, 0x00, 0x00, // timestamp
            0x02, // QUERY_EVENT
            0x00, 0xff, 0x07, 0x00, // server_id
            0x30, 0x30, 0x30, 0x33, // event_size
            0x91, 0x07, 0x65, 0xff, // log_pos
            0x05, 0x00, // flags
        ];
        let mut esr = EventStreamReader::new(BinlogVersion::Version4);
        let got = contain(|| {
            let ev = esr
                .read(&packet[1..])
                .map_err(|e| SourceError::Protocol(e.to_string()))?;
            ev.map_or(Ok(None), |ev| classify(&ev))
        });
        assert!(
            matches!(got, Err(SourceError::Protocol(ref m)) if m.contains("panicked")),
            "{got:?}"
        );
    }

    /// Found by the binlog_event fuzz target: the capture's compressed
    /// transaction with its compression type field (`02 01 00`) set to 4.
    /// mysql_async reads every Transaction_payload event to decompress it,
    /// and mysql_common's parser unwraps the unknown type and panics.
    #[test]
    fn unknown_payload_compression_is_an_error_not_a_panic() {
        use mysql_common::binlog::events::TransactionPayloadEvent;
        use mysql_common::binlog::EventStreamReader;

        const AT: usize = 1170; // the Transaction_payload event in CAPTURE
        let mut payload = CAPTURE[AT..AT + 196].to_vec();
        assert_eq!(payload[4], EventType::TRANSACTION_PAYLOAD_EVENT as u8);
        assert_eq!(&payload[19..22], &[0x02, 0x01, 0x00]);
        payload[21] = 4;

        let mut esr = EventStreamReader::new(BinlogVersion::Version4);
        esr.read(&CAPTURE[4..4 + 123]).unwrap().unwrap();
        let ev = esr.read(&payload[..]).unwrap().unwrap();
        assert_eq!(classify(&ev).unwrap(), None, "skipped by its header");
        let got = contain(|| {
            ev.read_event::<TransactionPayloadEvent<'_>>()
                .map_err(|e| SourceError::Protocol(e.to_string()))
        });
        assert!(
            matches!(got, Err(SourceError::Protocol(ref m)) if m.contains("panicked")),
            "{got:?}"
        );
    }
}
