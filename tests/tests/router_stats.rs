//! What the router records about the statements it serves, against the
//! sandbox: after a known workload through the read/write split, the query
//! digests count exactly what ran where (text and prepared statements under
//! one digest, rows, errors, reads on replicas and on the writer); the
//! error table has the servers' and the router's ERRs; the processlist shows
//! a running `SELECT SLEEP(1)` on its server and a session pinned by its
//! transaction; the query log has a line per statement saying where it went
//! and why, causal reads included.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_e2e::router::{opts, start_router, TestRouter};
use causeway_e2e::Topology;
use causeway_router::causal::Scope;
use causeway_router::rules::digest;
use causeway_router::stats::{Command, DigestRow, Origin, SessionRow};
use causeway_router::Shared;
use mysql_async::prelude::*;
use mysql_async::{Conn, TxOpts};

/// Deadline of each wait: a guard against hanging, not a speed assertion.
const WAIT: Duration = Duration::from_secs(30);

/// A file in a fresh temporary folder of this test.
fn temp_file(test: &str, name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("causeway-stats-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join(name))
}

/// The lines of the query log once `done` says they are all there (the
/// writer flushes when it has nothing more to write).
async fn log_lines(
    path: &Path,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Result<Vec<serde_json::Value>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
            .collect::<Result<Vec<serde_json::Value>>>()?;
        if done(&lines) {
            return Ok(lines);
        }
        ensure!(
            Instant::now() < deadline,
            "the query log {} never had what was expected:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lines of the digest of `sql`.
fn lines_of<'a>(lines: &'a [serde_json::Value], sql: &str) -> Vec<&'a serde_json::Value> {
    let d = digest(sql);
    lines.iter().filter(|l| l["digest"] == d.as_str()).collect()
}

/// Session `id`'s processlist row once `want` holds for it (a session
/// updates its row right after its response, so a client may look first).
async fn session_row(
    shared: &Shared,
    id: u32,
    want: impl Fn(&SessionRow) -> bool,
) -> Result<SessionRow> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = shared.sessions_snapshot();
        let row = rows.iter().find(|r| r.id == id);
        if let Some(r) = row.filter(|r| want(r)) {
            return Ok(r.clone());
        }
        ensure!(
            Instant::now() < deadline,
            "session {id} never as expected: {row:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Rows of `snapshot` for the digest of `sql`, by hostgroup.
fn rows_of<'a>(snapshot: &'a [DigestRow], sql: &str) -> Vec<&'a DigestRow> {
    let d = digest(sql);
    snapshot.iter().filter(|r| r.digest == d).collect()
}

fn in_group<'a>(rows: &[&'a DigestRow], hostgroup: &str) -> Result<&'a DigestRow> {
    rows.iter()
        .copied()
        .find(|r| r.hostgroup == hostgroup)
        .with_context(|| format!("no row in {hostgroup:?}: {rows:#?}"))
}

async fn app(topo: &Topology, router: &TestRouter) -> Result<Conn> {
    Ok(Conn::new(opts(topo, router.port, "APP", true)?).await?)
}

/// Table `name` with rows 1, 2, 3, made on the primary and seen on every
/// replica.
async fn stats_table(topo: &Topology, name: &str) -> Result<()> {
    let mut admin = topo.conn(topo.primary_port, "ADMIN").await?;
    admin
        .query_drop(format!(
            "DROP TABLE IF EXISTS {name}; \
             CREATE TABLE {name} (id INT PRIMARY KEY, v INT); \
             INSERT INTO {name} VALUES (1, 10), (2, 20), (3, 30)"
        ))
        .await?;
    for &port in &topo.replica_ports {
        let mut r = topo.conn(port, "ADMIN").await?;
        let deadline = Instant::now() + WAIT;
        loop {
            let n: Option<i64> = r
                .query_first(format!("SELECT COUNT(*) FROM {name}"))
                .await
                .unwrap_or(None);
            if n == Some(3) {
                break;
            }
            ensure!(Instant::now() < deadline, "{name} never reached {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_errors_sessions_and_the_query_log_tell_what_ran_where() -> Result<()> {
    let topo = Topology::get()?;
    stats_table(&topo, "stats_t").await?;
    let log = temp_file("workload", "queries.log")?;
    let mut cfg = topo.split_config()?;
    cfg.query_log.enabled = true;
    cfg.query_log.path = log.clone();
    let router = start_router(cfg).await?;
    let shared = router.shared.clone();

    // The workload.
    let mut c = app(&topo, &router).await?;
    let read = "SELECT v FROM stats_t WHERE id = 1";
    for id in [1, 2, 3, 1, 2] {
        let v: Option<i64> = c
            .query_first(format!("SELECT v FROM stats_t WHERE id = {id}"))
            .await?;
        ensure!(v == Some(id * 10), "id {id}: {v:?}");
    }
    // Prepared: the same digest as the text statements (id 4: no row).
    for id in [1, 2, 3, 4] {
        let _: Option<i64> = c
            .exec_first("SELECT v FROM stats_t WHERE id = ?", (id,))
            .await?;
    }
    let insert = "INSERT INTO stats_t VALUES (10, 1)";
    for id in [10, 11, 12] {
        c.query_drop(format!("INSERT INTO stats_t VALUES ({id}, 1)"))
            .await?;
    }
    let missing = "SELECT v FROM stats_missing_t WHERE id = 1";
    for _ in 0..2 {
        let e = c.query_drop(missing).await.unwrap_err();
        ensure!(
            matches!(&e, mysql_async::Error::Server(s) if s.code == 1146),
            "{e}"
        );
    }
    let hinted = "/* causeway: hostgroup=nope */ SELECT 1";
    let e = c.query_drop(hinted).await.unwrap_err();
    ensure!(
        matches!(&e, mysql_async::Error::Server(s) if s.code == 9003),
        "{e}"
    );
    // In a transaction, a read is the writer's.
    let mut tx = c.start_transaction(TxOpts::default()).await?;
    let v: Option<i64> = tx.query_first(read).await?;
    ensure!(v == Some(10));
    tx.commit().await?;

    // Digests: exactly the workload.
    let snapshot = shared.stats.digests.snapshot();
    let reads = rows_of(&snapshot, read);
    let r = in_group(&reads, "replicas")?;
    assert_eq!(r.count, 9, "5 text + 4 prepared: {r:#?}");
    assert_eq!(r.rows_sent, 8, "id 4 has no row");
    assert_eq!((r.replica_reads, r.writer_reads, r.errors), (9, 0, 0));
    assert_eq!(r.user, topo.user("APP")?.user);
    assert_eq!(r.schema, topo.var("CAUSEWAY_DATABASE")?);
    assert!(r.min_ms > 0.0 && r.min_ms <= r.p50_ms && r.p50_ms <= r.p99_ms);
    assert!(r.p99_ms <= r.max_ms && r.max_ms <= r.sum_ms);
    assert!(r.first_seen <= r.last_seen);
    let w = in_group(&reads, "primary")?;
    assert_eq!(
        (w.count, w.rows_sent),
        (1, 1),
        "the read in the transaction"
    );
    assert_eq!((w.replica_reads, w.writer_reads), (0, 1));
    assert_eq!(reads.len(), 2, "{reads:#?}");
    let ins = rows_of(&snapshot, insert);
    assert_eq!(ins.len(), 1, "{ins:#?}");
    let i = in_group(&ins, "primary")?;
    assert_eq!((i.count, i.rows_sent, i.errors), (3, 0, 0));
    assert_eq!((i.replica_reads, i.writer_reads), (0, 0), "not reads");
    let m = in_group(&rows_of(&snapshot, missing), "replicas")?;
    assert_eq!((m.count, m.errors, m.replica_reads), (2, 2, 2));
    let h = in_group(&rows_of(&snapshot, hinted), "")?;
    assert_eq!(
        (h.count, h.errors),
        (1, 1),
        "refused by the router: no hostgroup"
    );

    // Errors: the server's, forwarded, and the router's own.
    let errors = shared.stats.errors.snapshot();
    let e1146 = errors.iter().find(|e| e.code == 1146).context("1146")?;
    assert_eq!(
        (e1146.count, e1146.kind, e1146.origin),
        (2, "backend", Origin::Backend)
    );
    assert_eq!(e1146.sql_state, "42S02");
    assert!(e1146.last_message.contains("stats_missing_t"), "{e1146:?}");
    let e9003 = errors.iter().find(|e| e.code == 9003).context("9003")?;
    assert_eq!(
        (e9003.count, e9003.kind, e9003.origin),
        (1, "hint", Origin::Router)
    );

    // The processlist: a statement running now, and where.
    let mut sleeper = app(&topo, &router).await?;
    let sleeper_id = sleeper.id();
    let sleep = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = sleeper.query_first("SELECT SLEEP(1)").await;
        (r, sleeper)
    });
    let running = session_row(&shared, sleeper_id, |r| r.command == Command::Query).await?;
    assert_eq!(running.statement.as_deref(), Some("SELECT SLEEP(1)"));
    assert_eq!(running.user, topo.user("APP")?.user);
    assert!(running.tls);
    assert!(running.client.ip().is_loopback());
    // Its server is known once it was routed (SLEEP: the primary).
    let on = session_row(&shared, sleeper_id, |r| r.server.is_some()).await?;
    assert_eq!(on.server.as_deref(), Some("primary"), "{on:#?}");
    assert_eq!(on.command, Command::Query, "still sleeping");
    let (slept, sleeper) = sleep.await?;
    ensure!(slept? == Some(0));
    let idle = session_row(&shared, sleeper_id, |r| r.command == Command::Idle).await?;
    assert_eq!(idle.statement, None);
    assert!(idle.statements >= 1);
    assert_eq!(idle.pinned, None, "multiplexed");
    sleeper.disconnect().await?;

    // A session pinned by its transaction, idle, shows why and where.
    let mut t = app(&topo, &router).await?;
    let t_id = t.id();
    let mut tx = t.start_transaction(TxOpts::default()).await?;
    let last = "UPDATE stats_t SET v = 11 WHERE id = 1";
    tx.query_drop(last).await?;
    let p = session_row(&shared, t_id, |r| r.pinned.is_some()).await?;
    assert_eq!(p.pinned.as_deref(), Some("transaction"), "{p:#?}");
    assert_eq!(p.server.as_deref(), Some("primary"), "{p:#?}");
    assert_eq!(p.command, Command::Idle);
    tx.rollback().await?;
    session_row(&shared, t_id, |r| r.pinned.is_none() && r.server.is_none()).await?;
    t.disconnect().await?;
    c.disconnect().await?;

    // The query log: a line per statement, where it went and why.
    // Lines come in the order statements end: the last one's means all.
    let lines = log_lines(&log, |l| !lines_of(l, last).is_empty()).await?;
    let of = |sql: &str| lines_of(&lines, sql);
    let read_lines = of(read);
    assert_eq!(read_lines.len(), 10, "9 on replicas, 1 in the transaction");
    let on_replicas: Vec<_> = read_lines
        .iter()
        .filter(|l| l["hostgroup"] == "replicas")
        .collect();
    assert_eq!(on_replicas.len(), 9);
    for l in &on_replicas {
        assert_eq!(l["route"], "read", "{l}");
        assert!(
            matches!(l["server"].as_str(), Some("replica1" | "replica2")),
            "{l}"
        );
        assert_eq!(l["user"], topo.user("APP")?.user.as_str());
        assert!(l["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{l}");
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        assert_eq!(l["error"], serde_json::Value::Null);
    }
    let in_tx = read_lines
        .iter()
        .find(|l| l["hostgroup"] == "primary")
        .context("the read in the transaction")?;
    assert_eq!(in_tx["route"], "transaction");
    assert_eq!(in_tx["server"], "primary");
    let ins = of(insert);
    assert_eq!(ins.len(), 3);
    assert!(ins.iter().all(|l| l["route"] == "write" && l["rows"] == 0));
    let failed = of(missing);
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|l| l["error"] == 1146));
    let refused = of(hinted);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["error"], 9003);
    assert_eq!(refused[0]["hostgroup"], serde_json::Value::Null);
    assert_eq!(shared.metrics.query_log_dropped.get(), 0);

    // RESET query_digests: nothing left.
    shared.stats.digests.reset();
    assert!(shared.stats.digests.snapshot().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_log_says_why_a_causal_read_went_where_it_went() -> Result<()> {
    let topo = Topology::get()?;
    stats_table(&topo, "stats_causal_t").await?;
    let log = temp_file("causal", "queries.log")?;
    let mut cfg = topo.causal_config(Scope::Session)?;
    cfg.query_log.enabled = true;
    cfg.query_log.path = log.clone();
    // Sample 0: only errors are logged.
    cfg.query_log.sample = 0.0;
    let router = start_router(cfg).await?;
    let mut c = app(&topo, &router).await?;
    let e = c
        .query_drop("SELECT * FROM stats_missing_t")
        .await
        .unwrap_err();
    ensure!(
        matches!(&e, mysql_async::Error::Server(s) if s.code == 1146),
        "{e}"
    );
    let lines = log_lines(&log, |l| !l.is_empty()).await?;
    assert_eq!(lines.len(), 1, "only the error was sampled: {lines:?}");
    assert_eq!(lines[0]["error"], 1146);
    // Every statement now: a write, then reads that must see it.
    let mut cfg = topo.causal_config(Scope::Session)?;
    cfg.query_log.enabled = true;
    cfg.query_log.path = log.clone();
    router.shared.stats.configure(&cfg)?;
    c.query_drop("REPLACE INTO stats_causal_t VALUES (30, 3)")
        .await?;
    let read = "SELECT v FROM stats_causal_t WHERE id = 30";
    for _ in 0..3 {
        let v: Option<i64> = c.query_first(read).await?;
        ensure!(
            v == Some(3),
            "a causal read missed the session's write: {v:?}"
        );
    }
    c.disconnect().await?;
    let lines = log_lines(&log, |l| lines_of(l, read).len() >= 3).await?;
    let reads = lines_of(&lines, read);
    assert_eq!(reads.len(), 3, "{lines:#?}");
    for l in reads {
        let causal = &l["causal"];
        assert_eq!(causal["scope"], "session", "{l}");
        let (served, hostgroup) = (causal["served"].as_str(), l["hostgroup"].as_str());
        match served {
            Some("replica") => {
                assert_eq!(causal["reason"], "caught_up", "{l}");
                assert_eq!(hostgroup, Some("replicas"), "{l}");
            }
            Some("primary") => {
                assert!(
                    causal["reason"].as_str().is_some_and(|r| !r.is_empty()),
                    "{l}"
                );
                assert_eq!(hostgroup, Some("primary"), "{l}");
            }
            _ => panic!("served where? {l}"),
        }
        assert_eq!(l["route"], "read", "{l}");
    }
    Ok(())
}
