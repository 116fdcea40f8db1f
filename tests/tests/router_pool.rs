//! Client connections are cheap and independent of backend connections,
//! against real MySQL servers with small `max_connections` (sandboxes of
//! their own, since these tests change global limits or stop servers):
//! - thousands of idle clients, the router's backend connections within its
//!   pool sizes, a new session still served;
//! - sysbench with more client threads than the primary allows
//!   connections, without an error (the router learns the server's limit
//!   from its ERR 1040 and queues instead of passing it on);
//! - a churn of prepared statements keeps each server's
//!   `Prepared_stmt_count` within the per-connection cap times the
//!   connections;
//! - with the primary stopped, logins succeed, reads are served by the
//!   replicas, writes get a clear ERR.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use causeway_e2e::router::{opts, start_router, Raw, RAW_CAPS};
use causeway_e2e::Topology;
use causeway_router::config::{BackendTlsMode, Config, FullAuth};
use mysql_async::prelude::*;
use mysql_async::Conn;

/// The split configuration for `topo`: plain TCP to the backends, the fast
/// authentication path, room for many clients, pools of `pool` per server.
fn config(topo: &Topology, pool: usize) -> Result<Config> {
    let mut cfg = topo.split_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    cfg.frontend.max_connections = 20_000;
    cfg.backend.tls.mode = BackendTlsMode::Disabled;
    cfg.backend.queue_timeout = Duration::from_secs(30);
    for s in &mut cfg.servers {
        s.max_connections = pool;
    }
    Ok(cfg)
}

async fn global(topo: &Topology, sql: &str) -> Result<()> {
    let mut c = topo.conn(topo.primary_port, "ADMIN").await?;
    c.query_drop(sql).await?;
    c.disconnect().await?;
    Ok(())
}

async fn status(topo: &Topology, port: u16, name: &str) -> Result<u64> {
    let mut c = topo.conn(port, "ADMIN").await?;
    let v: Option<(String, u64)> = c
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await?;
    c.disconnect().await?;
    Ok(v.context("no such status")?.1)
}

/// Connections the APP user has on the server at `port` now.
async fn app_connections(topo: &Topology, port: u16) -> Result<u64> {
    let app = topo.user("APP")?;
    let mut c = topo.conn(port, "ADMIN").await?;
    let n: Option<u64> = c
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{}'",
            app.user
        ))
        .await?;
    c.disconnect().await?;
    Ok(n.unwrap_or(0))
}

fn query(sql: &str) -> Vec<u8> {
    let mut p = vec![0x03];
    p.extend_from_slice(sql.as_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_primary_serves_thousands_of_sessions() -> Result<()> {
    let topo = Topology::isolated("pool")?;
    let result = small_primary(&topo).await;
    global(&topo, "SET GLOBAL max_connections = 500").await?;
    result
}

async fn small_primary(topo: &Topology) -> Result<()> {
    // --- 5,000 idle clients against max_connections = 200, pools of 20.
    global(topo, "SET GLOBAL max_connections = 200").await?;
    let router = start_router(config(topo, 20)?).await?;
    let app = topo.user("APP")?;
    let port = router.port;
    let mut clients: Vec<Raw> = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..5000 {
        let app = app.clone();
        pending.push(tokio::spawn(async move {
            Raw::login_with(
                port,
                &app.user,
                &app.password,
                "caching_sha2_password",
                RAW_CAPS,
            )
            .await
        }));
        if pending.len() == 100 {
            for p in pending.drain(..) {
                clients.push(p.await?.context("a login through the router")?);
            }
        }
    }
    for p in pending.drain(..) {
        clients.push(p.await?.context("a login through the router")?);
    }
    assert_eq!(clients.len(), 5000);
    let opened = router.shared.pools.stats();
    assert!(
        opened.iter().all(|p| p.open <= 20),
        "pools within their sizes: {opened:?}"
    );
    let on_primary = app_connections(topo, topo.primary_port).await?;
    assert!(on_primary <= 20, "{on_primary} connections on the primary");
    // Every one of them is a working session: 500 at once, each a query.
    let mut running = Vec::new();
    for mut c in clients.drain(..500) {
        running.push(tokio::spawn(async move {
            let r = c.command(&query("SELECT 1")).await;
            r.map(|p| (p, c))
        }));
    }
    for r in running {
        let (packets, c) = r.await??;
        assert_eq!(packets.last().map(|p| p[0]), Some(0xfe), "{packets:?}");
        clients.push(c);
    }
    // A new session still gets a result.
    let mut fresh = Conn::new(opts(topo, port, "APP", false)?).await?;
    let one: Option<i64> = fresh.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    fresh.disconnect().await?;
    let opened = router.shared.pools.stats();
    assert!(opened.iter().all(|p| p.open <= 20), "{opened:?}");
    drop(clients);

    // --- sysbench, 256 client threads, against max_connections = 100, with
    // the router's own limit far above it: it learns the server's.
    global(topo, "SET GLOBAL max_connections = 100").await?;
    let router = start_router(config(topo, 1000)?).await?;
    let dir = std::env::temp_dir().join(format!("cw-pool-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    topo.mysql_batch(
        topo.primary_port,
        "APP",
        &[],
        "DROP DATABASE IF EXISTS causeway_pool; CREATE DATABASE causeway_pool",
    )?;
    sysbench(
        topo,
        topo.primary_port,
        &dir,
        &["oltp_read_write", "prepare"],
    )?;
    let out = sysbench(
        topo,
        router.port,
        &dir,
        &["--threads=256", "--time=8", "oltp_read_write", "run"],
    )?;
    let count = |label: &str| -> Result<u64> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no {label} in\n{out}"))
    };
    let trx = count("transactions:")?;
    let ignored = count("ignored errors:")?;
    let reconnects = count("reconnects:")?;
    assert!(trx > 100, "{trx} transactions:\n{out}");
    assert_eq!(reconnects, 0, "{out}");
    // Deadlocks between 256 writers (ignored by sysbench, and met directly
    // too) are the application's; nothing else may fail.
    assert!(ignored * 20 <= trx, "{ignored} ignored errors:\n{out}");
    assert!(!out.contains("FATAL"), "{out}");
    let m = &router.shared.metrics;
    assert_eq!(m.pool_timeouts.get(), 0);
    eprintln!(
        "sysbench through the router, 256 threads, max_connections 100: {trx} transactions, \
         {ignored} ignored errors; backend connections opened {}, pools {:?}",
        m.backend_opened.get(),
        router.shared.pools.stats()
    );
    sysbench(
        topo,
        topo.primary_port,
        &dir,
        &["oltp_read_write", "cleanup"],
    )?;
    std::fs::remove_dir_all(&dir)?;
    global(topo, "SET GLOBAL max_connections = 500").await?;

    // --- prepared statement churn: cap 8 per connection, 4 connections.
    let mut cfg = config(topo, 4)?;
    cfg.backend.max_prepared_statements = 8;
    cfg.backend.multiplex_delay = Duration::from_millis(1);
    let router = start_router(cfg).await?;
    let before = status(topo, topo.primary_port, "Prepared_stmt_count").await?;
    let mut sessions = Vec::new();
    for k in 0..16 {
        let topo = topo.clone();
        let port = router.port;
        sessions.push(tokio::spawn(async move {
            let mut c = Conn::new(opts(&topo, port, "APP", false)?).await?;
            for i in 0..60 {
                // Distinct statements, written to the primary (INSERT), some
                // closed, some left for the end of the session.
                let s = c
                    .prep(format!(
                        "SELECT ? + {i} + {k} FROM DUAL WHERE 1 = 1 FOR UPDATE"
                    ))
                    .await?;
                let v: Option<i64> = c.exec_first(&s, (1,)).await?;
                assert_eq!(v, Some(1 + i + k));
                if i % 3 != 0 {
                    c.close(s).await?;
                }
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
            c.disconnect().await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for s in sessions {
        s.await??;
    }
    let after = status(topo, topo.primary_port, "Prepared_stmt_count").await?;
    let open = router
        .shared
        .pools
        .stats()
        .iter()
        .map(|p| p.open as u64)
        .sum::<u64>();
    assert!(
        after.saturating_sub(before) <= 8 * open,
        "Prepared_stmt_count {before} -> {after} with {open} connections of at most 8"
    );
    assert!(
        router.shared.metrics.statements_evicted.get() > 0,
        "the cap was reached"
    );
    eprintln!(
        "prepared statement churn: Prepared_stmt_count {before} -> {after}, {open} connections, \
         {} evicted",
        router.shared.metrics.statements_evicted.get()
    );
    Ok(())
}

/// sysbench on this test's tables.
fn sysbench(topo: &Topology, port: u16, dir: &Path, args: &[&str]) -> Result<String> {
    topo.sysbench(
        port,
        dir,
        &[
            &[
                "--mysql-ssl=off",
                "--mysql-db=causeway_pool",
                "--tables=4",
                "--table-size=10000",
            ][..],
            args,
        ]
        .concat(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_stopped_logins_succeed_reads_go_on_writes_get_a_clear_error() -> Result<()>
{
    let topo = Topology::isolated("down")?;
    let mut cfg = config(&topo, 50)?;
    cfg.monitor.shun_after_errors = 1;
    // Writes wait this long for a writer, then fail.
    cfg.hostgroups[0].failover.window = Duration::from_millis(300);
    let router = start_router(cfg).await?;
    // The router knows the servers before the primary goes away.
    let mut before = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    before.query_drop("SELECT 1").await?;
    topo.sandbox(&["stop", "primary"])?;
    let result = async {
        for _ in 0..3 {
            let mut c = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
            let (one, port): (i64, u16) =
                c.query_first("SELECT 1, @@port").await?.context("a row")?;
            assert_eq!(one, 1);
            assert!(topo.replica_ports.contains(&port), "read on {port}");
            let err = c
                .query_drop("INSERT INTO causeway.nowhere VALUES (1)")
                .await
                .expect_err("no writer");
            match err {
                mysql_async::Error::Server(e) => {
                    assert_eq!(e.code, 9006, "{e:?}");
                    assert!(e.message.contains("'primary'"), "{e:?}");
                    assert!(e.message.contains("failover window"), "{e:?}");
                }
                other => bail!("expected an ERR, got {other}"),
            }
            c.disconnect().await?;
        }
        // At most one statement waits for a writer; a client that goes away
        // while waiting gives its place back at once.
        let mut cfg = config(&topo, 50)?;
        cfg.hostgroups[0].failover.window = Duration::from_secs(60);
        cfg.hostgroups[0].failover.max_waiting = 1;
        let waiting = start_router(cfg).await?;
        let write = "INSERT INTO causeway.nowhere VALUES (1)";
        let mut a = Conn::new(opts(&topo, waiting.port, "APP", false)?).await?;
        let a_waits = tokio::spawn(async move {
            let _ = a.query_drop(write).await;
        });
        // a holds the one place before b tries (else b could take it first
        // and wait out the window itself).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while waiting
            .shared
            .writers
            .waiting()
            .get("primary")
            .copied()
            .unwrap_or(0)
            == 0
        {
            anyhow::ensure!(std::time::Instant::now() < deadline, "a never waited");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let full = || async {
            let mut b = Conn::new(opts(&topo, waiting.port, "APP", false)?).await?;
            let res = b.query_drop(write).await;
            anyhow::Ok(matches!(res, Err(mysql_async::Error::Server(e))
                if e.code == 9006 && e.message.contains("max_waiting")))
        };
        // Once a waits, b finds the place taken.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !full().await? {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "b never found the place taken"
            );
        }
        a_waits.abort();
        let _ = a_waits.await;
        // a's connection is gone: c waits (its statement does not end at once).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let mut c = Conn::new(opts(&topo, waiting.port, "APP", false)?).await?;
            let waited =
                tokio::time::timeout(Duration::from_millis(500), c.query_drop(write)).await;
            if waited.is_err() {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the place of a client that went away was never given back: {waited:?}"
            );
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    topo.sandbox(&["start", "primary"])?;
    result
}
