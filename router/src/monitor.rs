//! The backend health monitor: one task per server checks it every
//! `interval` over one kept, logged-in connection (`SELECT @@global.read_only,
//! @@global.super_read_only` and `SHOW REPLICA STATUS`) and publishes every
//! server's [`ServerHealth`] through a [`tokio::sync::watch`] channel. What a
//! check means for the server is decided by the pure [`crate::health`]; its
//! settings are [`MonitorConfig`].
//!
//! ```text
//! task: tick --> [connect + login (connect_timeout each)] --> read_only, gtid_executed --> SHOW REPLICA STATUS
//!            --> observe --> log changes --> publish
//!       a failure on the kept connection is checked again at once on a new one (the server may
//!       only have closed an idle connection); a failure drops the connection; the next tick
//!       reconnects (resolving the host again)
//! hurry (a session waits for a writer): every task checks at once, then every HURRY_INTERVAL
//!       for HURRY_FOR
//! sessions report what they saw first: a refused connection (shunned now), a statement
//!       refused for read_only (read-only now); the next check says again what is true
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway_gtid::GtidSet;
use causeway_wire::CapabilityFlags;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use crate::backend::connect::{self, Endpoint, Login, REQUIRED};
use crate::backend::query::{simple_query, QueryResult};
use crate::config::MonitorConfig;
use crate::error::Error;
use crate::health::{
    observe, CheckError, HealthMap, Lag, Observation, ServerHealth, ShunReason, ShunRule, Status,
    Writable,
};
use crate::io::PacketIo;

/// `read_only || super_read_only` from the first row of
/// `SELECT @@global.read_only, @@global.super_read_only`.
pub fn parse_read_only(result: &QueryResult) -> Result<bool, String> {
    let row = match result.rows.first() {
        Some(row) if !row.is_empty() => row,
        _ => return Err("read_only query returned nothing".to_string()),
    };
    let mut on = false;
    for value in row.iter().take(2) {
        match value.as_deref() {
            Some("1" | "ON") => on = true,
            Some("0" | "OFF") => {}
            other => return Err(format!("unexpected read_only value {other:?}")),
        }
    }
    Ok(on)
}

/// `@@global.gtid_executed` from the third column of the read-only
/// query's row, when there is one.
pub fn parse_executed(result: &QueryResult) -> Result<Option<GtidSet>, String> {
    let Some(Some(text)) = result.rows.first().and_then(|row| row.get(2)) else {
        return Ok(None);
    };
    GtidSet::parse(text)
        .map(Some)
        .map_err(|e| format!("unexpected gtid_executed {text:?}: {e}"))
}

/// The lag in a `SHOW REPLICA STATUS` result: no row is not a replica;
/// with several channels, any broken one is [`Lag::Broken`], otherwise the
/// largest delay.
pub fn parse_replica_status(result: &QueryResult) -> Result<Lag, String> {
    if result.rows.is_empty() {
        return Ok(Lag::NotReplica);
    }
    let column = |name: &str| {
        result
            .column(name)
            .ok_or_else(|| format!("SHOW REPLICA STATUS has no column {name}"))
    };
    let io = column("Replica_IO_Running")?;
    let sql = column("Replica_SQL_Running")?;
    let behind = column("Seconds_Behind_Source")?;
    let mut worst = 0;
    for row in &result.rows {
        let get = |i: usize| row.get(i).and_then(|v| v.as_deref());
        if get(io) != Some("Yes") || get(sql) != Some("Yes") {
            return Ok(Lag::Broken);
        }
        let Some(seconds) = get(behind) else {
            return Ok(Lag::Broken);
        };
        let seconds: u64 = seconds
            .parse()
            .map_err(|_| format!("unexpected Seconds_Behind_Source {seconds:?}"))?;
        worst = worst.max(seconds);
    }
    Ok(Lag::Seconds(worst))
}

/// Logs what changed between two healths of `server`: once per change,
/// never per check (failed checks only at debug level).
fn log_changes(server: &str, user: &str, prev: &ServerHealth, next: &ServerHealth) {
    let error = next.last_error.as_deref().unwrap_or("");
    if prev.misconfigured != next.misconfigured {
        match next.misconfigured {
            Some(code) => tracing::error!(
                server,
                user,
                code,
                error,
                "the server refuses the monitor's login or checks: a configuration error \
                 (monitor.user, its password source, its privileges), not an outage; \
                 the server is not shunned and serves in the role last seen (its configured \
                 one if never seen), unchecked, until a check succeeds"
            ),
            None => tracing::info!(server, user, "the monitor can check the server again"),
        }
    }
    if !prev.status.same_kind(&next.status) {
        match (&prev.status, &next.status) {
            (_, Status::Shunned { reason }) => {
                tracing::warn!(server, %reason, error, "server shunned")
            }
            (Status::Shunned { .. }, Status::Up) => tracing::info!(server, "server recovered"),
            (_, Status::Up) => tracing::info!(server, "server up"),
            (_, Status::Unknown) => {}
        }
    }
    if prev.read_only != next.read_only {
        if let Some(read_only) = next.read_only {
            tracing::info!(server, read_only, was = ?prev.read_only, "read_only changed");
        }
    }
    if next.failures > prev.failures {
        tracing::debug!(
            server,
            error,
            consecutive = next.consecutive_errors,
            "check failed"
        );
    }
}

/// One server to watch.
#[derive(Debug, Clone)]
pub struct MonitorTarget {
    /// Where it is (its `connect_timeout` is replaced by the monitor's).
    pub endpoint: Endpoint,
    /// Shun it while it lags more than this (replicas).
    pub max_lag: Option<Duration>,
}

impl MonitorTarget {
    fn same_address(&self, other: &MonitorTarget) -> bool {
        let (a, b) = (&self.endpoint, &other.endpoint);
        a.name == b.name && a.host == b.host && a.port == b.port
    }

    fn same(&self, other: &MonitorTarget) -> bool {
        let tls_same = match (&self.endpoint.tls, &other.endpoint.tls) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.same_address(other) && tls_same && self.max_lag == other.max_lag
    }
}

/// The running health monitor. Its tasks stop when it is dropped; then
/// the receivers of [`Monitor::subscribe`] see the channel closed.
pub struct Monitor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}

/// While someone waits for a writer, servers are checked this often...
const HURRY_INTERVAL: Duration = Duration::from_millis(100);
/// ...for this long after the last call to [`Monitor::hurry`].
const HURRY_FOR: Duration = Duration::from_secs(2);

/// What became of a check's result.
enum Published {
    Done,
    /// A session reported since the check started: this is in force.
    Older(ServerHealth),
    /// The task was replaced: it stops.
    Replaced,
}

/// What the tasks and the handle share.
struct Shared {
    health: watch::Sender<Arc<HealthMap>>,
    /// Until when the tasks check every [`HURRY_INTERVAL`].
    hurry: watch::Sender<Option<Instant>>,
    /// The monitor's clock starts here ([`Writable::Turned`]).
    epoch: Instant,
    /// Held while publishing, so a replaced task cannot write after
    /// [`Monitor::retarget`] or [`Monitor::reconfigure`].
    targets: Mutex<Targets>,
}

struct Targets {
    by_name: HashMap<String, Watched>,
    next_id: u64,
    /// What new tasks check with.
    config: Arc<MonitorConfig>,
    password: Arc<[u8]>,
}

struct Watched {
    target: MonitorTarget,
    /// Which task may publish for this name.
    task_id: u64,
    task: Option<AbortHandle>,
}

impl Shared {
    /// The monitor's clock: nanoseconds since it started.
    fn clock(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, Targets> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `health` unless task `task_id` was replaced; returns
    /// whether it is still current.
    /// A check that started at `started` is older news than a session's
    /// report made since (see [`Monitor::saw_read_only`]): then the
    /// published health stays, and is returned for the task to go on from.
    fn publish(&self, name: &str, task_id: u64, health: &ServerHealth, started: u64) -> Published {
        let targets = self.lock();
        if targets.by_name.get(name).map(|w| w.task_id) != Some(task_id) {
            return Published::Replaced;
        }
        let mut kept = None;
        self.health.send_if_modified(|map| {
            if let Some(now) = map.get(name) {
                if now.reported_at.is_some_and(|at| at >= started) {
                    kept = Some(now.clone());
                    return false;
                }
            }
            Arc::make_mut(map).insert(name.to_string(), health.clone());
            true
        });
        drop(targets);
        match kept {
            Some(h) => Published::Older(h),
            None => Published::Done,
        }
    }

    /// Starts checking `target` from `health` (no task when the monitor is
    /// off); from now on only that task may publish for its name.
    fn start(self: &Arc<Self>, state: &mut Targets, target: MonitorTarget, health: ServerHealth) {
        let task_id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1);
        let task = state.config.enabled.then(|| {
            tokio::spawn(watch_server(
                Arc::clone(self),
                self.hurry.subscribe(),
                task_id,
                target.clone(),
                Arc::clone(&state.config),
                Arc::clone(&state.password),
                health,
            ))
            .abort_handle()
        });
        state.by_name.insert(
            target.endpoint.name.clone(),
            Watched {
                target,
                task_id,
                task,
            },
        );
    }
}

impl Monitor {
    /// Starts watching `targets` (one task each, unless `config.enabled` is
    /// off) with `password` for `config.user`. Needs a Tokio runtime.
    pub fn spawn(targets: Vec<MonitorTarget>, config: MonitorConfig, password: Vec<u8>) -> Monitor {
        let (health, _) = watch::channel(Arc::new(HealthMap::new()));
        let (hurry, _) = watch::channel(None);
        let monitor = Monitor {
            shared: Arc::new(Shared {
                health,
                hurry,
                epoch: Instant::now(),
                targets: Mutex::new(Targets {
                    by_name: HashMap::new(),
                    next_id: 0,
                    config: Arc::new(config),
                    password: password.into(),
                }),
            }),
        };
        monitor.retarget(targets);
        monitor
    }

    /// A receiver of every new snapshot. One is published after every
    /// check of every server (the counters change each time), so compare
    /// the fields you use before acting on a change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<HealthMap>> {
        self.shared.health.subscribe()
    }

    /// Whether `server` is shunned for not answering.
    pub fn unreachable(&self, server: &str) -> bool {
        self.shared.health.borrow().get(server).is_some_and(|h| {
            matches!(
                h.status,
                Status::Shunned {
                    reason: ShunReason::Unreachable
                }
            )
        })
    }

    /// The current health of every server.
    pub fn snapshot(&self) -> Arc<HealthMap> {
        self.shared.health.borrow().clone()
    }

    /// Someone waits for a writer: check every server now, and often for
    /// a while ([`HURRY_FOR`] from the last call).
    pub fn hurry(&self) {
        let now = Instant::now();
        self.shared.hurry.send_if_modified(|until| {
            // Wake the tasks only when they were not hurrying already.
            let wake = until.is_none_or(|u| u <= now);
            if wake || until.is_some_and(|u| u < now + HURRY_FOR / 2) {
                *until = Some(now + HURRY_FOR);
            }
            wake
        });
    }

    /// A session could not connect to `server`: its host refused the
    /// connection. It is shunned now; its next check says again.
    pub fn saw_refused(&self, server: &str) {
        self.report(server, |h| {
            if h.is_usable() {
                h.status = Status::Shunned {
                    reason: ShunReason::Unreachable,
                };
                h.last_error = Some("a session's connection was refused".into());
                tracing::warn!(server, "server shunned: a session's connection was refused");
            }
        });
    }

    /// `server` refused a statement because it is read-only: it is
    /// read-only now; its next check says again.
    pub fn saw_read_only(&self, server: &str) {
        self.report(server, |h| {
            if h.read_only != Some(true) {
                tracing::info!(
                    server,
                    "a statement was refused for read_only: read-only now"
                );
                h.read_only = Some(true);
                h.writable = Writable::No;
            }
        });
    }

    fn report(&self, server: &str, f: impl FnOnce(&mut ServerHealth)) {
        if !self.shared.lock().config.enabled {
            return;
        }
        let now = self.shared.clock();
        self.shared.health.send_if_modified(|map| {
            let Some(h) = map.get(server) else {
                return false;
            };
            let mut next = h.clone();
            f(&mut next);
            if next == *h {
                return false;
            }
            next.reported_at = Some(now);
            Arc::make_mut(map).insert(server.to_string(), next);
            true
        });
        self.hurry();
    }

    /// The user and password it logs in with (the router's own statements
    /// on servers: fencing).
    pub fn login(&self) -> (String, Arc<[u8]>) {
        let state = self.shared.lock();
        (state.config.user.clone(), Arc::clone(&state.password))
    }

    /// The configuration it checks with now.
    pub fn config(&self) -> Arc<MonitorConfig> {
        Arc::clone(&self.shared.lock().config)
    }

    /// Checks with `config` and `password` from now on (a reload that
    /// changed the `[monitor]` section or the password): every server's task
    /// restarts with them and keeps the server's health, so a server the old
    /// settings could not check (a wrong password) is checked normally from
    /// its next check on. Turned off, every server is unknown again.
    /// Nothing happens when neither changed.
    pub fn reconfigure(&self, config: MonitorConfig, password: Vec<u8>) {
        let mut state = self.shared.lock();
        if *state.config == config && *state.password == *password {
            return;
        }
        state.config = Arc::new(config);
        state.password = password.into();
        let watched = std::mem::take(&mut state.by_name);
        for w in watched.values() {
            if let Some(task) = &w.task {
                task.abort();
            }
        }
        let enabled = state.config.enabled;
        if !enabled {
            self.shared.health.send_modify(|map| {
                for h in Arc::make_mut(map).values_mut() {
                    *h = ServerHealth::default();
                }
            });
        }
        let health = self.snapshot();
        for (name, w) in watched {
            let h = health.get(&name).cloned().unwrap_or_default();
            self.shared.start(&mut state, w.target, h);
        }
    }

    /// Watches `targets` from now on (a configuration reload). A server
    /// whose name, host and port did not change keeps its health (its task
    /// is restarted only if its TLS or `max_lag` changed); others start
    /// unknown; servers no longer listed are dropped. Of two targets with
    /// the same name, the first is watched.
    pub fn retarget(&self, targets: Vec<MonitorTarget>) {
        let mut state = self.shared.lock();
        let mut old = std::mem::take(&mut state.by_name);
        let mut keep = Vec::new();
        let mut reset = Vec::new();
        let mut start = Vec::new();
        for target in targets {
            let name = target.endpoint.name.clone();
            if state.by_name.contains_key(&name)
                || start
                    .iter()
                    .any(|t: &MonitorTarget| t.endpoint.name == name)
            {
                tracing::warn!(server = %name, "server listed twice; watching the first");
                continue;
            }
            match old.remove(&name) {
                Some(w) if w.target.same(&target) => {
                    keep.push(name.clone());
                    state.by_name.insert(name, w);
                }
                Some(w) => {
                    if let Some(task) = &w.task {
                        task.abort();
                    }
                    if !w.target.same_address(&target) {
                        reset.push(name);
                    }
                    start.push(target);
                }
                None => {
                    reset.push(name);
                    start.push(target);
                }
            }
        }
        for w in old.values() {
            if let Some(task) = &w.task {
                task.abort();
            }
        }
        let listed = |name: &str| {
            keep.iter().any(|n| n == name) || start.iter().any(|t| t.endpoint.name == name)
        };
        let mut initial = HashMap::new();
        self.shared.health.send_modify(|map| {
            let map = Arc::make_mut(map);
            map.retain(|name, _| listed(name));
            for name in &reset {
                map.insert(name.clone(), ServerHealth::default());
            }
            for t in &start {
                let h = map.entry(t.endpoint.name.clone()).or_default();
                initial.insert(t.endpoint.name.clone(), h.clone());
            }
        });
        for target in start {
            let health = initial.remove(&target.endpoint.name).unwrap_or_default();
            self.shared.start(&mut state, target, health);
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for w in self.shared.lock().by_name.values() {
            if let Some(task) = &w.task {
                task.abort();
            }
        }
    }
}

/// Checks one server every interval until replaced or aborted.
async fn watch_server(
    shared: Arc<Shared>,
    mut hurry: watch::Receiver<Option<Instant>>,
    task_id: u64,
    target: MonitorTarget,
    config: Arc<MonitorConfig>,
    password: Arc<[u8]>,
    mut health: ServerHealth,
) {
    let name = target.endpoint.name.clone();
    let mut endpoint = target.endpoint.clone();
    endpoint.connect_timeout = config.connect_timeout;
    let mut conn = None;
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let until = *hurry.borrow_and_update();
        // While checks fail, the next comes sooner (see shun_after).
        let failing = (health.consecutive_errors > 0 && health.is_usable())
            .then(|| (config.shun_after / 4).min(config.interval));
        match (until, failing) {
            (Some(u), _) if Instant::now() < u => tokio::time::sleep(HURRY_INTERVAL).await,
            (_, Some(soon)) if !config.shun_after.is_zero() => tokio::time::sleep(soon).await,
            _ => {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = hurry.changed() => {}
                }
            }
        }
        let kept = conn.is_some();
        let started = shared.clock();
        let mut obs = check(&mut conn, &endpoint, &config, &password).await;
        if obs.is_err() && kept {
            // The server may only have closed an idle connection.
            conn = None;
            obs = check(&mut conn, &endpoint, &config, &password).await;
        }
        let obs = match obs {
            Ok(obs) => obs,
            Err(error) => {
                conn = None;
                Observation::Failed(CheckError { started, ..error })
            }
        };
        let shun = ShunRule {
            errors: config.shun_after_errors,
            after: config.shun_after,
        };
        let next = observe(&health, &obs, target.max_lag, shun, shared.clock());
        match shared.publish(&name, task_id, &next, started) {
            Published::Done => {
                log_changes(&name, &config.user, &health, &next);
                health = next;
            }
            // A session's report since the check began: go on from it.
            Published::Older(reported) => health = reported,
            Published::Replaced => return,
        }
    }
}

/// The monitor's connection to one server (also used for the router's
/// other small queries of its own, see [`crate::global`]).
pub(crate) struct Conn {
    io: PacketIo,
    caps: CapabilityFlags,
}

/// Capabilities the monitor asks for.
const MONITOR_CAPS: CapabilityFlags = REQUIRED
    .union(CapabilityFlags::TRANSACTIONS)
    .union(CapabilityFlags::DEPRECATE_EOF)
    .union(CapabilityFlags::CONNECT_ATTRS);

const READ_ONLY_SQL: &str =
    "SELECT @@global.read_only, @@global.super_read_only, @@global.gtid_executed";
const REPLICA_STATUS_SQL: &str = "SHOW REPLICA STATUS";

impl Conn {
    pub(crate) async fn open(ep: &Endpoint, user: &str, password: &[u8]) -> Result<Conn, Error> {
        let login = Login {
            user: Bytes::copy_from_slice(user.as_bytes()),
            database: None,
            charset: 255,
            capabilities: MONITOR_CAPS,
            max_packet_size: 1 << 24,
            connect_attrs: vec![(
                Bytes::from_static(b"program_name"),
                Bytes::from_static(b"causeway-monitor"),
            )],
        };
        let mut greeted = connect::connect(ep).await?;
        let limit = ep.connect_timeout;
        tokio::time::timeout(
            limit,
            connect::login(&mut greeted, &login, password, ep.tls.as_ref(), None),
        )
        .await
        .map_err(|_| Error::backend_timeout("monitor login", limit))??;
        // As login() negotiates them.
        let caps = (MONITOR_CAPS & greeted.greeting.capabilities) | REQUIRED;
        Ok(Conn {
            io: greeted.io,
            caps,
        })
    }

    pub(crate) async fn query(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<QueryResult, String> {
        self.check_query(sql, timeout).await.map_err(|e| e.message)
    }

    async fn check_query(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<QueryResult, CheckError> {
        simple_query(&mut self.io, self.caps, sql, timeout)
            .await
            .map_err(|e| failed(&e, &format!("{sql}: ")))
    }
}

/// A failed step of a check, with the MySQL error code a client would
/// report for it: the server's own for an ERR packet, 2003, 2013 or 2026 for
/// failures on the router's side (see [`Error::client_err`]).
fn failed(e: &Error, context: &str) -> CheckError {
    CheckError {
        code: e.client_err("").map(|err| err.code),
        message: format!("{context}{}", e.report()),
        refused: e.is_refused(),
        started: 0,
    }
}

/// An answer the monitor does not understand (no MySQL error code).
fn nonsense(message: String) -> CheckError {
    CheckError {
        code: None,
        message,
        refused: false,
        started: 0,
    }
}

/// One check, on the kept connection or a new one.
async fn check(
    conn: &mut Option<Conn>,
    ep: &Endpoint,
    config: &MonitorConfig,
    password: &[u8],
) -> Result<Observation, CheckError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(
            Conn::open(ep, &config.user, password)
                .await
                .map_err(|e| failed(&e, ""))?,
        ),
    };
    let t = config.query_timeout;
    let (read_only, executed) = if config.read_only_check {
        let result = c.check_query(READ_ONLY_SQL, t).await?;
        let read_only = parse_read_only(&result).map_err(nonsense)?;
        (Some(read_only), parse_executed(&result).map_err(nonsense)?)
    } else {
        (None, None)
    };
    let lag = if config.lag_check {
        let result = c.check_query(REPLICA_STATUS_SQL, t).await?;
        parse_replica_status(&result).map_err(nonsense)?
    } else {
        Lag::Unknown
    };
    if !config.read_only_check && !config.lag_check {
        c.check_query("SELECT 1", t).await?;
    }
    Ok(Observation::Ok {
        read_only,
        lag,
        executed,
    })
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
