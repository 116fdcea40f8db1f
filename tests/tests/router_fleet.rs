//! A fleet of routers on etcd, end to end (`scripts/sandbox up --etcd`: a
//! real etcd and two routers, fleet-a and fleet-b, reading their
//! configuration from it, in front of the sandbox's real MySQL servers):
//!
//! - a configuration put once (`causeway-router fleet put`) reaches both
//!   routers, which apply it between the statements of live sessions; a
//!   broken revision is refused by both, shown in `fleet status` and the
//!   admin `fleet` table, and the old configuration keeps serving;
//!   `fleet put` refuses to overwrite a change made since the file's copy;
//! - etcd stopped for 10 s: both routers keep serving without an error and
//!   catch up with a revision put right after etcd returns; a router killed
//!   leaves the fleet view once its lease expires, and comes back; one
//!   stopped cleanly leaves at once; one started while etcd is down starts
//!   from its cache of the last revision in force and follows etcd later.
//!
//! Causality across the fleet is in router_fleet_causality.rs, etcd's TLS
//! and authentication in router_fleet_tls.rs. Each test file has a sandbox
//! of its own: they stop etcd, kill routers and promote replicas.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_e2e::fleet::{marker_server, until, Fleet, Load};
use mysql_async::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_reaches_every_router_and_a_broken_revision_is_refused_by_all() -> Result<()> {
    let f = Fleet::get("fleet")?;
    // A former run may have left the rule in force.
    let rev = f.put_marker(false)?;
    until(
        "both routers without the rule",
        Duration::from_secs(15),
        || async {
            Ok(
                f.metric(0, "causeway_router_fleet_config_revision")? == rev as f64
                    && f.metric(1, "causeway_router_fleet_config_revision")? == rev as f64,
            )
        },
    )
    .await?;
    // Live sessions on both routers, opened before the change.
    let mut live = vec![f.app(0).await?, f.app(1).await?];
    let load = Load::start(&f).await?;
    for c in &mut live {
        let id = marker_server(c).await?;
        ensure!(
            id != 1,
            "without the rule the marked read goes to a replica, got {id}"
        );
    }

    // One put; both routers apply it, the live sessions see it at their
    // next statements.
    let rev = f.put_marker_rule()?;
    for (i, c) in live.iter_mut().enumerate() {
        let start = Instant::now();
        while marker_server(c).await? != 1 {
            ensure!(
                start.elapsed() < Duration::from_secs(15),
                "router {i} did not put revision {rev} in force"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for i in 0..2 {
        ensure!(
            f.metric(i, "causeway_router_fleet_config_revision")? == rev as f64,
            "router {i}'s revision metric"
        );
        ensure!(f.metric(i, "causeway_router_fleet_etcd_connected")? == 1.0);
    }
    let (table, all_well) = f.status()?;
    ensure!(all_well, "fleet status flags a router: {table}");
    ensure!(
        table.contains("fleet-a") && table.contains("fleet-b"),
        "{table}"
    );

    // The admin table of either router lists both, on the latest revision
    // (once fleet-a's watch saw fleet-b's registration).
    let mut admin = f.admin(0).await?;
    let want = vec![
        ("fleet-a".to_string(), rev, rev, 1, 0, 1),
        ("fleet-b".to_string(), rev, rev, 1, 0, 0),
    ];
    let start = Instant::now();
    loop {
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = admin
            .query(
                "SELECT router_id, config_revision, latest_revision, on_latest, reload_failed, \
                 this_router FROM fleet ORDER BY router_id",
            )
            .await?;
        if rows == want {
            break;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(15),
            "fleet table: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Two operators: a copy from before the last put is refused.
    let stale = format!(
        "# causeway fleet: revision {} of {}\n{}",
        rev - 1,
        f.key,
        f.get_doc()?.split_once('\n').context("header")?.1
    ) + "\n# an edit\n";
    let out = f.put(&stale, "stale")?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && err.contains("someone changed it"),
        "{err}"
    );
    // `fleet diff` shows what a file would change.
    let path = f.topo.dir.join("stale.toml");
    let out = f.cli(&["diff", path.to_str().context("path")?])?;
    ensure!(out.status.code() == Some(1));
    ensure!(String::from_utf8_lossy(&out.stdout).contains("+# an edit"));

    // A broken revision (written around the CLI's check): refused by both,
    // reported, and the configuration in force keeps serving.
    let failures = [
        f.metric(0, "causeway_router_reload_failures_total")?,
        f.metric(1, "causeway_router_reload_failures_total")?,
    ];
    let broken = f
        .get_doc()?
        .split_once('\n')
        .context("header")?
        .1
        .to_string()
        + "\n[frontend.bogus]\nx = 1\n";
    f.etcdctl(&["put", &f.key, &broken])?;
    until(
        "both routers refuse the broken revision",
        Duration::from_secs(15),
        || async {
            let (table, all_well) = f.status()?;
            Ok(!all_well && table.matches("refused revision").count() == 2)
        },
    )
    .await?;
    let (table, _) = f.status()?;
    ensure!(table.contains("unknown field `bogus`"), "{table}");
    let rows: Vec<(String, i64, i64, i64, String)> = admin
        .query(
            "SELECT router_id, config_revision, on_latest, reload_failed, last_error \
             FROM fleet ORDER BY router_id",
        )
        .await?;
    ensure!(rows.len() == 2, "{rows:?}");
    for r in &rows {
        ensure!(
            r.1 == rev && r.2 == 0 && r.3 == 1 && r.4.contains("bogus"),
            "{r:?}"
        );
    }
    for (i, c) in live.iter_mut().enumerate() {
        ensure!(
            marker_server(c).await? == 1,
            "router {i} lost the configuration in force"
        );
        ensure!(
            f.metric(i, "causeway_router_reload_failures_total")? > failures[i],
            "router {i} did not count the refusal"
        );
    }
    // The next good revision clears the flags.
    let good = f.get_doc()?;
    let good = good.replace("\n[frontend.bogus]\nx = 1\n", "\n");
    let out = f.put(&good, "fixed")?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    until(
        "both routers on the fixed revision",
        Duration::from_secs(15),
        || async { Ok(f.status()?.1) },
    )
    .await?;
    let n = load.finish().await?;
    ensure!(n >= 4, "the live sessions ran only {n} statements");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_ride_out_etcd_down_and_a_killed_router_leaves_the_view() -> Result<()> {
    let f = Fleet::get("fleet-outage")?;
    let load = Load::start(&f).await?;
    let before = load.ok.load(Ordering::Relaxed);

    // etcd down for 10 s: both routers keep serving, and say they lost it.
    tokio::task::block_in_place(|| f.topo.sandbox(&["stop", "etcd"]))?;
    let down = Instant::now();
    until(
        "both routers see etcd gone",
        Duration::from_secs(15),
        || async {
            Ok(f.metric(0, "causeway_router_fleet_etcd_connected")? == 0.0
                && f.metric(1, "causeway_router_fleet_etcd_connected")? == 0.0)
        },
    )
    .await?;
    let mut c = f.app(1).await?;
    ensure!(
        marker_server(&mut c).await? > 0,
        "a new session during the outage"
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    let during = load.ok.load(Ordering::Relaxed) - before;
    ensure!(during >= 4, "only {during} statements while etcd was down");

    // Back: a revision put at once is caught up by both (they are still
    // backing off: the catch-up read on reconnection finds it).
    tokio::task::block_in_place(|| f.topo.sandbox(&["start", "etcd"]))?;
    let rev = f.put_marker_rule()?;
    until("both routers catch up", Duration::from_secs(30), || async {
        Ok(
            f.metric(0, "causeway_router_fleet_config_revision")? == rev as f64
                && f.metric(1, "causeway_router_fleet_config_revision")? == rev as f64,
        )
    })
    .await?;
    ensure!(
        marker_server(&mut c).await? == 1,
        "the session on fleet-b after catch-up"
    );
    ensure!(f.metric(0, "causeway_router_fleet_etcd_connected")? == 1.0);
    load.finish().await?;
    until(
        "both routers registered again",
        Duration::from_secs(15),
        || async {
            let (t, ok) = f.status()?;
            Ok(ok && t.contains("fleet-a") && t.contains("fleet-b"))
        },
    )
    .await?;

    // fleet-b killed: it leaves the view once its lease (4 s) expires.
    f.kill("fleet-b")?;
    until(
        "fleet-b leaves the fleet view",
        Duration::from_secs(20),
        || async {
            let (t, _) = f.status()?;
            Ok(t.contains("fleet-a") && !t.contains("fleet-b"))
        },
    )
    .await?;
    let mut admin = f.admin(0).await?;
    let ids: Vec<String> = admin.query("SELECT router_id FROM fleet").await?;
    ensure!(ids == ["fleet-a"], "{ids:?}");
    // Started again, it registers and runs the latest revision.
    tokio::task::block_in_place(|| f.topo.sandbox(&["start", "fleet-b"]))?;
    until("fleet-b is back", Duration::from_secs(20), || async {
        let (t, ok) = f.status()?;
        Ok(ok && t.contains("fleet-b"))
    })
    .await?;
    let mut c = f.app(1).await?;
    ensure!(marker_server(&mut c).await? == 1);
    drop(c);

    // Stopped cleanly (SIGTERM), it revokes its lease before it exits: gone
    // from the view as soon as it is gone, not a lease later.
    tokio::task::block_in_place(|| f.topo.sandbox(&["stop", "fleet-b"]))?;
    let (t, _) = f.status()?;
    ensure!(
        !t.contains("fleet-b"),
        "a stopped router is still listed: {t}"
    );
    let log = std::fs::read_to_string(f.topo.dir.join("fleet/fleet-b.log"))?;
    ensure!(log.contains("lease revoked"), "{log}");

    // etcd down when fleet-b starts: it starts from its cache of the last
    // revision in force, serves, and follows etcd once it is back.
    tokio::task::block_in_place(|| f.topo.sandbox(&["stop", "etcd"]))?;
    tokio::task::block_in_place(|| f.topo.sandbox(&["start", "fleet-b"]))?;
    let log = std::fs::read_to_string(f.topo.dir.join("fleet/fleet-b.log"))?;
    ensure!(
        log.contains("starting from the cached configuration"),
        "{log}"
    );
    ensure!(f.metric(1, "causeway_router_fleet_config_revision")? == rev as f64);
    ensure!(f.metric(1, "causeway_router_fleet_etcd_connected")? == 0.0);
    let mut c = f.app(1).await?;
    let one: Option<u8> = c.query_first("SELECT 1").await?;
    ensure!(
        one == Some(1),
        "a read through fleet-b started from its cache"
    );
    tokio::task::block_in_place(|| f.topo.sandbox(&["start", "etcd"]))?;
    until(
        "fleet-b follows etcd again",
        Duration::from_secs(30),
        || async {
            let (t, ok) = f.status()?;
            Ok(ok
                && t.contains("fleet-b")
                && f.metric(1, "causeway_router_fleet_etcd_connected")? == 1.0)
        },
    )
    .await?;
    ensure!(
        marker_server(&mut c).await? == 1,
        "writes and the marker rule after etcd returned"
    );
    Ok(())
}
