//! The router's health monitor against real MySQL: in a sandbox of its own
//! (the test stops a replication thread and a server), the roles it reads,
//! a stopped SQL thread, a server that goes away and comes back; on the
//! shared sandbox, a monitor the servers refuse (wrong password, none, a
//! missing privilege), which must shun nothing, say so, and check normally
//! once given the right settings.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use causeway_common::metrics_http::Render;
use causeway_e2e::router::{opts, start_router, TestRouter};
use causeway_e2e::Topology;
use causeway_router::backend::connect::Endpoint;
use causeway_router::config::{Config, MonitorConfig, Secret};
use causeway_router::health::{HealthMap, Lag, ShunReason, Status};
use causeway_router::monitor::{Monitor, MonitorTarget};
use causeway_router::scrape::Live;
use mysql_async::prelude::*;
use mysql_async::Conn;
use tokio::sync::watch;

/// Deadline of each wait: a guard against hanging, not a speed assertion.
const WAIT: Duration = Duration::from_secs(60);

fn target(topo: &Topology, name: &str, port: u16, max_lag: Option<Duration>) -> MonitorTarget {
    MonitorTarget {
        endpoint: Endpoint {
            name: name.to_string(),
            host: topo.host.clone(),
            port,
            connect_timeout: Duration::from_secs(2),
            tls: None,
            compression: None,
        },
        max_lag,
    }
}

/// Waits until `ok` holds for the published health.
async fn wait_for(
    rx: &mut watch::Receiver<Arc<HealthMap>>,
    what: &str,
    ok: impl Fn(&HealthMap) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if ok(&rx.borrow_and_update()) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let changed = tokio::time::timeout(left, rx.changed()).await;
        ensure!(
            matches!(changed, Ok(Ok(()))),
            "never {what} within {WAIT:?}: {:#?}",
            rx.borrow()
        );
    }
}

fn is_replicating(map: &HealthMap, name: &str) -> bool {
    let h = &map[name];
    h.status == Status::Up && h.read_only == Some(true) && matches!(h.lag, Lag::Seconds(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_follows_roles_replication_and_outages() -> Result<()> {
    let topo = Topology::isolated("monitor")?;
    let who = topo.user("MONITOR")?;
    let max_lag = Some(Duration::from_secs(30));
    let targets = vec![
        target(&topo, "primary", topo.primary_port, None),
        target(&topo, "replica1", topo.replica_ports[0], max_lag),
        target(&topo, "replica2", topo.replica_ports[1], max_lag),
    ];
    let config = MonitorConfig {
        interval: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        query_timeout: Duration::from_secs(2),
        user: who.user.clone(),
        shun_after_errors: 2,
        ..MonitorConfig::default()
    };
    ensure!(config.validate().is_empty());
    let monitor = Monitor::spawn(targets, config, who.password.clone().into_bytes());
    let mut rx = monitor.subscribe();

    // The roles as the servers report them.
    wait_for(&mut rx, "saw the roles", |map| {
        let p = &map["primary"];
        p.status == Status::Up
            && p.read_only == Some(false)
            && p.lag == Lag::NotReplica
            && is_replicating(map, "replica1")
            && is_replicating(map, "replica2")
    })
    .await?;

    // A stopped SQL thread: replication broken, the replica shunned.
    let mut admin = topo.conn(topo.replica_ports[0], "ADMIN").await?;
    admin.query_drop("STOP REPLICA SQL_THREAD").await?;
    let broken = wait_for(&mut rx, "saw replica1's replication broken", |map| {
        let h = &map["replica1"];
        h.lag == Lag::Broken
            && h.status
                == Status::Shunned {
                    reason: ShunReason::ReplicationBroken,
                }
    })
    .await;
    // Put replication back whatever happened.
    admin.query_drop("START REPLICA SQL_THREAD").await?;
    broken?;
    wait_for(&mut rx, "saw replica1 replicating again", |map| {
        is_replicating(map, "replica1")
    })
    .await?;

    // A stopped server: unreachable after shun_after_errors checks.
    topo.sandbox(&["stop", "replica2"])?;
    let down = wait_for(&mut rx, "shunned replica2", |map| {
        let h = &map["replica2"];
        h.status
            == Status::Shunned {
                reason: ShunReason::Unreachable,
            }
            && h.consecutive_errors >= 2
    })
    .await;
    topo.sandbox(&["start", "replica2"])?;
    down?;
    wait_for(&mut rx, "saw replica2 back", |map| {
        is_replicating(map, "replica2")
    })
    .await?;

    let snap = monitor.snapshot();
    let h = &snap["replica2"];
    ensure!(h.failures >= 2 && h.checks > h.failures, "{h:?}");
    ensure!(
        snap["primary"].failures == 0 && snap["primary"].last_error.is_none(),
        "{:?}",
        snap["primary"]
    );
    Ok(())
}

/// Waits until every server of `router` was checked at least `checks` times
/// and `ok` holds for the published health.
async fn wait_for_router(
    router: &TestRouter,
    checks: u64,
    what: &str,
    ok: impl Fn(&HealthMap) -> bool,
) -> Result<()> {
    let mut rx = router.shared.monitor.subscribe();
    wait_for(&mut rx, what, |map| {
        map.len() == 3 && map.values().all(|h| h.checks >= checks) && ok(map)
    })
    .await
}

/// Where plain reads and writes through `router` land: reads on the
/// replicas, writes (and locking reads) on the primary.
async fn routes_reads_and_writes(topo: &Topology, router: &TestRouter) -> Result<()> {
    let replicas: HashSet<u16> = topo.replica_ports.iter().copied().collect();
    for _ in 0..4 {
        let mut c = Conn::new(opts(topo, router.port, "APP", true)?).await?;
        let read: u16 = c.query_first("SELECT @@port").await?.context("no row")?;
        ensure!(replicas.contains(&read), "a plain read went to {read}");
        let locking: u16 = c
            .query_first("SELECT @@port FOR UPDATE")
            .await?
            .context("no row")?;
        ensure!(
            locking == topo.primary_port,
            "a locking read went to {locking}"
        );
        c.query_drop(
            "CREATE TABLE IF NOT EXISTS monitor_refused (id INT AUTO_INCREMENT PRIMARY KEY)",
        )
        .await?;
        c.query_drop("INSERT INTO monitor_refused () VALUES ()")
            .await?;
        c.disconnect().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_the_servers_refuse_shuns_nothing_says_so_and_recovers() -> Result<()> {
    let topo = Topology::get()?;
    let app = topo.user("APP")?;
    let monitor = topo.user("MONITOR")?;
    let fast = |cfg: &mut Config| {
        cfg.monitor.interval = Duration::from_millis(100);
        cfg.monitor.shun_after_errors = 2;
    };
    let wrong_password = {
        let mut cfg = topo.split_config()?;
        cfg.monitor.password = Some(Secret(format!("not-{}", monitor.password)));
        cfg
    };
    // What a configuration without a [monitor] section checks with.
    let no_section = {
        let mut cfg = topo.split_config()?;
        cfg.monitor = MonitorConfig::default();
        ensure!(!cfg.warnings().is_empty(), "--check would not warn");
        cfg
    };
    let no_privilege = {
        let mut cfg = topo.split_config()?;
        cfg.monitor.user = app.user.clone();
        cfg.monitor.password = Some(Secret(app.password.clone()));
        cfg
    };
    for (case, mut cfg, code) in [
        ("a wrong password", wrong_password, 1045),
        ("no [monitor] section (no password)", no_section, 1045),
        ("a user without REPLICATION CLIENT", no_privilege, 1227),
    ] {
        fast(&mut cfg);
        let router = start_router(cfg).await?;
        // Long past shun_after_errors checks.
        wait_for_router(&router, 6, &format!("{case}: seen refused"), |map| {
            map.values().all(|h| h.misconfigured == Some(code))
        })
        .await?;
        for (name, h) in router.shared.monitor.snapshot().iter() {
            ensure!(
                h.status == Status::Unknown && h.consecutive_errors == 0,
                "{case}: {name} {h:?}"
            );
            let error = h.last_error.as_deref().unwrap_or("");
            ensure!(error.contains(&code.to_string()), "{case}: {name}: {error}");
        }
        routes_reads_and_writes(&topo, &router)
            .await
            .context(case)?;
        let text = Live(router.shared.clone()).render();
        for server in ["primary", "replica1", "replica2"] {
            for line in [
                format!("causeway_router_monitor_misconfigured{{server=\"{server}\"}} 1"),
                format!("causeway_router_server_up{{server=\"{server}\"}} 1"),
                format!("causeway_router_server_check_failures{{server=\"{server}\"}} 0"),
            ] {
                ensure!(text.contains(&line), "{case}: no {line} in\n{text}");
            }
        }

        // The right settings (Monitor::reconfigure): checked normally again.
        let mut right = topo.split_config()?;
        fast(&mut right);
        let password = monitor.password.clone().into_bytes();
        router.shared.monitor.reconfigure(right.monitor, password);
        wait_for_router(&router, 0, &format!("{case}: checked again"), |map| {
            map.values()
                .all(|h| h.status == Status::Up && h.misconfigured.is_none())
        })
        .await?;
        let text = Live(router.shared.clone()).render();
        let line = "causeway_router_monitor_misconfigured{server=\"primary\"} 0";
        ensure!(text.contains(line), "{case}: no {line} in\n{text}");
    }
    Ok(())
}
