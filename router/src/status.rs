//! One snapshot of every server and pool, as an operator reads them: the
//! admin interface's `servers` and `pools` tables and the dashboard both
//! read these rows, so they never disagree.
//!
//! [`servers`] gathers what the router knows at one instant (the
//! configuration in force with its membership, the monitor's health, the
//! views, what an operator set, the pools' use, the acknowledged GTIDs, the
//! recent apply rates) into [`Inputs`], and the pure [`fold`] turns that
//! into rows. A server's state, first match wins:
//!
//! ```text
//! set OFFLINE by admin                                        --> offline
//! set DRAINING by admin:  connections in use / none           --> draining / drained
//! writable, not its cluster's writer (membership `fenced`)    --> fenced
//! writable, lacks acknowledged GTIDs (membership `catching_up`) --> catching_up
//! shunned by the monitor (lag, broken replication, unreachable) --> shunned
//! otherwise                                                   --> online
//! ```
//! Admin state wins over health in `state`; what the monitor says stays in
//! `why`. The GTID distance compares what the router knows a server applied
//! (its reader's view and its last `gtid_executed`) with what it knows its
//! cluster's writer applied; the catch-up estimate divides it by the
//! server's apply rate over the last seconds ([`crate::history`]).
//!
//! [`sample`] is the task that takes one [`crate::history::Sample`] a
//! second for the dashboard's sparklines and the apply rates.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_gtid::GtidSet;
use serde::Serialize;

use crate::health::{HealthMap, Lag, ServerHealth, ShunReason, Status};
use crate::history::{ReadTotals, Sample, ServerSample};
use crate::ids::{IdVec, ServerId};
use crate::ops::{ServerOp, Set};
use crate::route::Membership;
use crate::runtime::Runtime;
use crate::shared::Shared;

/// A server's state as an operator sees it (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// In service (or waiting for the monitor's first word).
    Online,
    /// The monitor took it out of service.
    Shunned,
    /// Writable but not its cluster's writer: it gets no statement.
    Fenced,
    /// Set draining by an operator; connections still in use.
    Draining,
    /// Set draining by an operator; no connection in use any more.
    Drained,
    /// Set offline by an operator.
    Offline,
    /// Writable, and writes wait for it to hold every acknowledged GTID.
    CatchingUp,
}

impl ServerState {
    /// Its name in the admin tables and the dashboard.
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Online => "online",
            ServerState::Shunned => "shunned",
            ServerState::Fenced => "fenced",
            ServerState::Draining => "draining",
            ServerState::Drained => "drained",
            ServerState::Offline => "offline",
            ServerState::CatchingUp => "catching_up",
        }
    }
}

impl Serialize for ServerState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One server, as the admin `servers` table and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerRow {
    /// Its name.
    pub name: String,
    /// Where it listens, `host:port`.
    pub address: String,
    /// The hostgroup it is configured in.
    pub hostgroup: String,
    /// The hostgroup the current membership has it serve (a promoted
    /// replica serves its writer group); `None` while it is in no group
    /// (shunned, fenced, catching up, weight 0).
    pub role_in_force: Option<String>,
    /// Whether it is its cluster's elected writer.
    pub writer: bool,
    /// Its state.
    pub state: ServerState,
    /// Why, in words: the admin's action and when, the monitor's reason,
    /// what it lacks; several facts are separated by `; `.
    pub why: String,
    /// Replication lag the monitor last saw, in milliseconds (`None`: not
    /// a replica, not known yet, or replication is stopped, see `why`).
    pub lag_ms: Option<u64>,
    /// The monitor found a replication thread of it stopped (or its lag
    /// NULL): it applies nothing from its source.
    pub replication_broken: bool,
    /// Transactions its writer is known to have applied that it is not
    /// (`None`: nothing is known of one of them).
    pub gtid_distance: Option<u64>,
    /// How long it should take to apply them at its recent apply rate, in
    /// milliseconds (`None`: unknown, or it applies nothing now).
    pub catchup_ms: Option<u64>,
    /// Whether the stream from the reader beside it is up (`None`: it has
    /// no reader configured).
    pub reader_connected: Option<bool>,
    /// GTIDs the router acknowledged to clients of its cluster that it is
    /// not known to hold, in MySQL's text form (empty when none).
    pub missing_acknowledged: String,
}

/// One server's pool, as the admin `pools` table and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolRow {
    /// The server's name.
    pub server: String,
    /// Connections lent to sessions now.
    pub in_use: usize,
    /// Idle connections kept for the next session.
    pub idle: usize,
    /// Connections opened since the router started.
    pub opened: u64,
    /// Connects that failed (or were refused as too many) since start.
    pub failed: u64,
    /// Requests that had to wait for a connection, since start.
    pub queue_waits: u64,
    /// Requests that waited in vain (ERR 9004), since start.
    pub queue_timeouts: u64,
    /// Requests waiting for a connection now.
    pub waiting: usize,
    /// The server's connection limit in the configuration.
    pub max_connections: usize,
}

/// What the router knows of one server's applied transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    /// Its view (a lower bound of what it applied).
    pub view: GtidSet,
    /// Whether its reader stream is up (`None`: no reader configured).
    pub connected: Option<bool>,
}

/// Everything [`fold`] reads, gathered at one instant.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The configuration in force.
    pub rt: &'a Runtime,
    /// Which servers serve which group.
    pub members: &'a Membership,
    /// The monitor's view, by server name.
    pub health: &'a HealthMap,
    /// Per server: its view.
    pub seen: IdVec<ServerId, Seen>,
    /// What an operator set, by server name.
    pub ops: HashMap<String, Set>,
    /// Per server: connections in use.
    pub in_use: IdVec<ServerId, usize>,
    /// Per writer group name: the GTIDs acknowledged to clients.
    pub acked: HashMap<String, GtidSet>,
    /// Per server: transactions applied per second lately (`None`: not
    /// known).
    pub apply_rate: IdVec<ServerId, Option<f64>>,
}

/// Every configured server's row, in configuration order, as of now.
pub fn servers(shared: &Shared) -> Vec<ServerRow> {
    let cur = shared.current();
    let health = shared.monitor.snapshot();
    let inputs = gather(shared, &cur, &health);
    fold(&inputs)
}

/// Every configured server's pool, in configuration order, as of now.
pub fn pools(shared: &Shared) -> Vec<PoolRow> {
    let cur = shared.current();
    cur.rt
        .servers
        .with_ids()
        .map(|(id, s)| {
            let p = cur.pool(id).stats();
            PoolRow {
                server: s.name.clone(),
                in_use: p.open.saturating_sub(p.idle),
                idle: p.idle,
                opened: p.opened,
                failed: p.connect_failures,
                queue_waits: p.waits,
                queue_timeouts: p.timeouts,
                waiting: p.waiting,
                max_connections: s.max_connections,
            }
        })
        .collect()
}

/// How far back the apply rate looks.
const RATE_WINDOW_MS: u64 = 10_000;

fn gather<'a>(
    shared: &Shared,
    cur: &'a crate::shared::Current,
    health: &'a HealthMap,
) -> Inputs<'a> {
    let rt = &cur.rt;
    let seen = {
        let views = shared.views.read();
        rt.servers
            .with_ids()
            .map(|(id, s)| {
                let v = views.at(cur.views[id]);
                Seen {
                    view: v.map(|v| v.set.clone()).unwrap_or_default(),
                    connected: s.reader.as_ref().map(|_| v.is_some_and(|v| v.connected)),
                }
            })
            .collect::<Vec<_>>()
            .into()
    };
    let apply_rate = {
        let history = shared
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        rt.servers
            .iter()
            .map(|s| history.apply_rate(&s.name, RATE_WINDOW_MS))
            .collect::<Vec<_>>()
            .into()
    };
    Inputs {
        rt,
        members: &cur.members,
        health,
        seen,
        ops: shared.ops.servers(),
        in_use: cur
            .pools
            .iter()
            .map(|p| p.in_use())
            .collect::<Vec<_>>()
            .into(),
        acked: shared.acknowledged_by_fleet(rt),
        apply_rate,
    }
}

/// Rows from what the router knows (pure).
pub fn fold(inp: &Inputs<'_>) -> Vec<ServerRow> {
    let rt = inp.rt;
    let m = inp.members;
    let unknown = ServerHealth::default();
    let health = |id: ServerId| inp.health.get(&rt.servers[id].name).unwrap_or(&unknown);
    // What the router knows each server applied: its view and its last
    // gtid_executed (both lower bounds).
    let known: Vec<GtidSet> = rt
        .servers
        .with_ids()
        .map(|(id, _)| {
            let mut k = inp
                .seen
                .get(id.index())
                .map(|s| s.view.clone())
                .unwrap_or_default();
            k.union_with(&health(id).executed);
            k
        })
        .collect();
    rt.servers
        .with_ids()
        .map(|(id, s)| {
            let h = health(id);
            let cluster = &rt.groups[s.cluster];
            // Its writer: the elected one, else the first server serving the
            // writer group (no election without the monitor).
            let writer = m
                .writer
                .get(s.cluster.index())
                .copied()
                .flatten()
                .or_else(|| m.members.get(s.cluster.index())?.first().copied());
            let in_group = m.members.iter().any(|g| g.contains(&id));
            let role_in_force = in_group.then(|| rt.groups[m.serving(id, s.group)].name.clone());
            let is_writer = m.writer.contains(&Some(id));
            let distance = match writer {
                Some(w) if w == id => Some(0),
                Some(w) if !known[w.index()].is_empty() && !known[id.index()].is_empty() => {
                    let n = known[w.index()].difference(&known[id.index()]).count();
                    Some(u64::try_from(n).unwrap_or(u64::MAX))
                }
                _ => None,
            };
            let rate = inp.apply_rate.get(id.index()).copied().flatten();
            let catchup_ms = match (distance, rate) {
                (Some(0), _) => Some(0),
                (Some(d), Some(r)) if r > 0.0 => Some((d as f64 / r * 1000.0).ceil() as u64),
                _ => None,
            };
            let missing = inp
                .acked
                .get(&cluster.name)
                .map(|a| a.difference(&known[id.index()]))
                .unwrap_or_default();
            let in_use = inp.in_use.get(id.index()).copied().unwrap_or(0);
            let op = inp.ops.get(&s.name).copied();
            let catching_up = m.catching_up.iter().find(|(_, cs, _)| *cs == id);
            let state = match op.map(|o| o.op) {
                Some(ServerOp::Offline) => ServerState::Offline,
                Some(ServerOp::Draining) if in_use > 0 => ServerState::Draining,
                Some(ServerOp::Draining) => ServerState::Drained,
                None if m.fenced.contains(&id) => ServerState::Fenced,
                None if catching_up.is_some() => ServerState::CatchingUp,
                None if matches!(h.status, Status::Shunned { .. }) => ServerState::Shunned,
                None => ServerState::Online,
            };
            let mut why: Vec<String> = Vec::new();
            if let Some(o) = op {
                let at = humantime::format_rfc3339_seconds(o.since);
                why.push(match state {
                    ServerState::Draining => format!(
                        "draining, set by admin at {at}: {in_use} connection{} still in use",
                        plural(in_use)
                    ),
                    ServerState::Drained => {
                        format!("drained, set by admin at {at}: no connection in use")
                    }
                    _ => format!("set {} by admin at {at}", o.op.name()),
                });
            }
            if m.fenced.contains(&id) {
                why.push(format!(
                    "writable but not the writer of {}: fenced, it gets no statement",
                    cluster.name
                ));
            }
            if let Some((_, _, gap)) = catching_up {
                why.push(if gap.is_empty() {
                    "writable, but what the fleet's routers acknowledged is not known yet (etcd \
                     unreachable, or not read yet): writes wait"
                        .to_string()
                } else {
                    format!(
                        "writable, lacks {} acknowledged transaction{} ({gap}): writes wait for it",
                        gap.count(),
                        plural(gap.count())
                    )
                });
            }
            if let Status::Shunned { reason } = h.status {
                why.push(match (reason, &h.last_error) {
                    (ShunReason::Unreachable, Some(e)) => format!("shunned: unreachable ({e})"),
                    _ => format!("shunned: {reason}"),
                });
            }
            if let Some(code) = h.misconfigured {
                why.push(format!(
                    "the monitor's login or queries are refused (MySQL error {code}): unchecked, \
                     serving by its configured role"
                ));
            }
            if h.lag == Lag::Broken && !matches!(h.status, Status::Shunned { .. }) {
                why.push("replication stopped (a replication thread is not running)".into());
            }
            if s.weight == 0 {
                why.push("weight 0: in no hostgroup".into());
            }
            if m.split.get(s.cluster.index()) == Some(&true) {
                why.push(format!(
                    "{}: two writable servers and none in force (split brain)",
                    cluster.name
                ));
            }
            if let (Some(d @ 1..), Some(w)) = (distance, writer) {
                why.push(format!(
                    "{d} transaction{} behind {}",
                    plural(d),
                    rt.servers[w].name
                ));
            }
            if !missing.is_empty() {
                why.push(format!(
                    "lacks {} acknowledged transaction{}",
                    missing.count(),
                    plural(missing.count())
                ));
            }
            let seen = inp.seen.get(id.index());
            if seen.and_then(|s| s.connected) == Some(false) {
                why.push("reader stream down: its view is kept as it was".into());
            }
            if why.is_empty() {
                why.push(match &role_in_force {
                    Some(g) if is_writer => format!("writer of {g}"),
                    Some(g) => format!("serving {g}"),
                    None => "in no hostgroup".into(),
                });
            }
            ServerRow {
                name: s.name.clone(),
                address: format!("{}:{}", s.endpoint.host, s.endpoint.port),
                hostgroup: rt.groups[s.group].name.clone(),
                role_in_force,
                writer: is_writer,
                state,
                why: why.join("; "),
                lag_ms: match h.lag {
                    Lag::Seconds(s) => Some(s.saturating_mul(1000)),
                    _ => None,
                },
                replication_broken: h.lag == Lag::Broken,
                gtid_distance: distance,
                catchup_ms,
                reader_connected: seen.and_then(|s| s.connected),
                missing_acknowledged: if missing.is_empty() {
                    String::new()
                } else {
                    missing.to_string()
                },
            }
        })
        .collect()
}

fn plural<N: PartialEq + From<u8>>(n: N) -> &'static str {
    if n == N::from(1) {
        ""
    } else {
        "s"
    }
}

/// How often [`sample`] samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Takes one sample of every server (distance, lag, what it applied,
/// connections in use) and of the read counters into
/// [`Shared::history`] every second, until the router stops.
pub async fn sample(shared: &Shared) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        sample_now(shared);
    }
}

/// Adds one sample, of now, to [`Shared::history`].
pub fn sample_now(shared: &Shared) {
    let s = take_sample(shared);
    shared
        .history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(s);
}

/// One sample of the router as of now.
pub fn take_sample(shared: &Shared) -> Sample {
    let cur = shared.current();
    let health = shared.monitor.snapshot();
    let inputs = gather(shared, &cur, &health);
    let rows = fold(&inputs);
    let unknown = ServerHealth::default();
    let servers = rows
        .into_iter()
        .zip(cur.rt.servers.with_ids())
        .map(|(row, (id, s))| {
            let mut applied = inputs.seen[id].view.clone();
            applied.union_with(&health.get(&s.name).unwrap_or(&unknown).executed);
            ServerSample {
                distance: row.gtid_distance,
                lag_ms: row.lag_ms,
                applied: (!applied.is_empty())
                    .then(|| u64::try_from(applied.count()).unwrap_or(u64::MAX)),
                in_use: inputs.in_use[id],
                name: row.name,
            }
        })
        .collect();
    Sample {
        at_ms: unix_ms(SystemTime::now()),
        servers,
        reads: read_totals(shared),
    }
}

/// Causal reads by where they were served, and every statement routed.
pub fn read_totals(shared: &Shared) -> ReadTotals {
    let [causal, queries] = shared.metrics.values_of([
        &format!("{}_total", crate::metrics::CAUSAL_READS),
        &format!("{}_total", crate::metrics::QUERIES),
    ]);
    let mut t = ReadTotals::default();
    for s in causal {
        match s.label("served") {
            "replica" => t.replica += s.value as u64,
            _ => t.primary += s.value as u64,
        }
    }
    t.statements = queries.iter().map(|s| s.value as u64).sum();
    t
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
