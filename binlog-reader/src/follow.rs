//! The reader's engine: runs the binlog connection (reconnecting with
//! backoff), feeds the [`Tracker`], confirms pending GTIDs against the
//! server once per flush tick, and publishes to the [`Hub`].
//!
//! Confirmation pacing: when nothing was confirmed during the last flush
//! interval, pending GTIDs are confirmed at once (an isolated write is
//! announced one round trip after its binlog event); under load, at most one
//! confirmation query per flush interval, each covering everything pending.

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_gtid::GtidSet;
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

/// The control connection used for confirmations and audits; reconnected
/// lazily after an error.
struct Control {
    opts: Opts,
    timeout: Duration,
    conn: Option<Conn>,
}

impl Control {
    async fn conn(&mut self) -> Result<&mut Conn, SourceError> {
        if self.conn.is_none() {
            self.conn = Some(source::connect(&self.opts, self.timeout).await?);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// The subset of `pending` not yet in `gtid_executed`.
    async fn still_invisible(&mut self, pending: &GtidSet) -> Result<GtidSet, SourceError> {
        // A formatted GTID set holds only hex digits, '-', ':', ',', '_'
        // and lowercase tag letters: safe inside quotes.
        let q = format!("SELECT GTID_SUBTRACT('{pending}', @@global.gtid_executed)");
        let res: Result<Option<String>, _> = self.conn().await?.query_first(q).await;
        match res {
            Ok(Some(text)) => GtidSet::parse(&text).map_err(|e| {
                SourceError::Protocol(format!("GTID_SUBTRACT answered {text:?}: {e}"))
            }),
            Ok(None) => Err(SourceError::Protocol(
                "GTID_SUBTRACT returned no row".into(),
            )),
            Err(e) => {
                self.conn = None;
                Err(e.into())
            }
        }
    }

    async fn server_state(&mut self) -> Result<(causeway_gtid::Uuid, GtidSet), SourceError> {
        let res = source::server_state(self.conn().await?).await;
        if res.is_err() {
            self.conn = None;
        }
        res
    }
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
    let mut control = Control {
        opts,
        timeout: cfg.mysql.connect_timeout,
        conn: None,
    };
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
        let confirm_at = if tracker.pending().is_empty() {
            far()
        } else {
            tokio::time::Instant::from_std(last_confirm + flush)
        };
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { return };
                match ev {
                    SourceEvent::Connected { server_uuid, executed } => {
                        connected = true;
                        metrics.connected.set(1);
                        last_signal = Instant::now();
                        apply_state(&mut tracker, &hub, &metrics, server_uuid, executed);
                    }
                    SourceEvent::Gtid(gtid, at) => {
                        last_signal = at;
                        tracker.on_binlog_gtid(gtid, at);
                    }
                    SourceEvent::Alive(at) => last_signal = at,
                    SourceEvent::Disconnected(_) => connected = false,
                }
            }
            _ = sleep_until(confirm_at) => {
                let asked = tracker.pending().clone();
                last_confirm = Instant::now();
                metrics.confirm_queries.inc();
                match control.still_invisible(&asked).await {
                    Ok(still) => {
                        let c = tracker.on_confirmed(&asked, &still, Instant::now());
                        publish(&hub, &metrics, c);
                    }
                    Err(e) => warn!(error = %e, "confirmation query failed; retrying"),
                }
            }
            _ = heartbeat.tick() => {
                let now = Instant::now();
                let as_of = tracker.oldest_pending().map_or(last_signal, |t| t.min(last_signal));
                let age = if connected { now.saturating_duration_since(as_of) } else {
                    now.saturating_duration_since(last_signal)
                };
                metrics.view_age.set(age.as_secs_f64());
                hub.publish_heartbeat(age);
            }
            _ = audit.tick() => {
                match control.server_state().await {
                    Ok((uuid, executed)) => {
                        apply_state(&mut tracker, &hub, &metrics, uuid, executed);
                    }
                    Err(e) => warn!(error = %e, "audit of gtid_executed failed"),
                }
            }
        }
    }
}

/// A fresh reading of the server's identity and `gtid_executed`: either a
/// delta (what the view missed) or a reset.
fn apply_state(
    tracker: &mut Tracker,
    hub: &Hub,
    metrics: &Metrics,
    server_uuid: causeway_gtid::Uuid,
    executed: GtidSet,
) {
    match tracker.on_server_state(server_uuid, &executed, Instant::now()) {
        Ok(c) => publish(hub, metrics, c),
        Err(reason) => {
            warn!(%reason, new_view = %executed, "resetting the view");
            metrics.resets.inc();
            tracker.reset(server_uuid, executed.clone());
            let code = match reason {
                ResetReason::ServerUuidChanged { .. } => BinaryReason::ServerChanged,
                ResetReason::ExecutedShrank => BinaryReason::SetShrank,
            };
            hub.publish_reset(server_uuid, executed, code, reason.to_string());
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
