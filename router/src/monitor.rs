//! The backend health monitor: one task per server checks it every
//! `interval` over one kept, logged-in connection (`SELECT @@global.read_only,
//! @@global.super_read_only` and `SHOW REPLICA STATUS`) and publishes every
//! server's [`ServerHealth`] through a [`tokio::sync::watch`] channel.
//!
//! The status of one server, folded by the pure [`observe`]:
//! ```text
//!               check ok, not lagging                  check ok, lagging / broken (max_lag set)
//!   Unknown ───────────────────────────> Up <─────────────────────────────────> Shunned{LagOver | ReplicationBroken}
//!      │                                  │  check ok, back under max_lag                │
//!      │ shun_after_errors failures        │ shun_after_errors failures in a row          │ shun_after_errors
//!      │ in a row                          v                                              │ failures in a row
//!      └──────────────────────────> Shunned{Unreachable} <───────────────────────────────┘
//!                                         │ first check ok: Up (or LagOver / ReplicationBroken)
//! ```
//! Fewer failures in a row than `shun_after_errors` keep the status as it
//! was. A server that was never checked is [`Status::Unknown`] and usable:
//! the router then goes by its configured role. There is no hysteresis
//! around `max_lag`; the check interval is the damping.
//!
//! ```text
//! task: tick --> [connect + login (connect_timeout each)] --> read_only query --> SHOW REPLICA STATUS
//!            --> observe --> log changes --> publish
//!       any failure drops the connection; the next tick reconnects (resolving the host again)
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use causeway_common::secret::{resolve_secret, sources_given, Secret, SecretError};
use causeway_wire::CapabilityFlags;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use crate::backend::connect::{self, Endpoint, Login, REQUIRED};
use crate::backend::query::{simple_query, QueryResult};
use crate::error::Error;
use crate::io::PacketIo;

/// The `[monitor]` section: how the router checks its backend servers.
///
/// ```toml
/// [monitor]
/// interval = "1s"
/// user = "causeway_monitor"
/// password_env = "CAUSEWAY_MONITOR_PASSWORD"
/// shun_after_errors = 3
/// ```
/// The monitor user needs `REPLICATION CLIENT` for `SHOW REPLICA STATUS`
/// (or set `lag_check = false`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Check the servers. When off, every server stays unknown and the
    /// router goes by the configured roles.
    pub enabled: bool,
    /// Time between two checks of one server.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Bound on each step of opening the monitor's connection: TCP connect,
    /// the server's greeting, login.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on each check query.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// The MySQL user the monitor logs in as.
    pub user: String,
    /// Its password, inline (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (one line; trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// A server is shunned (no new traffic) after this many failed checks in
    /// a row, and back on the first check that succeeds.
    pub shun_after_errors: u32,
    /// Read `read_only` and `super_read_only` (a server with either on does
    /// not take writes).
    pub read_only_check: bool,
    /// Read `SHOW REPLICA STATUS`. Needed for shunning replicas that lag
    /// more than their `max_lag` or whose replication stopped.
    pub lag_check: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            enabled: true,
            interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
            user: "causeway_monitor".into(),
            password: None,
            password_env: None,
            password_file: None,
            shun_after_errors: 3,
            read_only_check: true,
            lag_check: true,
        }
    }
}

impl MonitorConfig {
    /// Every problem with this section (empty when it is fine).
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (what, d) in [
            ("interval", self.interval),
            ("connect_timeout", self.connect_timeout),
            ("query_timeout", self.query_timeout),
        ] {
            if d.is_zero() {
                errors.push(format!("monitor.{what} must be > 0"));
            }
        }
        if self.shun_after_errors == 0 {
            errors.push("monitor.shun_after_errors must be at least 1".to_string());
        }
        if self.enabled && self.user.is_empty() {
            errors.push("monitor.user must not be empty".to_string());
        }
        if sources_given(&self.password, &self.password_env, &self.password_file) > 1 {
            errors.push(
                "monitor: give at most one of password, password_env, password_file".to_string(),
            );
        }
        errors
    }

    /// The password from whichever source is given (empty when none is).
    pub fn resolve_password(&self) -> Result<Vec<u8>, SecretError> {
        let pw = resolve_secret(
            "monitor password",
            &self.password,
            &self.password_env,
            &self.password_file,
        )?;
        Ok(pw.map(String::into_bytes).unwrap_or_default())
    }
}

/// Replication delay of a server, as of its last successful check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lag {
    /// Not known: never checked, or `lag_check` is off.
    #[default]
    Unknown,
    /// `SHOW REPLICA STATUS` has no row: the server replicates from nobody.
    NotReplica,
    /// `Seconds_Behind_Source` (the largest over all channels).
    Seconds(u64),
    /// A replication thread is not running (`Connecting` included), or
    /// `Seconds_Behind_Source` is NULL.
    Broken,
}

/// Why a server is shunned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShunReason {
    /// `shun_after_errors` checks in a row failed.
    Unreachable,
    /// The replica is further behind than its `max_lag` (whole seconds;
    /// `max_s` rounded down).
    LagOver {
        /// Seconds behind its source.
        lag_s: u64,
        /// The server's `max_lag`.
        max_s: u64,
    },
    /// Replication stopped on a server with a `max_lag`.
    ReplicationBroken,
}

impl std::fmt::Display for ShunReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable => f.write_str("unreachable"),
            Self::LagOver { lag_s, max_s } => write!(f, "lag {lag_s}s over max_lag {max_s}s"),
            Self::ReplicationBroken => f.write_str("replication broken"),
        }
    }
}

/// Whether the router may use a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Never checked (or the monitor is off): usable, by its configured role.
    #[default]
    Unknown,
    /// The last check succeeded and the server is within its `max_lag`.
    Up,
    /// Not to be given new traffic.
    Shunned {
        /// Why.
        reason: ShunReason,
    },
}

impl Status {
    /// The same state, ignoring the numbers in `LagOver` (for logging only
    /// real changes).
    fn same_kind(&self, other: &Status) -> bool {
        use std::mem::discriminant;
        match (self, other) {
            (Self::Shunned { reason: a }, Self::Shunned { reason: b }) => {
                discriminant(a) == discriminant(b)
            }
            _ => discriminant(self) == discriminant(other),
        }
    }
}

/// What the monitor knows about one server. Counters are for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerHealth {
    /// Whether the server is usable.
    pub status: Status,
    /// `read_only || super_read_only` as of the last successful check;
    /// `None` until known (or with `read_only_check` off).
    pub read_only: Option<bool>,
    /// Replication delay as of the last successful check.
    pub lag: Lag,
    /// Failed checks since the last one that succeeded.
    pub consecutive_errors: u32,
    /// The most recent failure, kept after recovery for diagnosis.
    pub last_error: Option<String>,
    /// Checks done (counter).
    pub checks: u64,
    /// Checks failed (counter).
    pub failures: u64,
}

impl ServerHealth {
    /// Whether the router may send new traffic to the server (not shunned;
    /// an unknown server is usable).
    pub fn is_usable(&self) -> bool {
        !matches!(self.status, Status::Shunned { .. })
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The server answered.
    Ok {
        /// `read_only || super_read_only`; `None` when not checked.
        read_only: Option<bool>,
        /// Replication delay ([`Lag::Unknown`] when not checked).
        lag: Lag,
    },
    /// Connecting, logging in or a query failed (the error, for logs).
    Failed(String),
}

/// Folds one check into a server's health (pure). `max_lag` is the
/// server's, when it has one; `policy` gives `shun_after_errors`.
pub fn observe(
    prev: &ServerHealth,
    obs: &Observation,
    max_lag: Option<Duration>,
    policy: &MonitorConfig,
) -> ServerHealth {
    let mut next = prev.clone();
    next.checks = next.checks.saturating_add(1);
    match obs {
        Observation::Failed(error) => {
            next.failures = next.failures.saturating_add(1);
            next.consecutive_errors = next.consecutive_errors.saturating_add(1);
            next.last_error = Some(error.clone());
            if next.consecutive_errors >= policy.shun_after_errors.max(1) {
                next.status = Status::Shunned {
                    reason: ShunReason::Unreachable,
                };
            }
        }
        Observation::Ok { read_only, lag } => {
            next.consecutive_errors = 0;
            next.read_only = *read_only;
            next.lag = *lag;
            next.status = status_when_up(*lag, max_lag);
        }
    }
    next
}

/// The status of a server that answered with `lag`.
fn status_when_up(lag: Lag, max_lag: Option<Duration>) -> Status {
    let Some(max) = max_lag else {
        return Status::Up;
    };
    let reason = match lag {
        Lag::Broken => ShunReason::ReplicationBroken,
        Lag::Seconds(s) if Duration::from_secs(s) > max => ShunReason::LagOver {
            lag_s: s,
            max_s: max.as_secs(),
        },
        // A server that stopped replicating on purpose (promoted) is not
        // behind anything.
        Lag::Seconds(_) | Lag::NotReplica | Lag::Unknown => return Status::Up,
    };
    Status::Shunned { reason }
}

/// `read_only || super_read_only` from the first row of
/// `SELECT @@global.read_only, @@global.super_read_only`.
pub fn parse_read_only(result: &QueryResult) -> Result<bool, String> {
    let row = match result.rows.first() {
        Some(row) if !row.is_empty() => row,
        _ => return Err("read_only query returned nothing".to_string()),
    };
    let mut on = false;
    for value in row {
        match value.as_deref() {
            Some("1" | "ON") => on = true,
            Some("0" | "OFF") => {}
            other => return Err(format!("unexpected read_only value {other:?}")),
        }
    }
    Ok(on)
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

fn log_changes(server: &str, prev: &ServerHealth, next: &ServerHealth) {
    if !prev.status.same_kind(&next.status) {
        match (&prev.status, &next.status) {
            (_, Status::Shunned { reason }) => tracing::warn!(
                server,
                %reason,
                error = next.last_error.as_deref().unwrap_or(""),
                "server shunned"
            ),
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
    if next.consecutive_errors > prev.consecutive_errors {
        tracing::debug!(
            server,
            error = next.last_error.as_deref().unwrap_or(""),
            consecutive = next.consecutive_errors,
            "check failed"
        );
    }
}

/// Every server's health, by server name.
pub type HealthMap = HashMap<String, ServerHealth>;

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
    config: Arc<MonitorConfig>,
    password: Arc<[u8]>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the tasks and the handle share.
struct Shared {
    health: watch::Sender<Arc<HealthMap>>,
    /// Held while publishing, so a replaced task cannot write after
    /// [`Monitor::retarget`].
    targets: Mutex<Targets>,
}

#[derive(Default)]
struct Targets {
    by_name: HashMap<String, Watched>,
    next_id: u64,
}

struct Watched {
    target: MonitorTarget,
    /// Which task may publish for this name.
    task_id: u64,
    task: Option<AbortHandle>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Targets> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `health` unless task `task_id` was replaced; returns
    /// whether it is still current.
    fn publish(&self, name: &str, task_id: u64, health: &ServerHealth) -> bool {
        let targets = self.lock();
        if targets.by_name.get(name).map(|w| w.task_id) != Some(task_id) {
            return false;
        }
        self.health.send_modify(|map| {
            Arc::make_mut(map).insert(name.to_string(), health.clone());
        });
        true
    }
}

impl Monitor {
    /// Starts watching `targets` (one task each, unless `config.enabled` is
    /// off) with `password` for `config.user`. Needs a Tokio runtime.
    pub fn spawn(targets: Vec<MonitorTarget>, config: MonitorConfig, password: Vec<u8>) -> Monitor {
        let (health, _) = watch::channel(Arc::new(HealthMap::new()));
        let monitor = Monitor {
            config: Arc::new(config),
            password: password.into(),
            shared: Arc::new(Shared {
                health,
                targets: Mutex::default(),
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

    /// The current health of every server.
    pub fn snapshot(&self) -> Arc<HealthMap> {
        self.shared.health.borrow().clone()
    }

    /// The configuration it runs with. [`Monitor::retarget`] changes only
    /// the servers: a reload that changes this section (or the password)
    /// replaces the monitor.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
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
            let name = target.endpoint.name.clone();
            let task_id = state.next_id;
            state.next_id = state.next_id.wrapping_add(1);
            let task = self.config.enabled.then(|| {
                let health = initial.remove(&name).unwrap_or_default();
                tokio::spawn(watch_server(
                    Arc::clone(&self.shared),
                    task_id,
                    target.clone(),
                    Arc::clone(&self.config),
                    Arc::clone(&self.password),
                    health,
                ))
                .abort_handle()
            });
            state.by_name.insert(
                name,
                Watched {
                    target,
                    task_id,
                    task,
                },
            );
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
        ticker.tick().await;
        let obs = match check(&mut conn, &endpoint, &config, &password).await {
            Ok(obs) => obs,
            Err(error) => {
                conn = None;
                Observation::Failed(error)
            }
        };
        let next = observe(&health, &obs, target.max_lag, &config);
        log_changes(&name, &health, &next);
        health = next;
        if !shared.publish(&name, task_id, &health) {
            return;
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

const READ_ONLY_SQL: &str = "SELECT @@global.read_only, @@global.super_read_only";
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
            connect::login(&mut greeted, &login, password, ep.tls.as_ref()),
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
        simple_query(&mut self.io, self.caps, sql, timeout)
            .await
            .map_err(|e| format!("{sql}: {}", e.report()))
    }
}

/// One check, on the kept connection or a new one.
async fn check(
    conn: &mut Option<Conn>,
    ep: &Endpoint,
    config: &MonitorConfig,
    password: &[u8],
) -> Result<Observation, String> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(
            Conn::open(ep, &config.user, password)
                .await
                .map_err(|e| e.report())?,
        ),
    };
    let t = config.query_timeout;
    let read_only = if config.read_only_check {
        Some(parse_read_only(&c.query(READ_ONLY_SQL, t).await?)?)
    } else {
        None
    };
    let lag = if config.lag_check {
        parse_replica_status(&c.query(REPLICA_STATUS_SQL, t).await?)?
    } else {
        Lag::Unknown
    };
    if !config.read_only_check && !config.lag_check {
        c.query("SELECT 1", t).await?;
    }
    Ok(Observation::Ok { read_only, lag })
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
