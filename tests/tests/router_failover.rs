//! A primary change under load, through the router, on a sandbox of its own
//! (`Topology::isolated("failover")`), one phase after another:
//!
//! 1. planned switchover (`scripts/sandbox switchover replica1`: the primary
//!    set super_read_only, replica1 promoted): no client sees an error;
//! 2. `kill -9` of the writer, replica2 promoted a second later
//!    (`scripts/sandbox failover replica2`): only statements in flight at
//!    the kill fail, at most one per session, each saying its outcome is
//!    unknown;
//! 3. the killed server comes back writable: it is fenced (no statement
//!    goes there) and writes keep flowing to the new writer.
//!
//! Throughout, 8 sessions write rows and read their own latest row back
//! (causal reads, `session` scope): every acknowledged row must be on the
//! writer afterwards, and no read may miss its session's latest row.
//! In phases 1 and 2 a second router with the protection off (a failover
//! window of 0 s: statements fail at once while there is no writer) runs
//! the same load through the same event and must see the errors the first
//! one hides, or the test could not tell.
//! The sandbox is taken down at the end: its topology is no longer the one
//! `scripts/sandbox up` makes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_common::metrics_http::Render;
use causeway_e2e::router::{opts, start_router, TestRouter};
use causeway_e2e::Topology;
use causeway_router::causal::Scope;
use causeway_router::scrape::Live;
use mysql_async::prelude::*;
use mysql_async::Conn;

const SESSIONS: u32 = 8;
/// Load before and after each event.
const SETTLE: Duration = Duration::from_millis(1500);
/// Deadline of each wait: a guard against hanging, not a speed assertion.
const WAIT: Duration = Duration::from_secs(60);

/// What the sessions saw.
#[derive(Debug, Default)]
struct Tally {
    /// Rows whose INSERT was acknowledged (session, n).
    acked: Vec<(u32, u32)>,
    /// When each acknowledged write finished.
    acked_at: Vec<Instant>,
    /// Errors: when, which session, what.
    errors: Vec<(Instant, u32, String)>,
    reads: u64,
    stale: u64,
}

struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl Load {
    /// Sessions `first_s..first_s + SESSIONS` through `router`, writing
    /// rows numbered from `first_n + 1`.
    fn start(topo: &Topology, router: &TestRouter, first_s: u32, first_n: u32) -> Result<Load> {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut tasks = Vec::new();
        for s in first_s..first_s + SESSIONS {
            let o = opts(topo, router.port, "APP", false)?;
            let (stop, tally) = (stop.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = Conn::new(o).await?;
                let mut n = first_n;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let insert = format!("INSERT INTO causeway.failover VALUES ({s}, {n})");
                    match c.query_drop(&insert).await {
                        Ok(()) => {
                            let mut t = tally.lock().unwrap();
                            t.acked.push((s, n));
                            t.acked_at.push(Instant::now());
                        }
                        Err(e) => {
                            tally
                                .lock()
                                .unwrap()
                                .errors
                                .push((Instant::now(), s, e.to_string()));
                            continue;
                        }
                    }
                    let read = format!("SELECT MAX(n) FROM causeway.failover WHERE s = {s}");
                    match c.query_first::<Option<u32>, _>(&read).await {
                        Ok(got) => {
                            let mut t = tally.lock().unwrap();
                            t.reads += 1;
                            if got.flatten() < Some(n) {
                                t.stale += 1;
                            }
                        }
                        Err(e) => {
                            tally
                                .lock()
                                .unwrap()
                                .errors
                                .push((Instant::now(), s, e.to_string()))
                        }
                    }
                }
                c.disconnect().await?;
                Ok(())
            }));
        }
        Ok(Load { stop, tally, tasks })
    }

    async fn finish(self) -> Result<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await??;
        }
        Ok(std::mem::take(&mut *self.tally.lock().unwrap()))
    }
}

async fn run_sql(topo: &Topology, port: u16, sql: &str) -> Result<()> {
    let mut c = Conn::new(opts(topo, port, "ADMIN", false)?).await?;
    c.query_drop(sql)
        .await
        .with_context(|| format!("{sql} on {port}"))?;
    c.disconnect().await?;
    Ok(())
}

/// The rows on the server at `port`.
async fn rows_on(topo: &Topology, port: u16) -> Result<HashSet<(u32, u32)>> {
    let mut c = Conn::new(opts(topo, port, "ADMIN", false)?).await?;
    let rows: Vec<(u32, u32)> = c.query("SELECT s, n FROM causeway.failover").await?;
    c.disconnect().await?;
    Ok(rows.into_iter().collect())
}

/// Every acknowledged row is on the server at `port`.
async fn none_lost(topo: &Topology, port: u16, t: &Tally, what: &str) -> Result<()> {
    let rows = rows_on(topo, port).await?;
    let lost: Vec<_> = t.acked.iter().filter(|r| !rows.contains(r)).collect();
    ensure!(
        lost.is_empty(),
        "{what}: {} acknowledged writes are not on the writer: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    Ok(())
}

/// A fresh sandbox when the isolated one was left switched over.
async fn pristine() -> Result<Topology> {
    let topo = Topology::isolated("failover")?;
    let writable = |port| {
        let topo = &topo;
        async move {
            let mut c = Conn::new(opts(topo, port, "ADMIN", false)?).await?;
            let ro: Option<u8> = c.query_first("SELECT @@global.read_only").await?;
            c.disconnect().await?;
            anyhow::Ok(ro == Some(0))
        }
    };
    let mut ok = writable(topo.primary_port).await.unwrap_or(false);
    for &p in &topo.replica_ports {
        ok &= !writable(p).await.unwrap_or(true);
    }
    if ok {
        return Ok(topo);
    }
    topo.sandbox(&["down"])?;
    Topology::isolated("failover")
}

fn report(what: &str, t: &Tally, event_done: Instant) {
    let before = t.acked_at.iter().filter(|&&a| a < event_done).count();
    let resumed = t
        .acked_at
        .iter()
        .filter(|&&a| a >= event_done)
        .min()
        .map(|a| a.duration_since(event_done));
    eprintln!(
        "{what}: {} writes acknowledged ({before} before the promotion), {} reads, {} stale, \
         {} errors, first write acknowledged {:?} after the promotion; errors: {:?}",
        t.acked.len(),
        t.reads,
        t.stale,
        t.errors.len(),
        resumed,
        t.errors.iter().map(|(_, s, e)| (s, e)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_change_is_invisible_to_clients() -> Result<()> {
    let topo = pristine().await?;
    run_sql(
        &topo,
        topo.primary_port,
        "CREATE DATABASE IF NOT EXISTS causeway",
    )
    .await?;
    run_sql(
        &topo,
        topo.primary_port,
        "DROP TABLE IF EXISTS causeway.failover",
    )
    .await?;
    run_sql(
        &topo,
        topo.primary_port,
        "CREATE TABLE causeway.failover (s INT, n INT, PRIMARY KEY (s, n))",
    )
    .await?;
    let router = start_router(topo.causal_config(Scope::Session)?).await?;
    let mut off = topo.causal_config(Scope::Session)?;
    off.hostgroups[0].failover.window = Duration::ZERO;
    let unprotected = start_router(off).await?;
    let [r1, r2] = topo.replica_ports[..] else {
        anyhow::bail!("two replicas expected");
    };

    // 1. Planned switchover.
    let load = Load::start(&topo, &router, 0, 0)?;
    let counter = Load::start(&topo, &unprotected, 100, 0)?;
    tokio::time::sleep(SETTLE).await;
    topo.sandbox(&["switchover", "replica1"])?;
    let promoted = Instant::now();
    tokio::time::sleep(SETTLE).await;
    let t = load.finish().await?;
    let c = counter.finish().await?;
    report("switchover", &t, promoted);
    report("switchover, window 0", &c, promoted);
    ensure!(
        !c.errors.is_empty(),
        "switchover: the router without a window saw no error either; the test cannot tell"
    );
    none_lost(&topo, r1, &c, "switchover, window 0").await?;
    ensure!(
        t.errors.is_empty(),
        "switchover: client errors {:?}",
        t.errors
    );
    assert_eq!(t.stale, 0, "switchover: stale reads");
    ensure!(
        t.acked_at.iter().any(|&a| a > promoted),
        "switchover: no write went through after the promotion"
    );
    none_lost(&topo, r1, &t, "switchover").await?;

    // 2. kill -9 of the writer, replica2 promoted a second later.
    let load = Load::start(&topo, &router, 0, 100_000)?;
    let counter = Load::start(&topo, &unprotected, 100, 100_000)?;
    tokio::time::sleep(SETTLE).await;
    let killed = Instant::now();
    topo.sandbox(&["failover", "replica2"])?;
    let promoted = Instant::now();
    tokio::time::sleep(SETTLE).await;
    let t = load.finish().await?;
    let c = counter.finish().await?;
    report("kill -9", &t, promoted);
    report("kill -9, window 0", &c, promoted);
    ensure!(
        c.errors.len() > SESSIONS as usize,
        "kill -9: the router without a window saw no more errors than statements in flight; \
         the test cannot tell"
    );
    let mut per_session = std::collections::HashMap::new();
    for (at, s, e) in &t.errors {
        ensure!(
            e.contains("2013") && e.contains("unknown"),
            "kill -9: an error other than 'outcome unknown': {e}"
        );
        ensure!(*at >= killed, "kill -9: an error before the kill: {e}");
        *per_session.entry(*s).or_insert(0) += 1;
    }
    ensure!(
        per_session.values().all(|&n| n <= 1),
        "kill -9: a session saw more than one error: {:?}",
        t.errors
    );
    assert_eq!(t.stale, 0, "kill -9: stale reads");
    ensure!(
        t.acked_at.iter().any(|&a| a > promoted),
        "kill -9: no write went through after the promotion"
    );
    none_lost(&topo, r2, &t, "kill -9").await?;

    // 3. The killed server comes back writable: fenced.
    let load = Load::start(&topo, &router, 0, 200_000)?;
    topo.sandbox(&["start", "replica1"])?;
    run_sql(
        &topo,
        r1,
        "SET GLOBAL super_read_only = OFF; SET GLOBAL read_only = OFF",
    )
    .await?;
    let back = Instant::now();
    let fenced_seen = async {
        let deadline = Instant::now() + WAIT;
        loop {
            let cur = router.shared.current();
            let r1_id = cur.rt.server_named("replica1").context("replica1")?;
            if cur.members.fenced.contains(&r1_id) {
                return anyhow::Ok(());
            }
            ensure!(Instant::now() < deadline, "replica1 was never fenced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    fenced_seen.await?;
    let rows_then = rows_on(&topo, r1).await?.len();
    tokio::time::sleep(SETTLE).await;
    let t = load.finish().await?;
    report("back writable", &t, back);
    ensure!(
        t.errors.is_empty(),
        "back writable: client errors {:?}",
        t.errors
    );
    assert_eq!(t.stale, 0, "back writable: stale reads");
    ensure!(
        t.acked_at.iter().filter(|&&a| a > back).count() > SESSIONS as usize,
        "back writable: writes stopped"
    );
    none_lost(&topo, r2, &t, "back writable").await?;
    assert_eq!(
        rows_on(&topo, r1).await?.len(),
        rows_then,
        "a statement reached the fenced server"
    );
    let text = Live(router.shared.clone()).render();
    for line in [
        "causeway_router_server_fenced{server=\"replica1\"} 1",
        "causeway_router_server_writer{server=\"replica2\"} 1",
        "causeway_router_server_fenced{server=\"replica2\"} 0",
    ] {
        ensure!(text.contains(line), "the metrics lack {line}:\n{text}");
    }

    topo.sandbox(&["down"])?;
    Ok(())
}
