//! A primary change under load, through the router, on a sandbox of its own
//! (`Topology::isolated("failover")`), one phase after another:
//!
//! 0. a replica whose applier is stopped is promoted (the primary demoted,
//!    the replica made writable): it lacks acknowledged writes, so writes
//!    wait, the router reports exactly the GTIDs it lacks (as MySQL's
//!    `GTID_SUBTRACT` says), and they go on once its applier caught up;
//! 1. planned switchover (`scripts/sandbox switchover replica2`: the writer
//!    set super_read_only, replica2 promoted): no client sees an error;
//! 2. `kill -9` of the writer, the first primary promoted a second later
//!    (`scripts/sandbox failover primary`): only statements in flight at
//!    the kill fail, at most one per session, each saying its outcome is
//!    unknown;
//! 3. the killed server comes back writable: it is fenced (no statement
//!    goes there) and writes keep flowing to the new writer;
//!    then a replica stalls (SIGSTOP) under a read: the read is released
//!    when the monitor finds it unreachable, and runs again elsewhere;
//! 4. a replica promoted while the writer is still writable: the old writer
//!    is fenced, and a session with a transaction open there ends (2013)
//!    instead of committing on it.
//!
//! Replication is semi-synchronous for this test (AFTER_SYNC, both
//! replicas), as a deployment that wants no acknowledged write lost at a
//! `kill -9` runs it.
//!
//! Throughout, 8 sessions write rows and read their own latest row back
//! (causal reads, `session` scope; half with prepared statements): every acknowledged row must be on the
//! writer afterwards, and no read may miss its session's latest row.
//! A second router with the protection off (a failover window of 0 s:
//! statements fail at once while there is no writer; a writer lacking
//! acknowledged GTIDs taken at once, `missing_acknowledged = "accept"`)
//! runs the same load through the same events: it must see the errors the
//! first one hides, and take the lacking replica (reporting exactly what it
//! lacks), or the test could not tell.
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
use causeway_gtid::GtidSet;
use causeway_router::causal::Scope;
use causeway_router::failover::MissingAcknowledged;
use causeway_router::ids::{GroupId, ServerId};
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
                    // Odd sessions use prepared statements (the binary
                    // protocol), even ones text statements.
                    let wrote = if s % 2 == 1 {
                        c.exec_drop("INSERT INTO causeway.failover VALUES (?, ?)", (s, n))
                            .await
                    } else {
                        let insert = format!("INSERT INTO causeway.failover VALUES ({s}, {n})");
                        c.query_drop(&insert).await
                    };
                    match wrote {
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
                    let got = if s % 2 == 1 {
                        c.exec_first::<Option<u32>, _, _>(
                            "SELECT MAX(n) FROM causeway.failover WHERE s = ?",
                            (s,),
                        )
                        .await
                    } else {
                        let read = format!("SELECT MAX(n) FROM causeway.failover WHERE s = {s}");
                        c.query_first::<Option<u32>, _>(&read).await
                    };
                    match got {
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

/// The promotion a switchover ends with, done by hand: `to` stops
/// replicating, and the servers at `others` replicate from it.
async fn repoint(topo: &Topology, to: u16, others: &[u16]) -> Result<()> {
    run_sql(topo, to, "STOP REPLICA; RESET REPLICA ALL").await?;
    let password = topo.var("CAUSEWAY_REPL_PASSWORD")?;
    for &p in others {
        run_sql(
            topo,
            p,
            &format!(
                "SET GLOBAL super_read_only = ON; STOP REPLICA; \
                 CHANGE REPLICATION SOURCE TO SOURCE_HOST = '127.0.0.1', SOURCE_PORT = {to}, \
                 SOURCE_USER = 'causeway_repl', SOURCE_PASSWORD = '{password}', \
                 SOURCE_AUTO_POSITION = 1, SOURCE_SSL = 1, GET_SOURCE_PUBLIC_KEY = 1, \
                 SOURCE_CONNECT_RETRY = 1, SOURCE_RETRY_COUNT = 86400; START REPLICA"
            ),
        )
        .await?;
    }
    Ok(())
}

/// What the server at `port` lacks of `set`, as MySQL computes it.
async fn lacks(topo: &Topology, port: u16, set: &GtidSet) -> Result<GtidSet> {
    let mut c = Conn::new(opts(topo, port, "ADMIN", false)?).await?;
    let gap: Option<String> = c
        .query_first(format!(
            "SELECT GTID_SUBTRACT('{set}', @@global.gtid_executed)"
        ))
        .await?;
    c.disconnect().await?;
    Ok(GtidSet::parse(&gap.unwrap_or_default())?)
}

/// Waits until `ok` holds for `router`'s membership.
async fn until_members(
    router: &TestRouter,
    what: &str,
    ok: impl Fn(&causeway_router::shared::Current) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let cur = router.shared.current();
        if ok(&cur) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "never {what}: {:?}", cur.members);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn server(cur: &causeway_router::shared::Current, name: &str) -> ServerId {
    cur.rt.server_named(name).expect("a configured server")
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
    let p0 = topo.primary_port;
    semi_sync(&topo, 2).await?;
    // The router fences by setting super_read_only, as the monitor's user.
    let monitor = topo.user("MONITOR")?.user;
    run_sql(
        &topo,
        p0,
        &format!("GRANT SYSTEM_VARIABLES_ADMIN ON *.* TO '{monitor}'@'%'"),
    )
    .await?;
    let mut cfg = topo.causal_config(Scope::Session)?;
    cfg.hostgroups[0].failover.fence_super_read_only = true;
    let router = start_router(cfg).await?;
    let mut off = topo.causal_config(Scope::Session)?;
    off.hostgroups[0].failover.window = Duration::ZERO;
    off.hostgroups[0].failover.missing_acknowledged = MissingAcknowledged::Accept;
    let unprotected = start_router(off).await?;
    let [r1, r2] = topo.replica_ports[..] else {
        anyhow::bail!("two replicas expected");
    };
    let acked = |r: &TestRouter| {
        r.shared
            .writers
            .acknowledged()
            .remove("primary")
            .unwrap_or_default()
    };

    // 0. A promoted replica that lacks acknowledged writes: its applier is
    // stopped while the primary takes writes, then the primary is demoted
    // and the replica made writable. Writes wait until it applied them.
    let load = Load::start(&topo, &router, 0, 0)?;
    let counter = Load::start(&topo, &unprotected, 100, 0)?;
    tokio::time::sleep(SETTLE).await;
    run_sql(&topo, r1, "STOP REPLICA SQL_THREAD").await?;
    tokio::time::sleep(SETTLE).await;
    run_sql(&topo, p0, "SET GLOBAL super_read_only = ON").await?;
    run_sql(
        &topo,
        r1,
        "SET GLOBAL super_read_only = OFF; SET GLOBAL read_only = OFF",
    )
    .await?;
    // What each router says replica1 lacks is exactly what MySQL says it
    // lacks of what that router acknowledged (both settle once the writes
    // in flight at the demotion got their answers).
    let deadline = Instant::now() + WAIT;
    let gap = loop {
        let gap = lacks(&topo, r1, &acked(&router)).await?;
        let cur = router.shared.current();
        let reported: Vec<_> = cur
            .members
            .catching_up
            .iter()
            .filter(|(_, s, _)| *s == server(&cur, "replica1"))
            .map(|(_, _, g)| g.clone())
            .collect();
        if reported == [gap.clone()] {
            break gap;
        }
        ensure!(
            Instant::now() < deadline,
            "the router reports replica1 lacks {reported:?}, MySQL says {gap}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(
        !gap.is_empty(),
        "replica1 lacks nothing: the phase proves nothing"
    );
    until_members(&unprotected, "replica1 taken by policy", |cur| {
        cur.members.writer[GroupId::new(0)] == Some(server(cur, "replica1"))
    })
    .await?;
    let counter_gap = lacks(&topo, r1, &acked(&unprotected)).await?;
    let lost = unprotected
        .shared
        .writers
        .lost()
        .remove("primary")
        .unwrap_or_default();
    ensure!(
        !lost.is_empty() && lost.is_subset(&counter_gap),
        "missing_acknowledged = accept reported {lost} lost, MySQL says it lacks {counter_gap}"
    );
    tokio::time::sleep(SETTLE).await;
    let cur = router.shared.current();
    ensure!(
        cur.members.writer[GroupId::new(0)].is_none(),
        "the protected router took replica1 as the writer while it lacked {gap}"
    );
    run_sql(&topo, r1, "START REPLICA SQL_THREAD").await?;
    let applied = Instant::now();
    until_members(&router, "replica1 elected", |cur| {
        cur.members.writer[GroupId::new(0)] == Some(server(cur, "replica1"))
    })
    .await?;
    tokio::time::sleep(SETTLE).await;
    let t = load.finish().await?;
    let c = counter.finish().await?;
    report("promoted while lacking", &t, applied);
    report("promoted while lacking, accept and window 0", &c, applied);
    ensure!(t.errors.is_empty(), "lacking: client errors {:?}", t.errors);
    assert_eq!(t.stale, 0, "lacking: stale reads");
    none_lost(&topo, r1, &t, "lacking").await?;
    repoint(&topo, r1, &[p0, r2]).await?;

    // 1. Planned switchover to replica2.
    let writes = |group: &str| router.shared.metrics.route_counter("write", group).get();
    let (writer_writes, reader_writes) = (writes("primary"), writes("replicas"));
    let load = Load::start(&topo, &router, 0, 100_000)?;
    let counter = Load::start(&topo, &unprotected, 100, 100_000)?;
    tokio::time::sleep(SETTLE).await;
    topo.sandbox(&["switchover", "replica2"])?;
    let promoted = Instant::now();
    tokio::time::sleep(SETTLE).await;
    let t = load.finish().await?;
    let c = counter.finish().await?;
    report("switchover", &t, promoted);
    report("switchover, window 0", &c, promoted);
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
    none_lost(&topo, r2, &t, "switchover").await?;
    // Metrics label by the role in force: replica2's writes count for the
    // writer group, none for the group it is configured in.
    ensure!(
        writes("primary") > writer_writes && writes("replicas") == reader_writes,
        "writes by hostgroup: primary {writer_writes} -> {}, replicas {reader_writes} -> {}",
        writes("primary"),
        writes("replicas")
    );
    ensure!(
        !c.errors.is_empty(),
        "switchover: the router without a window saw no error either; the test cannot tell"
    );

    // 2. kill -9 of the writer, the first primary promoted a second later.
    let load = Load::start(&topo, &router, 0, 200_000)?;
    let counter = Load::start(&topo, &unprotected, 100, 200_000)?;
    tokio::time::sleep(SETTLE).await;
    let killed = Instant::now();
    topo.sandbox(&["failover", "primary"])?;
    let promoted = Instant::now();
    // One replica is left: the primary waits for one acknowledgement.
    run_sql(
        &topo,
        p0,
        "SET GLOBAL rpl_semi_sync_source_wait_for_replica_count = 1",
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    let t = load.finish().await?;
    let c = counter.finish().await?;
    report("kill -9", &t, promoted);
    report("kill -9, window 0", &c, promoted);
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
    none_lost(&topo, p0, &t, "kill -9").await?;
    ensure!(
        c.errors.len() > SESSIONS as usize,
        "kill -9: the router without a window saw no more errors than statements in flight; \
         the test cannot tell"
    );

    // 3. The killed server comes back writable: fenced.
    let load = Load::start(&topo, &router, 0, 300_000)?;
    topo.sandbox(&["start", "replica2"])?;
    run_sql(
        &topo,
        r2,
        "SET GLOBAL super_read_only = OFF; SET GLOBAL read_only = OFF",
    )
    .await?;
    let back = Instant::now();
    until_members(&router, "replica2 fenced", |cur| {
        cur.members.fenced.contains(&server(cur, "replica2"))
    })
    .await?;
    let rows_then = rows_on(&topo, r2).await?.len();
    tokio::time::sleep(SETTLE).await;
    let t = load.finish().await?;
    report("back writable", &t, back);
    // The router made it super_read_only; it stays fenced (it replicates
    // from nobody: it missed the writer's writes).
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = Conn::new(opts(&topo, r2, "ADMIN", false)?).await?;
        let sro: Option<u8> = c.query_first("SELECT @@global.super_read_only").await?;
        c.disconnect().await?;
        if sro == Some(1) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the fenced replica2 was never made super_read_only"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until_members(&router, "replica2 still fenced once read-only", |cur| {
        cur.members.fenced.contains(&server(cur, "replica2"))
    })
    .await?;
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
    none_lost(&topo, p0, &t, "back writable").await?;
    assert_eq!(
        rows_on(&topo, r2).await?.len(),
        rows_then,
        "a statement reached the fenced server"
    );
    let text = Live(router.shared.clone()).render();
    for line in [
        "causeway_router_server_fenced{server=\"replica2\"} 1",
        "causeway_router_server_writer{server=\"primary\"} 1",
        "causeway_router_server_fenced{server=\"primary\"} 0",
    ] {
        ensure!(text.contains(line), "the metrics lack {line}:\n{text}");
    }

    // 3b. A replica that stalls (SIGSTOP) under a read: once the monitor
    // finds it unreachable, the read waiting on it is released and runs
    // again elsewhere (here the writer: replica1 is the only reader left).
    // One text read, one prepared.
    let mut reader = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    let mut prepared = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    const TEXT: &str = "/* causeway: consistency=eventual */ SELECT @@port";
    const BINARY: &str = "/* causeway: consistency=eventual */ SELECT @@port + ?";
    for _ in 0..4 {
        // Pooled connections to replica1 to be caught by the stall.
        reader.query_drop(TEXT).await?;
        prepared.exec_drop(BINARY, (0,)).await?;
    }
    let retries_before = router.shared.metrics.read_retries.get();
    topo.sandbox(&["pause", "replica1"])?;
    let paused = Instant::now();
    let text = tokio::spawn(async move {
        let port = tokio::time::timeout(WAIT, reader.query_first::<u16, _>(TEXT)).await;
        (reader, port, paused.elapsed())
    });
    let binary = tokio::spawn(async move {
        let port = tokio::time::timeout(WAIT, prepared.exec_first::<u16, _, _>(BINARY, (0,))).await;
        (prepared, port, paused.elapsed())
    });
    let (text, binary) = (text.await, binary.await);
    // What the router knew of replica1 when the reads ended (for a failure).
    let health = format!("{:?}", router.shared.monitor.snapshot().get("replica1"));
    topo.sandbox(&["resume", "replica1"])?;
    for (what, joined) in [("text", text), ("prepared", binary)] {
        let (conn, port, took) = joined?;
        let port = port
            .with_context(|| format!("the {what} read on the stalled replica never ended"))??
            .context("no row")?;
        ensure!(
            port == p0,
            "the {what} read was answered by {port} after {took:?}, not run again on the \
             writer {p0}; replica1 then: {health}; read retries {} (before: {retries_before})",
            router.shared.metrics.read_retries.get()
        );
        conn.disconnect().await?;
    }
    ensure!(
        router.shared.metrics.read_retries.get() >= retries_before + 2,
        "the two reads did not both run again: they never reached the stalled replica"
    );

    // 4. A promotion while the writer is still writable (done in the wrong
    // order): the old writer is fenced at once, and a session whose
    // transaction was open there ends with 2013 instead of committing it.
    let mut txn = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    txn.query_drop("BEGIN").await?;
    txn.query_drop("INSERT INTO causeway.failover VALUES (999, 1)")
        .await?;
    run_sql(
        &topo,
        r1,
        "STOP REPLICA; RESET REPLICA ALL; \
         SET GLOBAL super_read_only = OFF; SET GLOBAL read_only = OFF",
    )
    .await?;
    until_members(&router, "the first primary fenced", |cur| {
        cur.members.fenced.contains(&server(cur, "primary"))
            && cur.members.writer[GroupId::new(0)] == Some(server(cur, "replica1"))
    })
    .await?;
    let err = txn
        .query_drop("INSERT INTO causeway.failover VALUES (999, 2)")
        .await
        .expect_err("a statement of a transaction on a fenced server");
    let text = err.to_string();
    ensure!(
        text.contains("2013") && text.contains("fenced"),
        "the transaction on the fenced server got {text}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = rows_on(&topo, p0).await?;
        if !rows.iter().any(|(s, _)| *s == 999) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the fenced server kept the abandoned transaction's row"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    topo.sandbox(&["down"])?;
    Ok(())
}

/// Semi-synchronous replication (AFTER_SYNC) on every server, the source
/// waiting for `count` replicas: a commit is acknowledged to the client only
/// once the replicas have it in their relay logs, so a promoted replica can
/// hold everything acknowledged even after a `kill -9` (asynchronous
/// replication may lose the last commits, and the router would then rightly
/// keep writes waiting).
async fn semi_sync(topo: &Topology, count: u32) -> Result<()> {
    let mut ports = vec![topo.primary_port];
    ports.extend(&topo.replica_ports);
    for &p in &ports {
        let mut c = Conn::new(opts(topo, p, "ADMIN", false)?).await?;
        let have: Vec<String> = c
            .query(
                "SELECT PLUGIN_NAME FROM information_schema.plugins \
                 WHERE PLUGIN_NAME LIKE 'rpl_semi_sync%'",
            )
            .await?;
        // INSTALL PLUGIN writes mysql.plugin: not under super_read_only
        // (read_only alone stays on, and stops no administrator).
        let sro: Option<u8> = c.query_first("SELECT @@global.super_read_only").await?;
        c.query_drop("SET GLOBAL super_read_only = OFF").await?;
        for (name, lib) in [
            ("rpl_semi_sync_source", "semisync_source.so"),
            ("rpl_semi_sync_replica", "semisync_replica.so"),
        ] {
            if !have.iter().any(|h| h == name) {
                c.query_drop(format!("INSTALL PLUGIN {name} SONAME '{lib}'"))
                    .await?;
            }
        }
        if sro == Some(1) {
            c.query_drop("SET GLOBAL super_read_only = ON").await?;
        }
        c.query_drop(format!(
            "SET GLOBAL rpl_semi_sync_source_enabled = ON, \
             rpl_semi_sync_source_timeout = 5000, \
             rpl_semi_sync_source_wait_for_replica_count = {count}, \
             rpl_semi_sync_replica_enabled = ON"
        ))
        .await?;
        if p != topo.primary_port {
            c.query_drop("STOP REPLICA IO_THREAD; START REPLICA IO_THREAD")
                .await?;
        }
        c.disconnect().await?;
    }
    Ok(())
}

/// `backend_timeout` (a query rule's here): a statement whose backend does
/// not answer in time (an UPDATE waiting on a row lock another connection
/// holds) ends with 2013 "outcome unknown", the server stops running it
/// (the router kills it: it would otherwise wait for the lock and then
/// apply), and the session goes on; a statement the rule does not match is
/// not bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_timeout_ends_the_statement_not_the_session() -> Result<()> {
    let topo = Topology::get()?;
    let p0 = topo.primary_port;
    run_sql(&topo, p0, "CREATE DATABASE IF NOT EXISTS causeway").await?;
    run_sql(&topo, p0, "DROP TABLE IF EXISTS causeway.timeout_t").await?;
    run_sql(
        &topo,
        p0,
        "CREATE TABLE causeway.timeout_t (id INT PRIMARY KEY, v INT); \
         INSERT INTO causeway.timeout_t VALUES (1, 0)",
    )
    .await?;
    let mut cfg = topo.router_config()?;
    cfg.query_rules
        .push(causeway_router::config::QueryRuleConfig {
            match_pattern: Some("timeout_t SET v = 1".into()),
            backend_timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        });
    let router = start_router(cfg).await?;
    let mut holder = Conn::new(opts(&topo, p0, "ADMIN", false)?).await?;
    holder.query_drop("BEGIN").await?;
    holder
        .query_drop("SELECT * FROM causeway.timeout_t WHERE id = 1 FOR UPDATE")
        .await?;
    let mut c = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    // Left alone, the UPDATE would wait for the lock far longer than this
    // test's guard.
    c.query_drop("SET innodb_lock_wait_timeout = 600").await?;
    let err = c
        .query_drop("UPDATE causeway.timeout_t SET v = 1 WHERE id = 1")
        .await
        .expect_err("the backend timeout ends it");
    let text = err.to_string();
    ensure!(
        text.contains("2013") && text.contains("backend_timeout") && text.contains("unknown"),
        "{text}"
    );
    // While the lock is still held, the server stops waiting for it.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut admin = Conn::new(opts(&topo, p0, "ADMIN", false)?).await?;
        let waiting: Option<u64> = admin
            .query_first(
                "SELECT COUNT(*) FROM information_schema.processlist \
                 WHERE INFO LIKE 'UPDATE causeway.timeout_t%'",
            )
            .await?;
        admin.disconnect().await?;
        if waiting == Some(0) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the server still runs the statement the router gave up on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder.query_drop("ROLLBACK").await?;
    holder.disconnect().await?;
    // It never applied, and the session goes on.
    let v: Option<i32> = c
        .query_first("SELECT v FROM causeway.timeout_t WHERE id = 1 FOR UPDATE")
        .await?;
    assert_eq!(v, Some(0), "the abandoned UPDATE applied after all");
    c.disconnect().await?;
    Ok(())
}
