//! The reader's engine: runs the binlog connection (reconnecting with
//! backoff), feeds the [`Tracker`], confirms pending GTIDs against the
//! server once per flush tick, and publishes to the [`Hub`].
//!
//! Confirmation pacing ([`Pacer`]): under load, one confirmation query per
//! flush interval, each covering everything pending; after a quiet spell,
//! [`BURST`] queries may go back to back, so a lone write, or two close
//! together, are announced one round trip after their binlog events. One
//! query is in flight at most, so the query rate never exceeds one per round
//! trip; with `flush_interval = 0` that is the only pacing.
//!
//! Coalescing a tick ([`hold`]): when the next query is due within
//! [`HOLD_MAX`] and GTIDs are pending (or the last query covered several, so
//! more are surely coming), the thread sleeps until it is due instead of
//! returning to epoll. Binlog data arriving meanwhile waits in the socket
//! and is read in one go just before the query, rather than waking the
//! reader once per packet it could not act on anyway: the query would not
//! go out before it is due either way. Their arrival is counted from the
//! start of the sleep, so the delay histogram never understates.

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

/// The longest the tracker sleeps the thread to coalesce a flush tick
/// (see [`hold`]). A longer `flush_interval` waits on tokio's timer for the
/// part beyond it, so subscribers' hellos, heartbeats and metric scrapes are
/// never held up longer than this.
const HOLD_MAX: Duration = Duration::from_millis(5);

/// Confirmation queries that may go back to back after a quiet spell.
const BURST: u32 = 2;

/// Paces confirmation queries: one per `interval` on average, with at most
/// [`BURST`] back to back (a generic cell rate algorithm: `tat` is when the
/// next query would be due had the queries so far gone out at the rate).
/// Over any span T it allows at most T / interval + BURST queries, so the
/// deltas each subscriber receives stay coalesced under load, while the
/// writes of a quiet server are not made to wait for a tick.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    tat: Instant,
}

impl Pacer {
    fn new(interval: Duration, now: Instant) -> Pacer {
        Pacer { interval, tat: now }
    }

    /// When the next query may go.
    fn due(&self) -> Instant {
        let slack = self.interval * (BURST - 1);
        self.tat.checked_sub(slack).unwrap_or(self.tat)
    }

    /// A query went out at `now`.
    fn sent(&mut self, now: Instant) {
        self.tat = self.tat.max(now) + self.interval;
    }
}

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
    let mut pacer = Pacer::new(cfg.publish.flush_interval, Instant::now());
    let mut link = Link {
        connected: true,
        last_signal: Instant::now(),
    };
    let mut heartbeat = tokio::time::interval(cfg.publish.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut audit = tokio::time::interval(AUDIT_INTERVAL);
    audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);

    // The last query asked about more than one GTID: the binlog is busy and
    // will likely bring more before the next query is due, so the tracker
    // holds right after an answer instead of waking for the next packet.
    let mut busy = false;

    loop {
        // Confirm as soon as something is pending, nothing is in flight and
        // the pacer allows. A due time near enough is waited for by `hold`
        // (precise to the sleep's slack); tokio's timers tick in whole
        // milliseconds and would add up to one.
        let mut confirm_at = far();
        if !in_flight && (busy || !tracker.pending().is_empty()) {
            let due = pacer.due();
            let now = Instant::now();
            if due > now && due - now <= HOLD_MAX {
                let from = hold(due).await;
                while let Ok(ev) = rx.try_recv() {
                    let ev = match ev {
                        SourceEvent::Gtid(gtid, at) => SourceEvent::Gtid(gtid, at.min(from)),
                        other => other,
                    };
                    on_source(ev, &mut link, &mut tracker, &hub, &metrics, &mut generation);
                }
                // Held on a hunch and nothing came: the burst is over.
                busy = !tracker.pending().is_empty();
            }
            if tracker.pending().is_empty() {
                // Nothing to ask (a hold that found nothing).
            } else if due <= Instant::now() {
                pacer.sent(Instant::now());
                metrics.confirm_queries.inc();
                in_flight = true;
                busy = tracker.pending().count() > 1;
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
                on_source(ev, &mut link, &mut tracker, &hub, &metrics, &mut generation);
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
                let last_signal = link.last_signal;
                let as_of = tracker.oldest_pending().map_or(last_signal, |t| t.min(last_signal));
                let age = if link.connected {
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

/// What the tracker loop knows of the binlog connection.
struct Link {
    connected: bool,
    /// The last event or heartbeat read from it.
    last_signal: Instant,
}

/// One event from the binlog connection.
fn on_source(
    ev: SourceEvent,
    link: &mut Link,
    tracker: &mut Tracker,
    hub: &Hub,
    metrics: &Metrics,
    generation: &mut u64,
) {
    match ev {
        SourceEvent::Connected {
            server_uuid,
            executed,
        } => {
            link.connected = true;
            metrics.connected.set(1);
            link.last_signal = Instant::now();
            if apply_state(tracker, hub, metrics, server_uuid, executed) {
                *generation += 1;
            }
        }
        SourceEvent::Gtid(gtid, at) => {
            link.last_signal = link.last_signal.max(at);
            tracker.on_binlog_gtid(gtid, at);
        }
        SourceEvent::Alive(at) => link.last_signal = link.last_signal.max(at),
        SourceEvent::Disconnected(_) => link.connected = false,
    }
}

/// Holds the thread until `until` (at most [`HOLD_MAX`] away): first lets
/// every other ready task run (subscribers write what was just published),
/// then sleeps the thread itself, so binlog packets arriving meanwhile do
/// not wake it, then lets the source task read them. Returns when the sleep
/// began: nothing read afterwards can have arrived before it.
///
/// Blocking a runtime thread is deliberate here: the reader's runtime is
/// its own single thread, the sleep is at most `HOLD_MAX`, no confirmation
/// is in flight, and the query it waits for could not be sent earlier.
/// Call it from a spawned task, as `run_tracker` is: tokio polls the
/// `block_on` future ahead of the tasks the sleep's I/O woke.
async fn hold(until: Instant) -> Instant {
    tokio::task::yield_now().await;
    let from = Instant::now();
    if let Some(rest) = until.checked_duration_since(from) {
        std::thread::sleep(rest.min(HOLD_MAX));
    }
    tokio::task::yield_now().await;
    from
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Runs `f` as the reader runs its tracker: a spawned task on a
    /// current-thread runtime (see main.rs). The `block_on` future itself is
    /// polled ahead of woken tasks, so a hold there would not see them run.
    fn in_tracker_task(f: impl std::future::Future<Output = ()> + Send + 'static) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { tokio::spawn(f).await.unwrap() });
    }

    /// A hold lets ready tasks run before the thread sleeps (subscribers
    /// write what was just published), sleeps until the due time, and says
    /// when the sleep began.
    #[test]
    fn hold_runs_ready_tasks_first_then_sleeps_until_due() {
        in_tracker_task(async {
            let wrote = Arc::new(std::sync::Mutex::new(None));
            let w = wrote.clone();
            tokio::spawn(async move { *w.lock().unwrap() = Some(Instant::now()) });
            let before = Instant::now();
            let until = before + Duration::from_millis(3);
            let from = hold(until).await;
            let wrote_at = wrote
                .lock()
                .unwrap()
                .expect("the ready task ran during the hold");
            assert!(wrote_at <= from, "it ran before the thread went to sleep");
            assert!(from >= before);
            assert!(Instant::now() >= until, "held until due");
        });
    }

    /// What arrives on a socket while the thread sleeps is read by its task
    /// before the hold returns, so the query sent next includes it. The
    /// writer is another thread, so on a busy machine it may write only after
    /// the hold (at most [`HOLD_MAX`]) is over; such a round proves nothing
    /// and is run again.
    #[test]
    fn data_arriving_during_a_hold_is_read_before_it_returns() {
        for _round in 0..200 {
            let proven = Arc::new(AtomicBool::new(false));
            let p = proven.clone();
            in_tracker_task(async move {
                let (mut ours, theirs) = tokio::net::UnixStream::pair().unwrap();
                let theirs = theirs.into_std().unwrap();
                theirs.set_nonblocking(false).unwrap();
                let got = Arc::new(AtomicBool::new(false));
                let g = got.clone();
                let reader = tokio::spawn(async move {
                    let mut buf = [0u8; 4];
                    ours.read_exact(&mut buf).await.unwrap();
                    g.store(true, Ordering::SeqCst);
                    ours
                });
                // The reader task is parked on the socket before the hold.
                tokio::task::yield_now().await;
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    let mut theirs = theirs;
                    std::io::Write::write_all(&mut theirs, b"gtid").unwrap();
                    (theirs, Instant::now())
                });
                let until = Instant::now() + HOLD_MAX;
                let from = hold(until).await;
                let read_in_hold = got.load(Ordering::SeqCst);
                let (_keep_open, written) = writer.join().unwrap();
                // The sleep lasts at least until `until`, or HOLD_MAX from
                // its start: a write done before then came while the thread
                // slept (or earlier).
                if written < until.min(from + HOLD_MAX) {
                    assert!(
                        read_in_hold,
                        "the packet that came during the sleep was read before the hold returned"
                    );
                    p.store(true, Ordering::SeqCst);
                }
                let mut ours = reader.await.unwrap();
                ours.write_all(b"x").await.unwrap();
            });
            if proven.load(Ordering::SeqCst) {
                return;
            }
        }
        panic!("in 200 rounds the writer thread never wrote during a hold");
    }

    /// After a quiet spell BURST queries go at once; under load one per
    /// interval; over any span, at most span / interval + BURST.
    #[test]
    fn pacer_allows_a_burst_then_one_per_interval() {
        let ms = Duration::from_millis(1);
        let t0 = Instant::now();
        let mut p = Pacer::new(ms, t0);
        assert!(p.due() <= t0);
        p.sent(t0);
        assert!(p.due() <= t0, "a second query may follow at once");
        p.sent(t0);
        assert_eq!(p.due(), t0 + ms, "the third waits an interval");
        // Under load: every query goes the moment it is due.
        let mut sent: u32 = 2;
        let mut now = t0;
        while now < t0 + 100 * ms {
            now = p.due().max(now);
            p.sent(now);
            sent += 1;
        }
        assert!(sent <= 100 + BURST, "{sent} queries in 100 intervals");
        assert!(sent >= 100, "{sent} queries in 100 intervals");
        // Quiet for a while: the burst is back, and no more than it.
        let later = now + 50 * ms;
        assert!(p.due() <= later);
        p.sent(later);
        assert!(p.due() <= later);
        p.sent(later);
        assert!(p.due() > later);
    }

    /// With a zero interval every query is due at once.
    #[test]
    fn pacer_with_zero_interval_never_waits() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Duration::ZERO, t0);
        for _ in 0..10 {
            assert!(p.due() <= t0);
            p.sent(t0);
        }
    }

    /// A hold never sleeps longer than HOLD_MAX, whatever it is asked.
    #[test]
    fn hold_is_bounded() {
        in_tracker_task(async {
            let before = Instant::now();
            let from = hold(before + Duration::from_secs(3600)).await;
            let held = from.elapsed();
            assert!(held >= HOLD_MAX, "held {held:?}");
            assert!(held < Duration::from_secs(3600));
        });
    }
}
