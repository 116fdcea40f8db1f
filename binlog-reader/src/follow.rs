//! The reader's engine: runs the binlog connection (reconnecting with
//! backoff), feeds the [`Tracker`], confirms pending GTIDs against the
//! server once per flush tick, and publishes to the [`Hub`].
//!
//! Confirmation pacing: when nothing was confirmed during the last flush
//! interval, pending GTIDs are confirmed at once (an isolated write is
//! announced one round trip after its binlog event); under load, at most one
//! confirmation query per flush interval, each covering everything pending.
//! One query is in flight at most, so the query rate never exceeds one per
//! round trip; with `flush_interval = 0` that is the only pacing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_gtid::{GtidSet, Uuid};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tracing::{debug, warn};

use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::source::{self, SourceError, SourceEvent};
use crate::tracker::{Confirmed, ResetReason, Tracker};
use causeway_gtid::delta::binary::ResetReason as BinaryReason;

/// How often the server's identity and `gtid_executed` are re-read to
/// detect resets that the binlog stream does not show.
const AUDIT_INTERVAL: Duration = Duration::from_secs(1);

/// How long one confirmation may wait on the server for pending GTIDs to
/// become visible. A GTID arrives from the binlog before its engine commit
/// (usually well under a millisecond before); waiting for that commit inside
/// the query announces it the moment it lands, instead of answering "not
/// yet" and asking again a flush interval later. The bound keeps a commit
/// that takes longer (a stall) from holding back the GTIDs already visible:
/// after it the answer is partial, as without the wait.
const CONFIRM_WAIT: Duration = Duration::from_millis(20);

/// Runs the binlog connection forever, reconnecting with exponential backoff.
pub async fn run_source(
    cfg: Config,
    opts: Opts,
    server_id: u32,
    tx: mpsc::Sender<SourceEvent>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = cfg.mysql.reconnect_min;
    loop {
        let started = Instant::now();
        let result = source::stream_once(&cfg.mysql, &opts, server_id, &tx, &metrics).await;
        metrics.connected.set(0);
        let reason = match result {
            Ok(()) => "stream ended".to_string(),
            Err(SourceError::Shutdown) => return,
            Err(e) => e.to_string(),
        };
        warn!(reason = %reason, "binlog connection lost; reconnecting");
        if tx.send(SourceEvent::Disconnected(reason)).await.is_err() {
            return;
        }
        metrics.reconnects.inc();
        if started.elapsed() > cfg.mysql.reconnect_max * 2 {
            backoff = cfg.mysql.reconnect_min;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.mysql.reconnect_max);
    }
}

/// A question for the control connection.
#[derive(Debug)]
enum Ask {
    /// Which of these pending GTIDs are not in `gtid_executed` yet? (The
    /// view's generation is echoed back: an answer that predates a reset is
    /// ignored.)
    Confirm(GtidSet, u64),
    /// The server's UUID and whole `gtid_executed` (reset detection).
    Audit,
}

/// Its answer.
#[derive(Debug)]
enum Answer {
    Confirm {
        asked: GtidSet,
        generation: u64,
        still_invisible: Result<GtidSet, SourceError>,
        took: Duration,
    },
    Audit(Result<(Uuid, GtidSet), SourceError>),
}

/// The control connection: a task of its own, so that a hung server never
/// stops the tracker loop (heartbeats to subscribers keep flowing and say
/// how stale the view is getting). One question at a time, each bounded by
/// `timeout`; the connection is dropped and reopened after any failure.
async fn control_task(
    opts: Opts,
    timeout: Duration,
    mut asks: mpsc::Receiver<Ask>,
    answers: mpsc::Sender<Answer>,
) {
    let mut conn: Option<Conn> = None;
    while let Some(ask) = asks.recv().await {
        let started = Instant::now();
        let answer = match ask {
            Ask::Confirm(asked, generation) => {
                // A formatted GTID set holds only hex digits, '-', ':', ','
                // and lowercase tag characters: safe inside quotes. The wait
                // (see CONFIRM_WAIT) is only a server-side pause until the
                // commits land; what is announced is decided by
                // GTID_SUBTRACT against gtid_executed, read after it.
                let q = format!(
                    "SELECT WAIT_FOR_EXECUTED_GTID_SET('{asked}', {:.3}), \
                     GTID_SUBTRACT('{asked}', @@global.gtid_executed)",
                    CONFIRM_WAIT.as_secs_f64()
                );
                let res = bounded(&mut conn, &opts, timeout, |c| {
                    Box::pin(async move {
                        let row: Option<(Option<i64>, String)> = c.query_first(q).await?;
                        let (_, text) = row.ok_or_else(|| {
                            SourceError::Protocol("GTID_SUBTRACT returned no row".into())
                        })?;
                        GtidSet::parse(&text).map_err(|e| {
                            SourceError::Protocol(format!("GTID_SUBTRACT answered {text:?}: {e}"))
                        })
                    })
                })
                .await;
                Answer::Confirm {
                    asked,
                    generation,
                    still_invisible: res,
                    took: started.elapsed(),
                }
            }
            Ask::Audit => Answer::Audit(
                bounded(&mut conn, &opts, timeout, |c| {
                    Box::pin(source::server_state(c))
                })
                .await,
            ),
        };
        if answers.send(answer).await.is_err() {
            return;
        }
    }
}

type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Runs `f` on the (re)opened connection within `timeout`; drops the
/// connection on any failure so the next question starts afresh.
async fn bounded<T>(
    conn: &mut Option<Conn>,
    opts: &Opts,
    timeout: Duration,
    f: impl for<'c> FnOnce(&'c mut Conn) -> BoxFut<'c, Result<T, SourceError>>,
) -> Result<T, SourceError> {
    let work = async {
        if conn.is_none() {
            *conn = Some(source::connect(opts, timeout).await?);
        }
        let c = conn.as_mut().ok_or(SourceError::Closed)?;
        f(c).await
    };
    let res = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(SourceError::Silent(timeout)),
    };
    if res.is_err() {
        *conn = None;
    }
    res
}

/// The tracker loop: consumes source events, confirms, publishes.
pub async fn run_tracker(
    cfg: Config,
    opts: Opts,
    mut tracker: Tracker,
    hub: Arc<Hub>,
    mut rx: mpsc::Receiver<SourceEvent>,
    metrics: Arc<Metrics>,
) {
    let (ask_tx, ask_rx) = mpsc::channel(1);
    let (answer_tx, mut answers) = mpsc::channel(1);
    tokio::spawn(control_task(
        opts,
        cfg.mysql.connect_timeout,
        ask_rx,
        answer_tx,
    ));
    let mut in_flight = false;
    // Bumped at every reset of the view.
    let mut generation: u64 = 0;
    let flush = cfg.publish.flush_interval;
    let mut last_confirm = Instant::now() - flush;
    let mut last_signal = Instant::now();
    let mut connected = true;
    let mut heartbeat = tokio::time::interval(cfg.publish.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut audit = tokio::time::interval(AUDIT_INTERVAL);
    audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);

    loop {
        // Confirm as soon as something is pending, nothing is in flight and
        // the last query is at least a flush interval old. The check runs
        // here, not through a timer, because tokio's timers tick in whole
        // milliseconds: a due confirmation must not wait for the next tick.
        let mut confirm_at = far();
        if !tracker.pending().is_empty() && !in_flight {
            let due = last_confirm + flush;
            if due <= Instant::now() {
                last_confirm = Instant::now();
                metrics.confirm_queries.inc();
                in_flight = true;
                let ask = Ask::Confirm(tracker.pending().clone(), generation);
                if ask_tx.send(ask).await.is_err() {
                    return;
                }
            } else {
                confirm_at = tokio::time::Instant::from_std(due);
            }
        }
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { return };
                match ev {
                    SourceEvent::Connected { server_uuid, executed } => {
                        connected = true;
                        metrics.connected.set(1);
                        last_signal = Instant::now();
                        if apply_state(&mut tracker, &hub, &metrics, server_uuid, executed) {
                            generation += 1;
                        }
                    }
                    SourceEvent::Gtid(gtid, at) => {
                        last_signal = at;
                        tracker.on_binlog_gtid(gtid, at);
                    }
                    SourceEvent::Alive(at) => last_signal = at,
                    SourceEvent::Disconnected(_) => connected = false,
                }
            }
            // Due: the top of the loop sends it.
            _ = sleep_until(confirm_at) => {}
            answer = answers.recv() => {
                let Some(answer) = answer else { return };
                in_flight = false;
                match answer {
                    Answer::Confirm { asked, generation: g, still_invisible: Ok(still), took } => {
                        metrics.confirm_seconds.observe(took.as_secs_f64());
                        if !still.is_empty() {
                            metrics.confirm_invisible.inc();
                        }
                        if g == generation {
                            let c = tracker.on_confirmed(&asked, &still, Instant::now());
                            publish(&hub, &metrics, c);
                        }
                    }
                    Answer::Confirm { still_invisible: Err(e), .. } => {
                        warn!(error = %e, "confirmation query failed; retrying");
                    }
                    Answer::Audit(Ok((uuid, executed))) => {
                        if apply_state(&mut tracker, &hub, &metrics, uuid, executed) {
                            generation += 1;
                        }
                    }
                    Answer::Audit(Err(e)) => warn!(error = %e, "audit of gtid_executed failed"),
                }
            }
            _ = heartbeat.tick() => {
                let now = Instant::now();
                let as_of = tracker.oldest_pending().map_or(last_signal, |t| t.min(last_signal));
                let age = if connected {
                    now.saturating_duration_since(as_of)
                } else {
                    now.saturating_duration_since(last_signal)
                };
                metrics.view_age.set(age.as_secs_f64());
                hub.publish_heartbeat(age);
            }
            _ = audit.tick(), if !in_flight => {
                in_flight = true;
                if ask_tx.send(Ask::Audit).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A fresh reading of the server's identity and `gtid_executed`: either a
/// delta (what the view missed) or a reset (returns true).
fn apply_state(
    tracker: &mut Tracker,
    hub: &Hub,
    metrics: &Metrics,
    server_uuid: Uuid,
    executed: GtidSet,
) -> bool {
    match tracker.on_server_state(server_uuid, &executed, Instant::now()) {
        Ok(c) => {
            publish(hub, metrics, c);
            false
        }
        Err(reason) => {
            warn!(%reason, new_view = %executed, "resetting the view");
            metrics.resets.inc();
            tracker.reset(server_uuid, executed.clone());
            let code = match reason {
                ResetReason::ServerUuidChanged { .. } => BinaryReason::ServerChanged,
                ResetReason::ExecutedShrank => BinaryReason::SetShrank,
            };
            hub.publish_reset(server_uuid, executed, code, reason.to_string());
            true
        }
    }
}

fn publish(hub: &Hub, metrics: &Metrics, c: Confirmed) {
    if c.delta.is_empty() {
        return;
    }
    for d in &c.delays {
        metrics.visibility_delay.observe(d.as_secs_f64());
    }
    metrics.gtids_announced.inc_by(c.delta.count() as u64);
    debug!(delta = %c.delta, "visible");
    hub.publish_delta(c.delta);
}
