//! Causality across the routers of an etcd fleet (`scripts/sandbox up
//! --etcd`), end to end against real MySQL:
//!
//! - a new writer must hold what every router acknowledged: fleet-b, which
//!   never acknowledged anything itself, refuses a promoted replica that
//!   lacks a write acknowledged by fleet-a, also once fleet-a died, while a
//!   router outside the fleet takes it (the hazard the union closes). The
//!   etcd writes this costs are counted under load;
//! - a write through fleet-a, its GTID from the OK packet handed as a token
//!   to a read through fleet-b, under replication lag bursts: no stale read
//!   (without the token, many).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_e2e::fleet::{on_server, until, Fleet};
use causeway_e2e::router::{Raw, RAW_CAPS};
use causeway_e2e::Topology;
use causeway_wire::{CapabilityFlags, OkPacket};
use mysql_async::prelude::*;
use mysql_async::Conn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_writer_must_hold_what_every_router_of_the_fleet_acknowledged() -> Result<()> {
    let mut f = Fleet::get("fleet-failover")?;
    // This test promotes a replica: a sandbox a former run left so is
    // started afresh, and this one goes down at the end.
    if on_server(&f.topo, "primary", "SELECT @@global.super_read_only")? != "0" {
        tokio::task::block_in_place(|| f.topo.sandbox(&["down"]))?;
        f = Fleet::get("fleet-failover")?;
    }
    let res = hold_what_every_router_acknowledged(&f).await;
    tokio::task::block_in_place(|| f.topo.sandbox(&["down"]))?;
    res
}

async fn hold_what_every_router_acknowledged(f: &Fleet) -> Result<()> {
    let topo = &f.topo;
    let mut a = f.app(0).await?;
    a.query_drop("CREATE TABLE IF NOT EXISTS causeway.fleet_acked (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        .await?;

    // What publishing costs: writes through fleet-a for 3 s, each
    // acknowledged; the sets go to etcd at most every publish_interval
    // (100 ms).
    let published = || {
        f.metric(
            0,
            "causeway_router_fleet_etcd_writes_total{kind=\"acknowledged\"}",
        )
    };
    let p0 = published()?;
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        a.query_drop("INSERT INTO causeway.fleet_acked (v) VALUES (1)")
            .await?;
        writes += 1;
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = published()? - p0;
    let most = (elapsed.as_millis() / 100) as f64 + 2.0;
    ensure!(
        sent >= 1.0 && sent <= most,
        "{sent} publishes for {writes} writes in {elapsed:?} (at most {most})"
    );
    eprintln!(
        "etcd writes for the acknowledged sets: {sent} in {elapsed:?} for {writes} acknowledged writes ({:.1}/s)",
        sent / elapsed.as_secs_f64()
    );

    // replica1 stops replicating; a write acknowledged by fleet-a only.
    on_server(topo, "replica1", "STOP REPLICA")?;
    a.query_drop("INSERT INTO causeway.fleet_acked (v) VALUES (2)")
        .await?;
    let gtid = on_server(topo, "primary", "SELECT @@global.gtid_executed")?;
    let lacking = on_server(
        topo,
        "replica1",
        &format!("SELECT GTID_SUBTRACT('{gtid}', @@global.gtid_executed)"),
    )?;
    ensure!(!lacking.is_empty(), "replica1 should lack the last write");
    // fleet-b has it from fleet-a's published set.
    until(
        "fleet-a's set reaches etcd",
        Duration::from_secs(10),
        || async {
            let doc = f.etcdctl(&[
                "get",
                "--print-value-only",
                &format!("{}/acknowledged/fleet-a", f.key),
            ])?;
            let sets: std::collections::HashMap<String, String> =
                serde_json::from_str(doc.trim()).unwrap_or_default();
            let set =
                causeway_gtid::GtidSet::parse(sets.get("primary").map_or("", String::as_str))?;
            let want = causeway_gtid::GtidSet::parse(&lacking.replace('\n', ""))?;
            Ok(set.is_superset(&want))
        },
    )
    .await?;

    // A promotion of replica1 while it lacks the write: the primary is
    // made read-only, replica1 writable.
    on_server(topo, "primary", "SET GLOBAL super_read_only = ON")?;
    on_server(
        topo,
        "replica1",
        "RESET REPLICA ALL; SET GLOBAL super_read_only = OFF; SET GLOBAL read_only = OFF",
    )?;

    // Outside the fleet, the sandbox's own router acknowledged nothing and
    // takes replica1: what a router without the union does.
    let router_admin = f.topo.var("CAUSEWAY_ROUTER_ADMIN_PORT")?.parse::<u16>()?;
    let mut plain = f.admin_on(router_admin).await?;
    // replica1's (writer, missing_acknowledged) as `admin` shows it, once
    // `done` says so (or fails with the last seen after `limit`).
    async fn replica1_until(
        admin: &mut Conn,
        what: &str,
        done: impl Fn(&(i64, String, String)) -> bool,
    ) -> Result<(i64, String, String)> {
        let q = "SELECT name, writer, missing_acknowledged, state FROM servers";
        let start = Instant::now();
        loop {
            let rows: Vec<(String, i64, String, String)> = admin.query(q).await?;
            let w = rows
                .into_iter()
                .find(|r| r.0 == "replica1")
                .map(|r| (r.1, r.2, r.3))
                .context("no replica1 row")?;
            if done(&w) {
                return Ok(w);
            }
            ensure!(
                start.elapsed() < Duration::from_secs(20),
                "{what}: not within 20 s; replica1 is {w:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    replica1_until(&mut plain, "the plain router takes replica1", |w| w.0 == 1).await?;

    // fleet-b, which never acknowledged anything itself, refuses it: it
    // lacks what fleet-a acknowledged.
    let mut b_admin = f.admin(1).await?;
    replica1_until(&mut b_admin, "fleet-b holds replica1 as catching up", |w| {
        w.0 == 0 && !w.1.is_empty() && w.2 == "catching_up"
    })
    .await?;
    // And stays so.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let w = replica1_until(&mut b_admin, "replica1 on fleet-b", |_| true).await?;
    ensure!(
        w.0 == 0 && w.2 == "catching_up",
        "fleet-b took replica1 as writer: {w:?}"
    );
    let missing = causeway_gtid::GtidSet::parse(&w.1)?;
    let want = causeway_gtid::GtidSet::parse(&lacking.replace('\n', ""))?;
    ensure!(
        missing.is_superset(&want),
        "fleet-b says replica1 lacks {missing}, it lacks {want}"
    );

    // fleet-a dies: what it acknowledged stays needed (its key outlives
    // its lease until every server has it), so fleet-b still refuses.
    f.kill("fleet-a")?;
    until(
        "fleet-a leaves the fleet view",
        Duration::from_secs(20),
        || async {
            let (t, _) = f.status()?;
            Ok(!t.contains("fleet-a"))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let w = replica1_until(&mut b_admin, "fleet-b still refuses replica1", |_| true).await?;
    ensure!(
        w.0 == 0 && w.2 == "catching_up",
        "fleet-b took replica1 once fleet-a was gone: {w:?}"
    );
    let doc = f.etcdctl(&[
        "get",
        "--print-value-only",
        &format!("{}/acknowledged/fleet-a", f.key),
    ])?;
    ensure!(
        doc.contains("primary"),
        "fleet-a's acknowledged GTIDs went: {doc:?}"
    );
    Ok(())
}

async fn ok_of(raw: &mut Raw, sql: String) -> Result<OkPacket> {
    let mut q = vec![0x03];
    q.extend_from_slice(sql.as_bytes());
    let resp = raw.command(&q).await?;
    Ok(OkPacket::decode(&resp[0], raw.caps)?)
}

/// Stops and starts the replicas' appliers in bursts until `stop`.
async fn lag_bursts(topo: Topology, stop: Arc<AtomicBool>) -> Result<()> {
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let names: &[&str] = match round % 3 {
            0 => &["replica1"],
            1 => &["replica2"],
            _ => &["replica1", "replica2"],
        };
        for n in names {
            on_server(&topo, n, "STOP REPLICA SQL_THREAD")?;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        for n in names {
            on_server(&topo, n, "START REPLICA SQL_THREAD")?;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        round += 1;
    }
    Ok(())
}

/// Reads made, stale ones, and reads served per server port.
#[derive(Debug, Default)]
struct Tally {
    reads: u64,
    stale: u64,
    by_port: std::collections::BTreeMap<u16, u64>,
}

/// Writes through fleet-a for `run`, each row read back at once in a fresh
/// session of fleet-b, with the write's GTID as a token or not.
async fn across(f: &Fleet, ids: u64, token: bool, run: Duration) -> Result<Tally> {
    let who = f.topo.user("APP")?;
    let caps = RAW_CAPS | CapabilityFlags::SESSION_TRACK;
    let mut raw = Raw::login_with(
        f.ports[0],
        &who.user,
        &who.password,
        "caching_sha2_password",
        caps,
    )
    .await?;
    ok_of(&mut raw, "SET session_track_gtids = OWN_GTID".into()).await?;
    let mut tally = Tally::default();
    let deadline = Instant::now() + run;
    let mut id = ids;
    while Instant::now() < deadline {
        id += 1;
        let ok = ok_of(
            &mut raw,
            format!("INSERT INTO causeway.fleet_hunt (id) VALUES ({id})"),
        )
        .await?;
        let gtid = String::from_utf8(ok.gtids()?.context("no GTID in the OK packet")?.to_vec())?;
        let hint = if token {
            format!("/* causeway: min_gtid={gtid} */ ")
        } else {
            String::new()
        };
        let mut b = f.app(1).await?;
        let row: Option<(u16, u64)> = b
            .query_first(format!(
                "{hint}SELECT @@port, (SELECT COUNT(*) FROM causeway.fleet_hunt WHERE id = {id})"
            ))
            .await?;
        b.disconnect().await?;
        let (port, found) = row.context("no row")?;
        tally.reads += 1;
        *tally.by_port.entry(port).or_default() += 1;
        if found == 0 {
            tally.stale += 1;
        }
    }
    raw.send(0, &[0x01]).await?;
    Ok(tally)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_carries_causality_from_one_fleet_router_to_the_other() -> Result<()> {
    let f = Fleet::get("fleet")?;
    let mut a = f.app(0).await?;
    a.query_drop("CREATE TABLE IF NOT EXISTS causeway.fleet_hunt (id BIGINT PRIMARY KEY)")
        .await?;
    let start: u64 = a
        .query_first("SELECT COALESCE(MAX(id), 0) FROM causeway.fleet_hunt")
        .await?
        .unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let lagger = tokio::spawn(lag_bursts(f.topo.clone(), stop.clone()));
    let with = across(&f, start, true, Duration::from_secs(6)).await;
    let without = across(&f, start + 1_000_000, false, Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    lagger.await??;
    let (with, without) = (with?, without?);
    eprintln!("with the token: {with:?}; without: {without:?}");
    let replicas: u64 = f
        .topo
        .replica_ports
        .iter()
        .map(|p| with.by_port.get(p).copied().unwrap_or(0))
        .sum();
    ensure!(with.reads >= 20, "only {} reads with the token", with.reads);
    ensure!(with.stale == 0, "stale reads with the token: {with:?}");
    ensure!(
        replicas > 0,
        "no read with the token went to a replica: {with:?}"
    );
    // The hunt finds stale reads when there is no token: it can fail.
    ensure!(
        without.stale > 0,
        "no stale read without the token: {without:?}"
    );
    Ok(())
}
