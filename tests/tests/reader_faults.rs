//! The readers under faults injected into a sandbox of their own (the
//! shared one stays healthy for the other tests): a mysqld restarted
//! mid-stream, a mysqld that stalls (SIGSTOP, sockets open), and a RESET of a
//! server's GTID history. Each test breaks its own replica, so both can run
//! side by side.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use causeway_e2e::reader::NativeSubscriber;
use causeway_e2e::Topology;
use causeway_gtid::delta::binary::{Message, ResetReason};
use causeway_gtid::GtidSet;
use mysql_async::prelude::*;
use mysql_async::Conn;

const WAIT: Duration = Duration::from_secs(60);

async fn executed(conn: &mut Conn) -> Result<GtidSet> {
    let text: String = conn
        .query_first("SELECT @@global.gtid_executed")
        .await?
        .context("no gtid_executed")?;
    Ok(GtidSet::parse(&text)?)
}

async fn subscribe(topo: &Topology, i: usize) -> Result<NativeSubscriber> {
    let mut sub =
        NativeSubscriber::connect(&topo.reader_addrs()?[i], &topo.reader_token()?).await?;
    for _ in 0..2 {
        sub.next(WAIT).await?.context("no hello/snapshot")?;
    }
    Ok(sub)
}

async fn write_rows(topo: &Topology, n: usize) -> Result<GtidSet> {
    let mut c = topo.conn(topo.primary_port, "APP").await?;
    c.query_drop(
        "CREATE TABLE IF NOT EXISTS reader_faults (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)",
    )
    .await?;
    for i in 0..n {
        c.exec_drop("INSERT INTO reader_faults (v) VALUES (?)", (i,))
            .await?;
    }
    executed(&mut c).await
}

/// Reads until the view holds `want`, failing on any Reset on the way.
async fn until_no_reset(sub: &mut NativeSubscriber, want: &GtidSet) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !want.is_subset(&sub.view) {
        let left = deadline.saturating_duration_since(Instant::now());
        match sub.next(left).await? {
            Some(Message::Reset(r)) => bail!("unexpected reset: {r:?}"),
            Some(Message::Delta(d)) => ensure!(!d.is_empty(), "empty delta"),
            Some(_) => {}
            None => bail!("stream closed"),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_shows_as_a_growing_view_age() -> Result<()> {
    let topo = Topology::isolated("faults")?;
    let mut sub = subscribe(&topo, 1).await?;
    // Fresh first: an age below one server heartbeat period (0.5 s) + slack.
    let fresh = wait_for_age(&mut sub, |age| age < Duration::from_secs(1)).await?;
    let reconnects_before = reconnects(&topo, 1)?;
    topo.sandbox(&["pause", "replica1"])?;
    let stale = wait_for_age(&mut sub, |age| age >= Duration::from_secs(2)).await;
    topo.sandbox(&["resume", "replica1"])?;
    let stale = stale.context("the view age never grew while the server was stalled")?;
    let recovered = wait_for_age(&mut sub, |age| age < Duration::from_secs(1))
        .await
        .context("the view age never recovered after the stall")?;
    ensure!(
        fresh < stale && recovered < stale,
        "{fresh:?} {stale:?} {recovered:?}"
    );
    // Two heartbeat periods and more without a byte: the binlog connection
    // was presumed dead and opened again.
    let reconnects_after = reconnects(&topo, 1)?;
    ensure!(
        reconnects_after > reconnects_before,
        "the silent binlog connection was never dropped: reconnects {reconnects_before} -> {reconnects_after}"
    );
    // And the stream still carries writes.
    let target = write_rows(&topo, 3).await?;
    until_no_reset(&mut sub, &target).await
}

/// `causeway_reader_reconnects_total` of server `i`'s reader.
fn reconnects(topo: &Topology, i: usize) -> Result<u64> {
    let urls = topo.var("CAUSEWAY_READER_METRICS_URLS")?;
    let url = urls
        .split_whitespace()
        .nth(i)
        .with_context(|| format!("no reader metrics URL {i} in {urls:?}"))?;
    let body = causeway_e2e::http_get(url)?;
    let line = body
        .lines()
        .find_map(|l| l.strip_prefix("causeway_reader_reconnects_total "))
        .with_context(|| format!("{url}: no causeway_reader_reconnects_total"))?;
    Ok(line.trim().parse()?)
}

async fn wait_for_age(
    sub: &mut NativeSubscriber,
    ok: impl Fn(Duration) -> bool,
) -> Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(!left.is_zero(), "no matching heartbeat in 30 s");
        match sub.next(left).await? {
            Some(Message::Heartbeat(h)) if ok(h.view_age) => return Ok(h.view_age),
            Some(_) => {}
            None => bail!("stream closed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_stream_and_reset_replaces_the_view() -> Result<()> {
    let topo = Topology::isolated("faults")?;
    let mut sub = subscribe(&topo, 2).await?;

    // A restart mid-stream: no reset, nothing lost, nothing twice.
    let before = write_rows(&topo, 10).await?;
    until_no_reset(&mut sub, &before).await?;
    topo.sandbox(&["stop", "replica2"])?;
    write_rows(&topo, 20).await?;
    topo.sandbox(&["start", "replica2"])?;
    let after = write_rows(&topo, 10).await?;
    until_no_reset(&mut sub, &after)
        .await
        .context("after the restart")?;

    // RESET BINARY LOGS AND GTIDS: the view must be replaced, then grow again.
    let port = topo.replica_ports[1];
    let mut admin = topo.conn(port, "ADMIN").await?;
    let saved = executed(&mut admin).await?;
    admin.query_drop("STOP REPLICA").await?;
    admin.query_drop("SET GLOBAL super_read_only = OFF").await?;
    admin.query_drop("RESET BINARY LOGS AND GTIDS").await?;
    let reset = async {
        loop {
            match sub.next(WAIT).await? {
                Some(Message::Reset(r)) => return Ok::<_, anyhow::Error>(r),
                Some(_) => {}
                None => bail!("stream closed"),
            }
        }
    };
    let reset = tokio::time::timeout(WAIT, reset).await;
    // Put the replica back whatever happened, so other tests go on.
    admin
        .exec_drop("SET GLOBAL gtid_purged = ?", (saved.to_string(),))
        .await?;
    admin.query_drop("SET GLOBAL super_read_only = ON").await?;
    admin.query_drop("START REPLICA").await?;
    let reset = reset.context("no reset after RESET BINARY LOGS AND GTIDS")??;
    ensure!(reset.reason == ResetReason::SetShrank, "{reset:?}");
    ensure!(
        !saved.is_subset(&sub.view),
        "the view was not replaced: {}",
        sub.view
    );
    // The restored history and new writes come back as deltas.
    let target = write_rows(&topo, 5).await?;
    sub.until_contains(&target, WAIT).await
}
