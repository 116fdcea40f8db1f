use std::path::Path;

use causeway_common::config::parse_toml;

use super::*;

fn policy(shun_after_errors: u32) -> MonitorConfig {
    MonitorConfig {
        shun_after_errors,
        ..MonitorConfig::default()
    }
}

fn ok(read_only: bool, lag: Lag) -> Observation {
    Observation::Ok {
        read_only: Some(read_only),
        lag,
    }
}

fn fail(why: &str) -> Observation {
    Observation::Failed(why.to_string())
}

/// Folds `observations` from a never-checked server, returning every state.
fn run(
    obs: &[Observation],
    max_lag: Option<Duration>,
    policy: &MonitorConfig,
) -> Vec<ServerHealth> {
    let mut h = ServerHealth::default();
    obs.iter()
        .map(|o| {
            h = observe(&h, o, max_lag, policy);
            h.clone()
        })
        .collect()
}

const SHUN_UNREACHABLE: Status = Status::Shunned {
    reason: ShunReason::Unreachable,
};
const SHUN_BROKEN: Status = Status::Shunned {
    reason: ShunReason::ReplicationBroken,
};

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

// ---- configuration ----

#[test]
fn config_defaults_and_toml() {
    let c: MonitorConfig = parse_toml("", Path::new("m.toml")).unwrap();
    assert_eq!(c, MonitorConfig::default());
    assert!(c.enabled && c.read_only_check && c.lag_check);
    assert_eq!(c.interval, Duration::from_secs(1));
    assert_eq!(c.user, "causeway_monitor");
    assert_eq!(c.shun_after_errors, 3);
    assert!(c.validate().is_empty());

    let c: MonitorConfig = parse_toml(
        "interval = \"250ms\"\nquery_timeout = \"2s\"\npassword = \"pw\"\nlag_check = false\n",
        Path::new("m.toml"),
    )
    .unwrap();
    assert_eq!(c.interval, Duration::from_millis(250));
    assert_eq!(c.query_timeout, Duration::from_secs(2));
    assert!(!c.lag_check);
    assert_eq!(c.resolve_password().unwrap(), b"pw");
    assert!(!format!("{c:?}").contains("\"pw\""));

    let err = parse_toml::<MonitorConfig>("intervall = \"1s\"", Path::new("m.toml")).unwrap_err();
    assert!(err.to_string().contains("intervall"), "{err}");
}

#[test]
fn validate_collects_every_problem() {
    let c = MonitorConfig {
        interval: Duration::ZERO,
        query_timeout: Duration::ZERO,
        shun_after_errors: 0,
        user: String::new(),
        password: Some(Secret("a".into())),
        password_env: Some("B".into()),
        ..MonitorConfig::default()
    };
    let errors = c.validate();
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("monitor.interval")));
    assert!(errors.iter().any(|e| e.contains("at most one")));
    // No user is fine when the monitor is off.
    let off = MonitorConfig {
        enabled: false,
        user: String::new(),
        ..MonitorConfig::default()
    };
    assert!(off.validate().is_empty());
    assert!(off.resolve_password().unwrap().is_empty());
}

// ---- observe ----

#[test]
fn first_good_check_brings_an_unknown_server_up() {
    let h = run(&[ok(true, Lag::Seconds(0))], secs(5), &policy(3));
    assert_eq!(h[0].status, Status::Up);
    assert_eq!(h[0].read_only, Some(true));
    assert_eq!(h[0].lag, Lag::Seconds(0));
    assert_eq!((h[0].checks, h[0].failures), (1, 0));
    assert!(h[0].is_usable());
    assert!(ServerHealth::default().is_usable());
}

#[test]
fn failures_keep_the_last_known_status_until_the_threshold() {
    let h = run(&[fail("a"), fail("b"), fail("c")], None, &policy(3));
    // Never checked successfully: stays unknown (usable) until shunned.
    assert_eq!(h[0].status, Status::Unknown);
    assert_eq!(h[1].status, Status::Unknown);
    assert_eq!(h[2].status, SHUN_UNREACHABLE);
    assert!(!h[2].is_usable());
    assert_eq!(h[2].consecutive_errors, 3);
    assert_eq!(h[2].last_error.as_deref(), Some("c"));
    assert_eq!((h[2].checks, h[2].failures), (3, 3));

    let h = run(
        &[ok(false, Lag::NotReplica), fail("x"), fail("y"), fail("z")],
        None,
        &policy(3),
    );
    assert_eq!(h[1].status, Status::Up);
    assert_eq!(h[2].status, Status::Up);
    // What was last seen is kept while the server does not answer.
    assert_eq!(h[2].read_only, Some(false));
    assert_eq!(h[2].lag, Lag::NotReplica);
    assert_eq!(h[3].status, SHUN_UNREACHABLE);
    assert_eq!(h[3].read_only, Some(false));
}

#[test]
fn one_good_check_recovers_an_unreachable_server() {
    let h = run(
        &[fail("a"), fail("b"), ok(true, Lag::Seconds(1))],
        secs(5),
        &policy(2),
    );
    assert_eq!(h[1].status, SHUN_UNREACHABLE);
    assert_eq!(h[2].status, Status::Up);
    assert_eq!(h[2].consecutive_errors, 0);
    // The last error stays for diagnosis; the counters keep counting.
    assert_eq!(h[2].last_error.as_deref(), Some("b"));
    assert_eq!((h[2].checks, h[2].failures), (3, 2));
}

#[test]
fn a_threshold_of_one_shuns_at_once_and_zero_counts_as_one() {
    for n in [0, 1] {
        let h = run(&[fail("a")], None, &policy(n));
        assert_eq!(h[0].status, SHUN_UNREACHABLE, "shun_after_errors = {n}");
    }
}

#[test]
fn lag_over_max_shuns_and_back_under_unshuns() {
    let h = run(
        &[
            ok(true, Lag::Seconds(5)),
            ok(true, Lag::Seconds(6)),
            ok(true, Lag::Seconds(60)),
            ok(true, Lag::Seconds(2)),
        ],
        secs(5),
        &policy(3),
    );
    // Equal to max_lag is not over it.
    assert_eq!(h[0].status, Status::Up);
    assert_eq!(
        h[1].status,
        Status::Shunned {
            reason: ShunReason::LagOver { lag_s: 6, max_s: 5 }
        }
    );
    assert_eq!(
        h[2].status,
        Status::Shunned {
            reason: ShunReason::LagOver {
                lag_s: 60,
                max_s: 5
            }
        }
    );
    assert_eq!(h[3].status, Status::Up);
    assert_eq!(h[3].lag, Lag::Seconds(2));
}

#[test]
fn sub_second_max_lag_compares_exactly() {
    let h = run(
        &[ok(true, Lag::Seconds(0)), ok(true, Lag::Seconds(1))],
        Some(Duration::from_millis(500)),
        &policy(3),
    );
    assert_eq!(h[0].status, Status::Up);
    assert_eq!(
        h[1].status,
        Status::Shunned {
            reason: ShunReason::LagOver { lag_s: 1, max_s: 0 }
        }
    );
}

#[test]
fn broken_replication_shuns_only_servers_with_a_max_lag() {
    let h = run(
        &[ok(true, Lag::Broken), ok(true, Lag::Seconds(0))],
        secs(5),
        &policy(3),
    );
    assert_eq!(h[0].status, SHUN_BROKEN);
    assert_eq!(h[1].status, Status::Up);
    let h = run(&[ok(true, Lag::Broken)], None, &policy(3));
    assert_eq!(h[0].status, Status::Up);
    assert_eq!(h[0].lag, Lag::Broken);
}

#[test]
fn a_replica_that_stopped_replicating_or_unchecked_lag_stays_up() {
    for lag in [Lag::NotReplica, Lag::Unknown] {
        let h = run(&[ok(false, lag)], secs(1), &policy(3));
        assert_eq!(h[0].status, Status::Up, "{lag:?}");
    }
}

#[test]
fn failures_while_lagging_keep_lag_over_until_unreachable() {
    let lagging = Status::Shunned {
        reason: ShunReason::LagOver { lag_s: 9, max_s: 1 },
    };
    let h = run(
        &[
            ok(true, Lag::Seconds(9)),
            fail("a"),
            fail("b"),
            ok(true, Lag::Seconds(9)),
        ],
        secs(1),
        &policy(2),
    );
    assert_eq!(h[1].status, lagging);
    assert_eq!(h[2].status, SHUN_UNREACHABLE);
    // Back from unreachable but still lagging: shunned for the lag.
    assert_eq!(h[3].status, lagging);
}

#[test]
fn flapping_below_the_threshold_never_shuns() {
    let mut obs = Vec::new();
    for _ in 0..10 {
        obs.extend([fail("a"), fail("b"), ok(true, Lag::Seconds(0))]);
    }
    let h = run(&obs, secs(5), &policy(3));
    assert!(h.iter().all(|h| h.is_usable()), "{h:?}");
    let last = h.last().unwrap();
    assert_eq!((last.checks, last.failures), (30, 20));
    assert_eq!(last.consecutive_errors, 0);
}

#[test]
fn flapping_around_the_threshold_shuns_and_recovers_each_time() {
    let mut obs = Vec::new();
    for _ in 0..3 {
        obs.extend([fail("a"), fail("b"), ok(false, Lag::NotReplica)]);
    }
    let h = run(&obs, None, &policy(2));
    let statuses: Vec<_> = h.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses,
        [Status::Unknown, SHUN_UNREACHABLE, Status::Up]
            .into_iter()
            .chain([Status::Up, SHUN_UNREACHABLE, Status::Up])
            .chain([Status::Up, SHUN_UNREACHABLE, Status::Up])
            .collect::<Vec<_>>()
    );
    let mut obs = Vec::new();
    for lag in [1, 9, 1, 9] {
        obs.push(ok(true, Lag::Seconds(lag)));
    }
    let h = run(&obs, secs(5), &policy(2));
    let usable: Vec<_> = h.iter().map(ServerHealth::is_usable).collect();
    assert_eq!(usable, [true, false, true, false]);
}

#[test]
fn read_only_follows_each_good_check() {
    let h = run(
        &[
            ok(true, Lag::NotReplica),
            ok(false, Lag::NotReplica),
            Observation::Ok {
                read_only: None,
                lag: Lag::NotReplica,
            },
        ],
        None,
        &policy(3),
    );
    let ro: Vec<_> = h.iter().map(|h| h.read_only).collect();
    assert_eq!(ro, [Some(true), Some(false), None]);
}

#[test]
fn changes_in_lag_alone_are_not_status_changes() {
    let a = Status::Shunned {
        reason: ShunReason::LagOver { lag_s: 6, max_s: 5 },
    };
    let b = Status::Shunned {
        reason: ShunReason::LagOver { lag_s: 7, max_s: 5 },
    };
    assert!(a.same_kind(&b));
    assert!(!a.same_kind(&SHUN_BROKEN));
    assert!(!Status::Up.same_kind(&Status::Unknown));
    assert_eq!(
        ShunReason::LagOver { lag_s: 7, max_s: 5 }.to_string(),
        "lag 7s over max_lag 5s"
    );
}

// ---- parsing check results ----

fn result(columns: &[&str], rows: &[&[Option<&str>]]) -> QueryResult {
    QueryResult {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: rows
            .iter()
            .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
            .collect(),
    }
}

#[test]
fn read_only_is_either_flag() {
    let cols = ["@@global.read_only", "@@global.super_read_only"];
    let ro = |a, b| parse_read_only(&result(&cols, &[&[Some(a), Some(b)]]));
    assert_eq!(ro("0", "0"), Ok(false));
    assert_eq!(ro("1", "0"), Ok(true));
    assert_eq!(ro("0", "1"), Ok(true));
    assert_eq!(ro("ON", "OFF"), Ok(true));
    assert!(ro("2", "0").is_err());
    assert!(parse_read_only(&result(&cols, &[&[None, Some("0")]])).is_err());
    assert!(parse_read_only(&result(&cols, &[])).is_err());
    assert!(parse_read_only(&QueryResult::default()).is_err());
}

const REPLICA_COLS: [&str; 4] = [
    "Replica_IO_State",
    "Replica_IO_Running",
    "Replica_SQL_Running",
    "Seconds_Behind_Source",
];

#[test]
fn replica_status_gives_the_lag() {
    let status = |rows: &[&[Option<&str>]]| parse_replica_status(&result(&REPLICA_COLS, rows));
    assert_eq!(status(&[]), Ok(Lag::NotReplica));
    let s = Some("");
    assert_eq!(
        status(&[&[s, Some("Yes"), Some("Yes"), Some("3")]]),
        Ok(Lag::Seconds(3))
    );
    assert_eq!(
        status(&[&[s, Some("Connecting"), Some("Yes"), None]]),
        Ok(Lag::Broken)
    );
    assert_eq!(
        status(&[&[s, Some("Yes"), Some("No"), Some("0")]]),
        Ok(Lag::Broken)
    );
    assert_eq!(
        status(&[&[s, Some("Yes"), Some("Yes"), None]]),
        Ok(Lag::Broken)
    );
    // Several channels: the worst.
    assert_eq!(
        status(&[
            &[s, Some("Yes"), Some("Yes"), Some("3")],
            &[s, Some("Yes"), Some("Yes"), Some("8")],
        ]),
        Ok(Lag::Seconds(8))
    );
    assert_eq!(
        status(&[
            &[s, Some("Yes"), Some("Yes"), Some("3")],
            &[s, Some("No"), Some("Yes"), None],
        ]),
        Ok(Lag::Broken)
    );
    assert!(status(&[&[s, Some("Yes"), Some("Yes"), Some("-1")]]).is_err());
    // Pre-8.0.22 column names are not understood.
    let old = result(
        &[
            "Slave_IO_Running",
            "Slave_SQL_Running",
            "Seconds_Behind_Master",
        ],
        &[&[Some("Yes"), Some("Yes"), Some("0")]],
    );
    let err = parse_replica_status(&old).unwrap_err();
    assert!(err.contains("Replica_IO_Running"), "{err}");
}

// ---- the tasks (no MySQL: a closed port; short intervals, generous hang guards) ----

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn target(name: &str, port: u16) -> MonitorTarget {
    MonitorTarget {
        endpoint: Endpoint {
            name: name.to_string(),
            host: "127.0.0.1".to_string(),
            port,
            connect_timeout: Duration::from_secs(1),
            tls: None,
        },
        max_lag: None,
    }
}

async fn wait_until(
    rx: &mut watch::Receiver<Arc<HealthMap>>,
    what: &str,
    ok: impl Fn(&HealthMap) -> bool,
) {
    let wait = async {
        loop {
            if ok(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.unwrap();
        }
    };
    // A guard against hanging, not a speed assertion.
    if tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .is_err()
    {
        panic!("never {what}: {:?}", rx.borrow());
    }
}

fn fast() -> MonitorConfig {
    MonitorConfig {
        interval: Duration::from_millis(5),
        shun_after_errors: 2,
        ..MonitorConfig::default()
    }
}

fn tasks_running(m: &Monitor) -> usize {
    let targets = m.shared.lock();
    targets
        .by_name
        .values()
        .filter(|w| w.task.is_some())
        .count()
}

#[tokio::test]
async fn a_disabled_monitor_leaves_every_server_unknown() {
    let config = MonitorConfig {
        enabled: false,
        ..fast()
    };
    let m = Monitor::spawn(vec![target("a", 1), target("b", 2)], config, Vec::new());
    assert_eq!(tasks_running(&m), 0);
    let snap = m.snapshot();
    assert_eq!(snap.len(), 2);
    assert!(snap.values().all(|h| *h == ServerHealth::default()));
    m.retarget(vec![target("b", 2), target("c", 3)]);
    let mut names: Vec<_> = m.snapshot().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(tasks_running(&m), 0);
}

#[tokio::test]
async fn an_unreachable_server_is_shunned_and_retarget_keeps_or_resets_health() {
    let port = closed_port();
    let m = Monitor::spawn(
        vec![target("down", port), target("down", port + 1)],
        fast(),
        b"secret".to_vec(),
    );
    assert_eq!(tasks_running(&m), 1);
    assert_eq!(m.snapshot().len(), 1, "a duplicate name is watched once");
    let mut rx = m.subscribe();
    wait_until(&mut rx, "shunned", |map| {
        map["down"].status == SHUN_UNREACHABLE
    })
    .await;
    let h = m.snapshot()["down"].clone();
    assert!(h.checks >= 2 && h.failures == h.checks, "{h:?}");
    let error = h.last_error.clone().unwrap();
    assert!(error.contains(&port.to_string()), "{error}");
    assert!(!format!("{m:?}").contains("secret"));

    // Same name and address (max_lag changed): the health is kept.
    let mut lagged = target("down", port);
    lagged.max_lag = secs(5);
    m.retarget(vec![lagged, target("other", port)]);
    assert_eq!(tasks_running(&m), 2);
    assert_eq!(m.snapshot()["down"].status, SHUN_UNREACHABLE);
    assert_eq!(m.snapshot()["other"], ServerHealth::default());
    wait_until(&mut rx, "checked again", |map| {
        map["down"].checks > h.checks
    })
    .await;

    // A new address: starts over.
    m.retarget(vec![target("down", closed_port())]);
    assert_eq!(tasks_running(&m), 1);
    let snap = m.snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap["down"], ServerHealth::default());
    wait_until(&mut rx, "shunned again", |map| {
        map["down"].status == SHUN_UNREACHABLE
    })
    .await;

    // Dropping the monitor stops the tasks and closes the channel.
    drop(m);
    let closed = async { while rx.changed().await.is_ok() {} };
    tokio::time::timeout(Duration::from_secs(60), closed)
        .await
        .unwrap();
}
