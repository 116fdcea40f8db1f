//! The readers beside each server of the sandbox: every transaction
//! committed on the primary appears exactly once in each reader's stream,
//! never before `GTID_SUBSET(gtid, @@global.gtid_executed)` is true on that
//! server, under a concurrent write load; both protocols; tagged GTIDs;
//! compressed transactions; bad subscribers; many subscribers.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use causeway_e2e::reader::{untagged, NativeSubscriber, ProxySqlSubscriber};
use causeway_e2e::Topology;
use causeway_gtid::delta::binary::{Message, ResetReason};
use causeway_gtid::GtidSet;
use mysql_async::prelude::*;
use mysql_async::Conn;

const WAIT: Duration = Duration::from_secs(30);

async fn executed(conn: &mut Conn) -> Result<GtidSet> {
    let text: String = conn
        .query_first("SELECT @@global.gtid_executed")
        .await?
        .context("no gtid_executed")?;
    Ok(GtidSet::parse(&text)?)
}

async fn subscribe(topo: &Topology, i: usize) -> Result<NativeSubscriber> {
    let addr = &topo.reader_addrs()?[i];
    let mut sub = NativeSubscriber::connect(addr, &topo.reader_token()?).await?;
    let hello = sub.next(WAIT).await?.context("no hello")?;
    ensure!(
        matches!(hello, Message::Hello(_)),
        "first message {hello:?}"
    );
    let snap = sub.next(WAIT).await?.context("no snapshot")?;
    ensure!(
        matches!(snap, Message::Snapshot(_)),
        "second message {snap:?}"
    );
    Ok(sub)
}

async fn create_table(topo: &Topology, name: &str) -> Result<()> {
    let mut c = topo.conn(topo.primary_port, "APP").await?;
    c.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {name} (id BIGINT AUTO_INCREMENT PRIMARY KEY, w INT, v VARCHAR(64))"
    ))
    .await?;
    Ok(())
}

/// Follows one reader while the primary is written to; checks each delta
/// against the server it describes as soon as it arrives.
async fn follow_and_check(
    topo: Topology,
    i: usize,
    mut sub: NativeSubscriber,
    until: tokio::sync::watch::Receiver<Option<GtidSet>>,
) -> Result<usize> {
    let port = topo.server_ports()[i];
    let mut probe = topo.conn(port, "MONITOR").await?;
    let mut view = sub.view.clone();
    let mut deltas = 0;
    loop {
        if let Some(target) = until.borrow().clone() {
            if target.is_subset(&view) {
                break;
            }
        }
        let msg = sub.next(WAIT).await?.context("reader closed")?;
        match msg {
            Message::Delta(d) => {
                ensure!(
                    d.intersection(&view).is_empty(),
                    "reader {i} announced {} twice",
                    d.intersection(&view)
                );
                let visible: Option<i64> = probe
                    .exec_first(
                        "SELECT GTID_SUBSET(?, @@global.gtid_executed)",
                        (d.to_string(),),
                    )
                    .await?;
                ensure!(
                    visible == Some(1),
                    "reader {i} announced {d} before it was in gtid_executed of :{port}"
                );
                view.union_with(&d);
                deltas += 1;
            }
            Message::Heartbeat(_) => {}
            other => anyhow::bail!("reader {i}: unexpected {other:?} mid-stream"),
        }
        ensure!(view == sub.view, "decoder view and checked view differ");
    }
    Ok(deltas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_once_and_only_once_visible_under_load() -> Result<()> {
    let topo = Topology::get()?;
    create_table(&topo, "reader_load").await?;
    let (tx, rx) = tokio::sync::watch::channel(None);
    let mut followers = Vec::new();
    for i in 0..3 {
        let sub = subscribe(&topo, i).await?;
        followers.push(tokio::spawn(follow_and_check(
            topo.clone(),
            i,
            sub,
            rx.clone(),
        )));
    }
    let mut writers = Vec::new();
    for w in 0..4 {
        let topo = topo.clone();
        writers.push(tokio::spawn(async move {
            let mut c = topo.conn(topo.primary_port, "APP").await?;
            for n in 0..150 {
                c.exec_drop(
                    "INSERT INTO reader_load (w, v) VALUES (?, ?)",
                    (w, format!("w{w}-{n}")),
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let mut primary = topo.conn(topo.primary_port, "APP").await?;
    let target = executed(&mut primary).await?;
    tx.send(Some(target.clone()))?;
    let mut total = 0;
    for (i, f) in followers.into_iter().enumerate() {
        let deltas = tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .with_context(|| format!("reader {i} never reached {target}"))???;
        ensure!(deltas > 0, "reader {i} sent no delta for 600 transactions");
        total += deltas;
    }
    ensure!(total >= 3, "deltas: {total}");
    Ok(())
}

#[tokio::test]
async fn proxysql_protocol_streams_the_same_view() -> Result<()> {
    let topo = Topology::get()?;
    create_table(&topo, "reader_px").await?;
    let mut subs = Vec::new();
    for addr in topo.reader_proxysql_addrs()? {
        subs.push(ProxySqlSubscriber::connect(&addr).await?);
    }
    let mut c = topo.conn(topo.primary_port, "APP").await?;
    for n in 0..50 {
        c.exec_drop("INSERT INTO reader_px (w, v) VALUES (1, ?)", (n,))
            .await?;
    }
    // ProxySQL's protocol cannot carry tagged GTIDs (other tests write
    // some): the reader leaves them out, so compare the untagged part.
    let target = untagged(&executed(&mut c).await?);
    for (i, sub) in subs.iter_mut().enumerate() {
        sub.until_contains(&target, WAIT)
            .await
            .with_context(|| format!("ProxySQL stream of reader {i}"))?;
        let port = topo.server_ports()[i];
        let mut s = topo.conn(port, "MONITOR").await?;
        let server = executed(&mut s).await?;
        ensure!(
            sub.view.is_subset(&server),
            "ProxySQL view of reader {i} holds GTIDs the server lacks: {}",
            sub.view.difference(&server)
        );
    }
    Ok(())
}

#[tokio::test]
async fn tagged_and_compressed_transactions_are_announced() -> Result<()> {
    let topo = Topology::get()?;
    create_table(&topo, "reader_tagged").await?;
    let mut subs = Vec::new();
    for i in 0..3 {
        subs.push(subscribe(&topo, i).await?);
    }
    let mut admin = topo.conn(topo.primary_port, "ADMIN").await?;
    admin
        .query_drop("SET gtid_next = 'AUTOMATIC:cw_e2e'")
        .await?;
    admin
        .query_drop("INSERT INTO reader_tagged (w, v) VALUES (1, 'tagged')")
        .await?;
    admin.query_drop("SET gtid_next = 'AUTOMATIC'").await?;
    admin
        .query_drop("SET SESSION binlog_transaction_compression = ON")
        .await?;
    admin
        .query_drop("INSERT INTO reader_tagged (w, v) VALUES (2, REPEAT('x', 60))")
        .await?;
    let target = executed(&mut admin).await?;
    let uuid: String = admin
        .query_first("SELECT @@server_uuid")
        .await?
        .context("uuid")?;
    ensure!(
        target.to_string().contains(&format!("{uuid}:")) && target.to_string().contains(":cw_e2e:"),
        "the primary's set has no cw_e2e tag: {target}"
    );
    for (i, sub) in subs.iter_mut().enumerate() {
        sub.until_contains(&target, WAIT)
            .await
            .with_context(|| format!("reader {i}"))?;
    }
    Ok(())
}

#[tokio::test]
async fn bad_subscribers_are_dropped_and_others_unaffected() -> Result<()> {
    let topo = Topology::get()?;
    let addr = topo.reader_addrs()?[0].clone();

    let mut wrong = NativeSubscriber::connect(&addr, b"not-the-token").await?;
    match wrong.next(WAIT).await? {
        Some(Message::Reset(r)) => ensure!(
            r.reason == ResetReason::Refused && r.detail.contains("token"),
            "{r:?}"
        ),
        other => anyhow::bail!("a wrong token got {other:?}"),
    }
    wrong.wait_closed(WAIT).await?;

    let good = subscribe(&topo, 0).await?;
    // Garbage after a valid Auth: the reader drops that subscriber.
    let mut noisy = subscribe(&topo, 0).await?;
    noisy.send_raw(b"hello reader").await?;
    noisy
        .wait_closed(WAIT)
        .await
        .context("garbage did not get the subscriber dropped")?;

    // The good one still streams.
    let mut good = good;
    let mut c = topo.conn(topo.primary_port, "APP").await?;
    create_table(&topo, "reader_bad").await?;
    c.query_drop("INSERT INTO reader_bad (w) VALUES (1)")
        .await?;
    let target = executed(&mut c).await?;
    good.until_contains(&target, WAIT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscribers_all_see_each_write() -> Result<()> {
    let topo = Topology::get()?;
    create_table(&topo, "reader_many").await?;
    let mut subs = Vec::new();
    for _ in 0..100 {
        subs.push(subscribe(&topo, 1).await?);
    }
    let mut c = topo.conn(topo.primary_port, "APP").await?;
    c.query_drop("INSERT INTO reader_many (w) VALUES (1)")
        .await?;
    let target = executed(&mut c).await?;
    let mut tasks = Vec::new();
    for mut s in subs {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            s.until_contains(&target, WAIT).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_neither_slows_others_nor_loses_its_place() -> Result<()> {
    let topo = Topology::get()?;
    create_table(&topo, "reader_stall").await?;
    // Subscribes, then stops reading while the primary is written to.
    let mut stalled = subscribe(&topo, 0).await?;
    let mut active = subscribe(&topo, 0).await?;
    let mut writers = Vec::new();
    for w in 0..4 {
        let topo = topo.clone();
        writers.push(tokio::spawn(async move {
            let mut c = topo.conn(topo.primary_port, "APP").await?;
            for n in 0..250 {
                c.exec_drop("INSERT INTO reader_stall (w, v) VALUES (?, ?)", (w, n))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await??;
    }
    let mut c = topo.conn(topo.primary_port, "APP").await?;
    let target = executed(&mut c).await?;
    // The active subscriber is served while the other one sleeps.
    active.until_contains(&target, WAIT).await?;
    // The stalled one resumes: whatever it missed arrives, in order (the
    // decoder checks sequence numbers), as deltas or a fresh snapshot.
    stalled.until_contains(&target, WAIT).await?;
    let now = executed(&mut c).await?;
    ensure!(
        stalled.view.is_subset(&now),
        "the resumed view holds GTIDs the server lacks: {}",
        stalled.view.difference(&now)
    );
    Ok(())
}
