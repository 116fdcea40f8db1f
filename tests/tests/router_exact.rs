//! What a client sees when its session is ended or interrupted, through
//! the router and directly against MySQL, side by side: a backend
//! connection the server closes while the session idles, the session's own
//! `wait_timeout`, `KILL CONNECTION` / `KILL QUERY` by the id the client was
//! given (which `CONNECTION_ID()` answers), also while the statement waits
//! for a connection or for a replica.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_e2e::router::{opts, start_router, Raw};
use causeway_e2e::Topology;
use causeway_router::causal::Scope;
use causeway_router::config::FullAuth;
use causeway_wire::ErrPacket;
use mysql_async::prelude::*;

/// What the client reads, unasked, until the server closes: each packet's
/// sequence id and, for an ERR, its code.
async fn unasked(raw: &mut Raw) -> Result<Vec<(u8, Option<u16>)>> {
    let mut seen = Vec::new();
    while let Some(p) = raw.read().await? {
        let code = (p.payload.first() == Some(&0xff))
            .then(|| ErrPacket::decode(&p.payload).map(|e| e.code))
            .transpose()?;
        seen.push((p.seq, code));
    }
    Ok(seen)
}

async fn router(topo: &Topology) -> Result<causeway_e2e::router::TestRouter> {
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    start_router(cfg).await
}

#[tokio::test]
async fn the_session_s_own_wait_timeout_ends_it_as_mysql_does() -> Result<()> {
    let topo = Topology::get()?;
    let router = router(&topo).await?;
    let app = topo.user("APP")?;
    let mut seen = Vec::new();
    for port in [topo.primary_port, router.port] {
        let mut raw = Raw::login_as(port, &app).await?;
        let ok = raw.command(b"\x03SET SESSION wait_timeout = 1").await?;
        ensure!(ok[0][0] == 0x00, "{ok:?}");
        seen.push(unasked(&mut raw).await.context(port)?);
    }
    assert_eq!(seen[0], vec![(0, Some(4031))], "MySQL itself");
    assert_eq!(seen[1], seen[0], "through the router");
    Ok(())
}

/// The processlist id of the connection that holds a row lock on `table`.
async fn locker_of(admin: &mut mysql_async::Conn, table: &str) -> Result<u64> {
    let q = format!(
        "SELECT t.PROCESSLIST_ID FROM performance_schema.data_locks l \
         JOIN performance_schema.threads t USING (THREAD_ID) \
         WHERE l.OBJECT_NAME = '{table}' LIMIT 1"
    );
    admin
        .query_first::<u64, _>(q)
        .await?
        .context("no connection holds a lock on the table")
}

#[tokio::test]
async fn a_pinned_backend_connection_closed_while_idle_ends_the_session_as_mysql_does() -> Result<()>
{
    let topo = Topology::get()?;
    let router = router(&topo).await?;
    let app = topo.user("APP")?;
    let mut admin = topo.conn(topo.primary_port, "ADMIN").await?;
    admin
        .query_drop(
            "CREATE TABLE IF NOT EXISTS causeway.exact_idle_close (id INT PRIMARY KEY); \
             CREATE TABLE IF NOT EXISTS causeway.exact_idle_close2 (id INT PRIMARY KEY)",
        )
        .await?;
    let mut seen = Vec::new();
    for (port, table) in [
        (topo.primary_port, "exact_idle_close"),
        (router.port, "exact_idle_close2"),
    ] {
        let mut raw = Raw::login_as(port, &app).await?;
        // A transaction: the session lives on that one connection.
        for sql in ["BEGIN", &format!("INSERT INTO {table} VALUES (1)")] {
            let mut cmd = vec![0x03];
            cmd.extend_from_slice(sql.as_bytes());
            let r = raw.command(&cmd).await?;
            ensure!(r[0][0] == 0x00, "{sql}: {r:?}");
        }
        // The server ends that connection while the client idles.
        let id = locker_of(&mut admin, table).await?;
        admin.query_drop(format!("KILL CONNECTION {id}")).await?;
        seen.push(unasked(&mut raw).await.context(port)?);
    }
    // MySQL closes a killed idle connection without a word.
    assert_eq!(seen[0], vec![], "MySQL itself");
    assert_eq!(seen[1], seen[0], "through the router as directly");
    // The transaction was rolled back in both cases.
    for table in ["exact_idle_close", "exact_idle_close2"] {
        let n: Option<u64> = admin
            .query_first(format!("SELECT COUNT(*) FROM causeway.{table}"))
            .await?;
        assert_eq!(n, Some(0), "{table}");
    }
    Ok(())
}

/// How a statement ended, as far as a client library can tell.
fn ending(r: &std::result::Result<Option<i64>, mysql_async::Error>) -> String {
    match r {
        Ok(v) => format!("row {v:?}"),
        Err(mysql_async::Error::Server(e)) => format!("ERR {}", e.code),
        Err(_) => "connection lost".to_string(),
    }
}

/// Runs `sql` on `victim` and, `after` later, `kill` (with the victim's
/// connection id) on `killer`; how the victim's statement ended.
async fn killed_while(
    mut victim: mysql_async::Conn,
    killer: &mut mysql_async::Conn,
    sql: &'static str,
    kill: &str,
    after: Duration,
) -> Result<String> {
    let id = victim.id();
    let run = tokio::spawn(async move {
        let r = victim.query_first::<i64, _>(sql).await;
        (ending(&r), victim)
    });
    tokio::time::sleep(after).await;
    killer.query_drop(format!("{kill} {id}")).await?;
    let (ended, _victim) = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .context("the killed statement never ended")??;
    Ok(ended)
}

#[tokio::test]
async fn kill_connection_and_kill_query_act_at_once_as_in_mysql() -> Result<()> {
    let topo = Topology::get()?;
    let router = router(&topo).await?;
    let mut seen = Vec::new();
    for port in [topo.primary_port, router.port] {
        let conn = || mysql_async::Conn::new(opts(&topo, port, "APP", false).unwrap());
        let mut killer = conn().await?;
        // The id the client was given is the one CONNECTION_ID() answers,
        // under MySQL's column name.
        let mut me = conn().await?;
        let row: mysql_async::Row = me
            .query_first("SELECT CONNECTION_ID()")
            .await?
            .context("no row")?;
        assert_eq!(row.columns_ref()[0].name_str(), "CONNECTION_ID()");
        assert_eq!(
            row.get::<u64, _>(0),
            Some(u64::from(me.id())),
            "port {port}"
        );
        // SHOW PROCESSLIST shows the session's own row under that id.
        let rows: Vec<mysql_async::Row> = me.query("SHOW FULL PROCESSLIST").await?;
        let own = rows
            .iter()
            .find(|r| r.get::<u64, _>(0) == Some(u64::from(me.id())))
            .with_context(|| format!("port {port}: no row with id {}", me.id()))?;
        assert_eq!(
            own.get::<String, _>("Info").as_deref(),
            Some("SHOW FULL PROCESSLIST"),
            "port {port}"
        );
        let started = Instant::now();
        let by_connection = killed_while(
            me,
            &mut killer,
            "SELECT SLEEP(20)",
            "KILL CONNECTION",
            Duration::from_millis(500),
        )
        .await?;
        let by_query = killed_while(
            conn().await?,
            &mut killer,
            "SELECT SLEEP(20)",
            "KILL QUERY",
            Duration::from_millis(500),
        )
        .await?;
        // Both ended long before the sleep would have.
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "port {port}: {:?}",
            started.elapsed()
        );
        seen.push((by_connection, by_query));
    }
    assert_eq!(seen[0].0, "connection lost", "MySQL itself: {seen:?}");
    assert_eq!(seen[1], seen[0], "through the router as directly");
    Ok(())
}

#[tokio::test]
async fn a_statement_waiting_for_a_connection_is_interrupted_or_ended() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    // One backend connection to the primary, long queue waits.
    cfg.servers[0].max_connections = 1;
    cfg.backend.queue_timeout = Duration::from_secs(60);
    let router = start_router(cfg).await?;
    let conn = || mysql_async::Conn::new(opts(&topo, router.port, "APP", false).unwrap());
    let mut holder = conn().await?;
    let mut killer = conn().await?;
    // Logged in first: a client library's own first query needs a
    // connection too.
    let (first, second) = (conn().await?, conn().await?);
    holder.query_drop("BEGIN").await?;
    holder.query_drop("SELECT 1 FOR UPDATE").await?;
    // KILL QUERY: the queued statement is interrupted with ERR 1317 and
    // the session goes on.
    let started = Instant::now();
    let ended = killed_while(
        first,
        &mut killer,
        "SELECT 1 FOR UPDATE",
        "KILL QUERY",
        Duration::from_millis(500),
    )
    .await?;
    assert_eq!(ended, "ERR 1317");
    // KILL CONNECTION: the queued session is gone.
    let ended = killed_while(
        second,
        &mut killer,
        "SELECT 1 FOR UPDATE",
        "KILL CONNECTION",
        Duration::from_millis(500),
    )
    .await?;
    assert_eq!(ended, "connection lost");
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "waited out the queue"
    );
    holder.query_drop("COMMIT").await?;
    let mut after = conn().await?;
    let one: Option<i64> = after.query_first("SELECT 1 FOR UPDATE").await?;
    assert_eq!(one, Some(1));
    Ok(())
}

#[tokio::test]
async fn a_read_waiting_for_a_replica_is_interrupted_by_kill_query() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.causal_config(Scope::Token)?;
    cfg.consistent_pairs[0].max_wait = Duration::from_secs(60);
    let router = start_router(cfg).await?;
    let conn = || mysql_async::Conn::new(opts(&topo, router.port, "APP", false).unwrap());
    let mut killer = conn().await?;
    let mut reader = conn().await?;
    // A token no server has yet: the read waits for a replica to have it.
    reader
        .query_drop("SET @causeway_min_gtid = '3e11fa47-71ca-11e1-9e33-c80aa9429562:1-999999999'")
        .await?;
    let started = Instant::now();
    let ended = killed_while(
        reader,
        &mut killer,
        "SELECT 1",
        "KILL QUERY",
        Duration::from_millis(500),
    )
    .await?;
    assert_eq!(ended, "ERR 1317");
    ensure!(
        started.elapsed() < Duration::from_secs(60),
        "the read waited out max_wait"
    );
    Ok(())
}
