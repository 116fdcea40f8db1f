//! The router's health monitor against real MySQL, in a sandbox of its own
//! (the test stops a replication thread and a server): the roles it reads,
//! a stopped SQL thread, a server that goes away and comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use causeway_e2e::Topology;
use causeway_router::backend::connect::Endpoint;
use causeway_router::config::MonitorConfig;
use causeway_router::health::{HealthMap, Lag, ShunReason, Status};
use causeway_router::monitor::{Monitor, MonitorTarget};
use mysql_async::prelude::*;
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
