//! A write-then-read workload, shared by the demo (`causeway-demo`) and the
//! causal-read benchmark (`causal-bench`).
//!
//! N concurrent sessions, each in a loop: INSERT a row with a unique id into
//! `causeway.rw_hunt`, wait a think time, then read that row back together
//! with `@@port` (which server answered). A read that does not find the row
//! the same session has just written is a **stale read**. Five ways to do it:
//!
//! - [`Mode::Causeway`]: write and read through the router (causal reads).
//! - [`Mode::PoolUser`], [`Mode::PoolRouter`]: as a connection pool does,
//!   the write on one router connection and the read on another, hinted
//!   `consistency=user` / `consistency=router`; sessions alternate
//!   between two users (APP, ADMIN), so `user` reads need half the writes
//!   and `router` reads all of them.
//! - [`Mode::NaiveSplit`]: through the router, the read hinted
//!   `consistency=eventual`: a plain read/write split, may be stale.
//! - [`Mode::AllPrimary`]: both directly on the primary (the baseline).
//! - [`Mode::RouterPrimary`]: both through the router, the read hinted to
//!   the primary: what the proxy hop alone costs.
//! - [`Mode::Fence`]: the write directly on the primary, then the GTID fence
//!   an application can build itself: `WAIT_FOR_EXECUTED_GTID_SET` on a
//!   replica before reading there (on the primary when the wait times out).
//!   mysql_async does not ask for `CLIENT_SESSION_TRACK`, so the write's
//!   GTID cannot come from its OK packet: the session reads
//!   `@@global.gtid_executed` after the write (one more statement on the
//!   primary per write, and a set that may hold later writes of others).
//!
//! Statements use the text protocol with literal values (ids and payloads
//! are generated here, never user input).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::{http_get, Topology};

/// The table the workload writes and reads (in the sandbox's database).
pub const TABLE: &str = "rw_hunt";

/// The hint that makes a read a plain read/write split one.
pub const EVENTUAL_HINT: &str = "/* causeway: consistency=eventual */";

/// How long a fenced read waits for its replica, in seconds, before
/// reading on the primary instead.
const FENCE_TIMEOUT_SECS: u32 = 1;

/// Where writes and reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Both through the router: causal reads.
    Causeway,
    /// Through the router on two connections, the read hinted `user`.
    PoolUser,
    /// Through the router on two connections, the read hinted `router`.
    PoolRouter,
    /// Both through the router, the read hinted `consistency=eventual`.
    NaiveSplit,
    /// Both directly on the primary.
    AllPrimary,
    /// Both through the router, the read hinted `primary`.
    RouterPrimary,
    /// Write on the primary, `WAIT_FOR_EXECUTED_GTID_SET` then read on a
    /// replica.
    Fence,
}

impl Mode {
    /// Every mode, in the order tables print them.
    pub const ALL: [Mode; 7] = [
        Mode::Causeway,
        Mode::PoolUser,
        Mode::PoolRouter,
        Mode::NaiveSplit,
        Mode::AllPrimary,
        Mode::RouterPrimary,
        Mode::Fence,
    ];

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Causeway => "causeway",
            Mode::PoolUser => "pool-user",
            Mode::PoolRouter => "pool-router",
            Mode::NaiveSplit => "naive-split",
            Mode::AllPrimary => "all-primary",
            Mode::RouterPrimary => "router-primary",
            Mode::Fence => "gtid-fence",
        }
    }

    /// One line saying what the mode does.
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Causeway => "write + read through the router (causal reads, scope session)",
            Mode::PoolUser => {
                "write on one router connection, read on another of the same user, scope user \
                 (sessions alternate between two users)"
            }
            Mode::PoolRouter => {
                "write on one router connection, read on another of the same user, scope router \
                 (sessions alternate between two users)"
            }
            Mode::NaiveSplit => {
                "through the router, read hinted consistency=eventual (plain read/write split)"
            }
            Mode::AllPrimary => "write + read directly on the primary",
            Mode::RouterPrimary => "write + read through the router, read hinted primary",
            Mode::Fence => {
                "write on the primary, SELECT @@global.gtid_executed there, \
                 WAIT_FOR_EXECUTED_GTID_SET then read on a replica"
            }
        }
    }
}

/// One run of the workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Where statements go.
    pub mode: Mode,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Pause between a write's OK and the read of its row.
    pub think: Duration,
    /// How long the measured part runs.
    pub duration: Duration,
    /// Keep every read as a [`Sample`] in the summary.
    pub keep_samples: bool,
}

/// Counters a run updates as it goes, for progress lines.
#[derive(Debug)]
pub struct Progress {
    /// Reads done.
    pub reads: AtomicU64,
    /// Reads that did not find the row their session had written.
    pub stale: AtomicU64,
    /// Statements that failed.
    pub errors: AtomicU64,
    /// Reads per server, in [`server_names`] order.
    pub served: Vec<AtomicU64>,
    /// When the measured part started (set by [`run`] after the warm-up).
    pub started: std::sync::OnceLock<Instant>,
}

impl Progress {
    /// Zeroed counters for `topo`'s servers.
    pub fn new(topo: &Topology) -> Progress {
        Progress {
            reads: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            served: server_names(topo)
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
            started: std::sync::OnceLock::new(),
        }
    }

    /// Reads served by replicas so far.
    pub fn on_replicas(&self) -> u64 {
        let n = self.served.len();
        self.served[1..n - 1]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// One read.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it started, from the start of the measured part.
    pub at: Duration,
    /// The server that answered, an index into [`server_names`].
    pub server: usize,
    /// From the end of the think time to the row (the fence's wait included).
    pub latency: Duration,
    /// The row was missing.
    pub stale: bool,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The run's settings.
    pub workload: Workload,
    /// Server names, index = [`Sample::server`].
    pub names: Vec<String>,
    /// When the measured part started ([`Sample::at`] counts from here).
    pub started: Instant,
    /// Length of the measured part.
    pub elapsed: Duration,
    /// Reads done.
    pub reads: u64,
    /// Reads that did not find their row.
    pub stale: u64,
    /// Statements that failed (the session reconnected and went on).
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Reads per server, in [`Summary::names`] order.
    pub served: Vec<u64>,
    /// Fenced reads whose wait timed out (read on the primary instead).
    pub fence_timeouts: u64,
    /// Every read latency, sorted.
    pub latencies: Vec<Duration>,
    /// Every write latency, sorted.
    pub write_latencies: Vec<Duration>,
    /// Mean of the think times actually slept.
    pub think_actual: Duration,
    /// Every read, in no particular order, when asked for.
    pub samples: Vec<Sample>,
}

impl Summary {
    /// Share of reads served by replicas, 0..=1.
    pub fn replica_share(&self) -> f64 {
        if self.reads == 0 {
            return 0.0;
        }
        let n = self.served.len();
        self.served[1..n - 1].iter().sum::<u64>() as f64 / self.reads as f64
    }

    /// Reads served by the primary.
    pub fn on_primary(&self) -> u64 {
        self.served[0]
    }

    /// A read latency quantile (nearest rank), zero without reads.
    pub fn read_quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    /// Read latency p50, p95 and p99.
    pub fn read_p50_p95_p99(&self) -> (Duration, Duration, Duration) {
        (
            self.read_quantile(0.50),
            self.read_quantile(0.95),
            self.read_quantile(0.99),
        )
    }

    /// Adds another run of the same workload (rounds of a benchmark).
    pub fn merge(&mut self, other: Summary) {
        let n = (self.reads + other.reads).max(1) as f64;
        self.think_actual = Duration::from_secs_f64(
            (self.think_actual.as_secs_f64() * self.reads as f64
                + other.think_actual.as_secs_f64() * other.reads as f64)
                / n,
        );
        self.elapsed += other.elapsed;
        self.reads += other.reads;
        self.stale += other.stale;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        for (a, b) in self.served.iter_mut().zip(&other.served) {
            *a += b;
        }
        self.fence_timeouts += other.fence_timeouts;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
        self.write_latencies.extend(other.write_latencies);
        self.write_latencies.sort_unstable();
        self.samples.extend(other.samples);
    }
}

/// Nearest-rank quantile of sorted durations; zero when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `primary`, `replica1`, ... and a last `other` (a port the topology does
/// not know).
pub fn server_names(topo: &Topology) -> Vec<String> {
    let mut names = vec!["primary".to_string()];
    names.extend((1..=topo.replica_ports.len()).map(|i| format!("replica{i}")));
    names.push("other".to_string());
    names
}

/// The index in [`server_names`] of the server listening on `port`.
pub fn server_index(topo: &Topology, port: u16) -> usize {
    topo.server_ports()
        .iter()
        .position(|&p| p == port)
        .unwrap_or(topo.replica_ports.len() + 1)
}

/// Client options for `port` as `role`, never moving to the server's Unix
/// socket (which would bypass a router on the same host).
pub fn client_opts(topo: &Topology, port: u16, role: &str) -> Result<Opts> {
    Ok(OptsBuilder::from_opts(topo.opts(port, &topo.user(role)?))
        .prefer_socket(false)
        .into())
}

/// A connection to `port` as `role` (see [`client_opts`]).
pub async fn connect(topo: &Topology, port: u16, role: &str) -> Result<Conn> {
    Conn::new(client_opts(topo, port, role)?)
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port} as {role}"))
}

/// The next row id; raised past the table's largest by [`prepare`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Creates the table on the primary, waits until both replicas have it,
/// and moves the id counter past every id already in it.
pub async fn prepare(topo: &Topology) -> Result<()> {
    let mut p = connect(topo, topo.primary_port, "APP").await?;
    p.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} \
         (id BIGINT PRIMARY KEY, session INT NOT NULL, payload VARCHAR(64) NOT NULL)"
    ))
    .await?;
    let max: Option<u64> = p
        .query_first(format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {TABLE}"))
        .await?;
    NEXT_ID.fetch_max(max.unwrap_or(1), Ordering::Relaxed);
    let executed: String = p
        .query_first("SELECT @@global.gtid_executed")
        .await?
        .context("no gtid_executed")?;
    p.disconnect().await?;
    for &port in &topo.replica_ports {
        let mut r = connect(topo, port, "APP").await?;
        let res: Option<i64> = r
            .query_first(format!(
                "SELECT WAIT_FOR_EXECUTED_GTID_SET('{executed}', 30)"
            ))
            .await?;
        anyhow::ensure!(
            res == Some(0),
            "the replica on :{port} did not catch up with the primary within 30 s"
        );
        r.disconnect().await?;
    }
    Ok(())
}

/// A unique id for a row (also for probes outside the workload).
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// What one session keeps.
struct Session {
    /// Through the router, or to the primary.
    main: Conn,
    /// Fence: a replica (index in the topology's replica ports).
    replica: Option<(usize, Conn)>,
    /// Pool modes: the second router connection, for reads.
    reads: Option<Conn>,
}

impl Mode {
    /// The read and the write go through two connections.
    fn pooled(self) -> bool {
        matches!(self, Mode::PoolUser | Mode::PoolRouter)
    }
}

async fn open_session(topo: &Topology, w: &Workload, s: usize) -> Result<Session> {
    let main_port = match w.mode {
        Mode::Causeway
        | Mode::PoolUser
        | Mode::PoolRouter
        | Mode::NaiveSplit
        | Mode::RouterPrimary => topo.router_port()?,
        Mode::AllPrimary | Mode::Fence => topo.primary_port,
    };
    let role = if w.mode.pooled() && s % 2 == 1 {
        "ADMIN"
    } else {
        "APP"
    };
    let main = connect(topo, main_port, role).await?;
    let replica = if w.mode == Mode::Fence {
        let r = s % topo.replica_ports.len();
        Some((r, connect(topo, topo.replica_ports[r], "APP").await?))
    } else {
        None
    };
    let reads = if w.mode.pooled() {
        Some(connect(topo, main_port, role).await?)
    } else {
        None
    };
    Ok(Session {
        main,
        replica,
        reads,
    })
}

/// What one iteration saw.
struct Iteration {
    write: Duration,
    think: Duration,
    read_at: Instant,
    read: Duration,
    server: usize,
    stale: bool,
    fence_timeout: bool,
}

async fn iteration(topo: &Topology, w: &Workload, s: usize, c: &mut Session) -> Result<Iteration> {
    let id = next_id();
    let payload = format!("s{s}-{id}");
    let insert =
        format!("INSERT INTO {TABLE} (id, session, payload) VALUES ({id}, {s}, '{payload}')");
    let t0 = Instant::now();
    c.main.query_drop(&insert).await?;
    let gtid: Option<String> = if w.mode == Mode::Fence {
        c.main.query_first("SELECT @@global.gtid_executed").await?
    } else {
        None
    };
    let write = t0.elapsed();
    let t1 = Instant::now();
    if !w.think.is_zero() {
        // The OS timer, not tokio's (which rounds up to whole milliseconds:
        // 1 ms would sleep about 2).
        let think = w.think;
        tokio::task::spawn_blocking(move || std::thread::sleep(think)).await?;
    }
    let read_at = Instant::now();
    let think = read_at - t1;
    let select =
        |hint: &str| format!("SELECT {hint}@@port, (SELECT payload FROM {TABLE} WHERE id = {id})");
    let mut fence_timeout = false;
    let row: Option<(u16, Option<String>)> = match w.mode {
        Mode::Causeway | Mode::AllPrimary => c.main.query_first(select("")).await?,
        Mode::PoolUser | Mode::PoolRouter => {
            let hint = if w.mode == Mode::PoolUser {
                "/* causeway: consistency=user */ "
            } else {
                "/* causeway: consistency=router */ "
            };
            let reads = c.reads.as_mut().context("no reading connection")?;
            reads.query_first(select(hint)).await?
        }
        Mode::NaiveSplit => {
            c.main
                .query_first(select(&format!("{EVENTUAL_HINT} ")))
                .await?
        }
        Mode::RouterPrimary => {
            c.main
                .query_first(select("/* causeway: primary */ "))
                .await?
        }
        Mode::Fence => {
            let gtid = gtid.context("no gtid_executed")?;
            let (_, r) = c.replica.as_mut().context("no replica connection")?;
            let waited: Option<Option<i64>> = r
                .query_first(format!(
                    "SELECT WAIT_FOR_EXECUTED_GTID_SET('{gtid}', {FENCE_TIMEOUT_SECS})"
                ))
                .await?;
            if waited.flatten() == Some(0) {
                r.query_first(select("")).await?
            } else {
                fence_timeout = true;
                c.main.query_first(select("")).await?
            }
        }
    };
    let read = read_at.elapsed();
    let (port, got) = row.context("the read returned no row")?;
    Ok(Iteration {
        write,
        think,
        read_at,
        read,
        server: server_index(topo, port),
        stale: got.as_deref() != Some(payload.as_str()),
        fence_timeout,
    })
}

/// What one session measured.
#[derive(Default)]
struct SessionResult {
    reads: u64,
    stale: u64,
    errors: u64,
    first_error: Option<String>,
    served: Vec<u64>,
    fence_timeouts: u64,
    latencies: Vec<Duration>,
    write_latencies: Vec<Duration>,
    think_total: Duration,
    samples: Vec<Sample>,
}

impl SessionResult {
    /// This session's share of a run's [`Summary`] (to [`Summary::merge`]).
    fn into_summary(self, w: &Workload, names: &[String], started: Instant) -> Summary {
        let think_actual = match u32::try_from(self.reads) {
            Ok(0) => Duration::ZERO,
            Ok(n) => self.think_total / n,
            Err(_) => self.think_total / u32::MAX,
        };
        Summary {
            workload: w.clone(),
            names: names.to_vec(),
            started,
            elapsed: Duration::ZERO,
            reads: self.reads,
            stale: self.stale,
            errors: self.errors,
            first_error: self.first_error,
            served: self.served,
            fence_timeouts: self.fence_timeouts,
            latencies: self.latencies,
            write_latencies: self.write_latencies,
            think_actual,
            samples: self.samples,
        }
    }
}

/// Runs `w` against the sandbox `topo` ([`prepare`] first). Progress, when
/// given, is updated after every read.
pub async fn run(
    topo: &Topology,
    w: &Workload,
    progress: Option<Arc<Progress>>,
) -> Result<Summary> {
    let names = server_names(topo);
    // Connect and warm up (two unmeasured iterations per session: the
    // router's backend connections, TLS, caches), then measure together.
    let mut warm = Vec::new();
    for s in 0..w.sessions {
        let (topo, w) = (topo.clone(), w.clone());
        warm.push(tokio::spawn(async move {
            let mut c = open_session(&topo, &w, s).await?;
            for _ in 0..2 {
                iteration(&topo, &w, s, &mut c).await?;
            }
            anyhow::Ok(c)
        }));
    }
    let mut sessions = Vec::new();
    for t in warm {
        sessions.push(t.await??);
    }
    let start = Instant::now();
    if let Some(p) = &progress {
        let _ = p.started.set(start);
    }
    let deadline = start + w.duration;
    let mut tasks = Vec::new();
    for (s, mut c) in sessions.into_iter().enumerate() {
        let (topo, w, progress) = (topo.clone(), w.clone(), progress.clone());
        let n = names.len();
        tasks.push(tokio::spawn(async move {
            let mut r = SessionResult {
                served: vec![0; n],
                ..SessionResult::default()
            };
            while Instant::now() < deadline {
                match iteration(&topo, &w, s, &mut c).await {
                    Ok(it) => {
                        r.reads += 1;
                        r.served[it.server] += 1;
                        r.stale += u64::from(it.stale);
                        r.fence_timeouts += u64::from(it.fence_timeout);
                        r.latencies.push(it.read);
                        r.write_latencies.push(it.write);
                        r.think_total += it.think;
                        if w.keep_samples {
                            r.samples.push(Sample {
                                at: it.read_at.saturating_duration_since(start),
                                server: it.server,
                                latency: it.read,
                                stale: it.stale,
                            });
                        }
                        if let Some(p) = &progress {
                            p.reads.fetch_add(1, Ordering::Relaxed);
                            p.served[it.server].fetch_add(1, Ordering::Relaxed);
                            if it.stale {
                                p.stale.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) => {
                        r.errors += 1;
                        if r.first_error.is_none() {
                            r.first_error = Some(format!("session {s}: {e:#}"));
                        }
                        if let Some(p) = &progress {
                            p.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        // The connection may be gone: start over with new
                        // ones, without spinning on a dead server.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if let Ok(fresh) = open_session(&topo, &w, s).await {
                            c = fresh;
                        }
                    }
                }
            }
            let _ = c.main.disconnect().await;
            if let Some((_, r)) = c.replica {
                let _ = r.disconnect().await;
            }
            if let Some(r) = c.reads {
                let _ = r.disconnect().await;
            }
            r
        }));
    }
    let part = |r: SessionResult| r.into_summary(w, &names, start);
    let mut sum = part(SessionResult {
        served: vec![0; names.len()],
        ..SessionResult::default()
    });
    for t in tasks {
        sum.merge(part(t.await?));
    }
    sum.elapsed = start.elapsed();
    Ok(sum)
}

/// A Prometheus text scrape: every sample line, `name{labels}` -> value.
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub std::collections::BTreeMap<String, f64>);

impl Scrape {
    /// Scrapes `url` (e.g. `CAUSEWAY_METRICS_URL`).
    pub fn get(url: &str) -> Result<Scrape> {
        Ok(Scrape::parse(&http_get(url)?))
    }

    /// Parses Prometheus text.
    pub fn parse(text: &str) -> Scrape {
        Scrape(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.rsplit_once(' '))
                .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
                .collect(),
        )
    }

    /// `self - before`, series by series (series new since count whole).
    pub fn since(&self, before: &Scrape) -> Scrape {
        Scrape(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// The sum of every series named `name` whose labels include each
    /// `key="value"` of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| {
                let (n, l) = k.split_once('{').unwrap_or((k.as_str(), ""));
                n == name
                    && labels
                        .iter()
                        .all(|(lk, lv)| l.contains(&format!("{lk}=\"{lv}\"")))
            })
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }

    /// Every series named `name`: (labels, value).
    pub fn series(&self, name: &str) -> Vec<(String, f64)> {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let (n, l) = k.split_once('{').unwrap_or((k.as_str(), "}"));
                (n == name).then(|| (l.trim_end_matches('}').to_string(), *v))
            })
            .collect()
    }
}

/// Milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}
