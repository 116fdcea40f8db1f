//! The fold of servers' rows from a made-up configuration, membership,
//! health, views and operator state: no sockets, no tasks.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::config::Config;
use crate::health::Writable;
use crate::ids::GroupId;
use crate::runtime::Facts;

const TOPOLOGY: &str = r#"
[[hostgroups]]
name = "w"
[[hostgroups]]
name = "r"
role = "reader"
writer = "w"
[[servers]]
name = "a"
host = "10.0.0.1"
port = 3306
hostgroup = "w"
reader = "10.0.0.1:4000"
[[servers]]
name = "b"
host = "10.0.0.2"
port = 3306
hostgroup = "r"
reader = "10.0.0.2:4000"
[[servers]]
name = "c"
host = "10.0.0.3"
port = 3307
hostgroup = "r"
[[users]]
name = "app"
password = "pw"
[backend.tls]
mode = "disabled"
[monitor]
enabled = false
"#;

const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

fn set(r: &str) -> GtidSet {
    if r.is_empty() {
        GtidSet::new()
    } else {
        GtidSet::parse(&format!("{U}:{r}")).unwrap()
    }
}

fn runtime() -> Runtime {
    let cfg = Config::from_toml(TOPOLOGY, Path::new("r.toml")).unwrap();
    Runtime::build(cfg).unwrap()
}

fn up(read_only: bool, lag: Lag) -> ServerHealth {
    ServerHealth {
        status: Status::Up,
        read_only: Some(read_only),
        lag,
        writable: if read_only {
            Writable::No
        } else {
            Writable::Found
        },
        ..ServerHealth::default()
    }
}

/// a writable (the writer), b and c replicas.
fn healthy() -> HealthMap {
    [
        ("a", up(false, Lag::NotReplica)),
        ("b", up(true, Lag::Seconds(0))),
        ("c", up(true, Lag::Seconds(2))),
    ]
    .into_iter()
    .map(|(n, h)| (n.to_string(), h))
    .collect()
}

/// Rows for `health`, views a:1-100, b:1-90, c: nothing (no reader),
/// with `tweak` applied to the inputs first.
fn rows(health: &HealthMap, tweak: impl FnOnce(&mut Inputs<'_>)) -> Vec<ServerRow> {
    let rt = runtime();
    let members = rt.members(health, &Facts::default());
    rows_with(&rt, &members, health, tweak)
}

fn rows_with(
    rt: &Runtime,
    members: &Membership,
    health: &HealthMap,
    tweak: impl FnOnce(&mut Inputs<'_>),
) -> Vec<ServerRow> {
    let mut inp = Inputs {
        rt,
        members,
        health,
        seen: vec![
            Seen {
                view: set("1-100"),
                connected: Some(true),
            },
            Seen {
                view: set("1-90"),
                connected: Some(true),
            },
            Seen::default(),
        ]
        .into(),
        ops: HashMap::new(),
        in_use: vec![0; 3].into(),
        acked: HashMap::new(),
        apply_rate: vec![None; 3].into(),
    };
    tweak(&mut inp);
    fold(&inp)
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[test]
fn a_healthy_cluster_is_online_with_roles_distances_and_lags() {
    let r = rows(&healthy(), |inp| {
        inp.apply_rate = vec![Some(50.0), Some(5.0), None].into();
    });
    let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "configuration order");
    let (a, b, c) = (&r[0], &r[1], &r[2]);
    assert_eq!(a.address, "10.0.0.1:3306");
    assert_eq!(c.address, "10.0.0.3:3307");
    assert_eq!((a.hostgroup.as_str(), b.hostgroup.as_str()), ("w", "r"));
    assert_eq!(a.role_in_force.as_deref(), Some("w"));
    assert_eq!(b.role_in_force.as_deref(), Some("r"));
    assert!(a.writer && !b.writer && !c.writer);
    for row in &r {
        assert_eq!(row.state, ServerState::Online, "{row:?}");
        assert_eq!(row.state.name(), "online");
    }
    assert_eq!(a.why, "writer of w");
    assert_eq!(a.gtid_distance, Some(0));
    assert_eq!(a.catchup_ms, Some(0));
    assert_eq!(a.lag_ms, None, "a source has no lag");
    // b's view lacks 91-100 of a's: 10 transactions at 5 a second.
    assert_eq!(b.gtid_distance, Some(10));
    assert_eq!(b.catchup_ms, Some(2000));
    assert_eq!(b.lag_ms, Some(0));
    assert_eq!(b.why, "10 transactions behind a");
    assert_eq!(b.reader_connected, Some(true));
    // c: no reader, no gtid_executed: nothing known.
    assert_eq!(c.gtid_distance, None);
    assert_eq!(c.catchup_ms, None);
    assert_eq!(c.lag_ms, Some(2000));
    assert_eq!(c.reader_connected, None);
    assert_eq!(c.why, "serving r");
    assert!(r.iter().all(|r| r.missing_acknowledged.is_empty()));
}

#[test]
fn the_monitors_gtid_executed_counts_as_known_and_a_stalled_server_has_no_estimate() {
    let mut health = healthy();
    health.get_mut("c").unwrap().executed = set("1-60");
    health.get_mut("a").unwrap().executed = set("1-120");
    let r = rows(&health, |inp| {
        inp.apply_rate = vec![None, Some(0.0), Some(20.0)].into();
    });
    assert_eq!(r[1].gtid_distance, Some(30), "a's executed set counts");
    assert_eq!(r[1].catchup_ms, None, "applies nothing: no estimate");
    assert_eq!(r[2].gtid_distance, Some(60));
    assert_eq!(r[2].catchup_ms, Some(3000));
}

#[test]
fn admin_state_wins_over_health_and_the_health_reason_stays_in_why() {
    let mut health = healthy();
    health.get_mut("c").unwrap().status = Status::Shunned {
        reason: ShunReason::LagOver { lag_s: 9, max_s: 5 },
    };
    let r = rows(&health, |inp| {
        inp.ops.insert(
            "a".into(),
            Set {
                op: ServerOp::Draining,
                since: at(0),
            },
        );
        inp.ops.insert(
            "b".into(),
            Set {
                op: ServerOp::Draining,
                since: at(1000),
            },
        );
        inp.ops.insert(
            "c".into(),
            Set {
                op: ServerOp::Offline,
                since: at(2000),
            },
        );
        inp.in_use = vec![2, 0, 0].into();
    });
    assert_eq!(r[0].state, ServerState::Draining);
    assert_eq!(
        r[0].why,
        "draining, set by admin at 1970-01-01T00:00:00Z: 2 connections still in use"
    );
    assert_eq!(r[1].state, ServerState::Drained);
    assert!(
        r[1].why
            .starts_with("drained, set by admin at 1970-01-01T00:00:01Z: no connection in use"),
        "{}",
        r[1].why
    );
    assert_eq!(r[2].state, ServerState::Offline);
    assert_eq!(
        r[2].why,
        "set offline by admin at 1970-01-01T00:00:02Z; shunned: lag 9s over max_lag 5s"
    );
    assert_eq!(r[2].role_in_force, None, "shunned: in no group");
    let names: Vec<&str> = [
        ServerState::Online,
        ServerState::Shunned,
        ServerState::Fenced,
        ServerState::Draining,
        ServerState::Drained,
        ServerState::Offline,
        ServerState::CatchingUp,
    ]
    .iter()
    .map(|s| s.name())
    .collect();
    assert_eq!(
        names,
        [
            "online",
            "shunned",
            "fenced",
            "draining",
            "drained",
            "offline",
            "catching_up"
        ]
    );
}

#[test]
fn shunned_servers_say_why_and_broken_replication_is_told() {
    let mut health = healthy();
    let b = health.get_mut("b").unwrap();
    b.status = Status::Shunned {
        reason: ShunReason::Unreachable,
    };
    b.last_error = Some("connection refused".into());
    let c = health.get_mut("c").unwrap();
    c.lag = Lag::Broken;
    let r = rows(&health, |inp| inp.seen[ServerId(1)].connected = Some(false));
    assert_eq!(r[1].state, ServerState::Shunned);
    assert_eq!(
        r[1].why,
        "shunned: unreachable (connection refused); 10 transactions behind a; \
         reader stream down: its view is kept as it was"
    );
    assert_eq!(r[1].reader_connected, Some(false));
    assert_eq!(r[2].state, ServerState::Online);
    assert_eq!(r[2].lag_ms, None);
    assert!(r[2].replication_broken && !r[1].replication_broken);
    assert_eq!(
        r[2].why,
        "replication stopped (a replication thread is not running)"
    );
    health.get_mut("a").unwrap().misconfigured = Some(1045);
    let r = rows(&health, |_| {});
    assert!(
        r[0].why
            .starts_with("the monitor's login or queries are refused (MySQL error 1045)"),
        "{}",
        r[0].why
    );
}

#[test]
fn fenced_and_catching_up_servers_are_out_of_every_group() {
    let rt = runtime();
    let health = healthy();
    let (w, r) = (GroupId(0), GroupId(1));
    let mut members = Membership {
        members: vec![vec![], vec![ServerId(1)]].into(),
        split: vec![false, false].into(),
        writer: vec![None, None].into(),
        fenced: vec![ServerId(2)],
        catching_up: vec![(w, ServerId(0), set("101-103"))],
        lost: vec![],
    };
    let rows = rows_with(&rt, &members, &health, |_| {});
    assert_eq!(rows[0].state, ServerState::CatchingUp);
    assert_eq!(rows[0].state.name(), "catching_up");
    assert!(
        rows[0].why.starts_with(&format!(
            "writable, lacks 3 acknowledged transactions ({U}:101-103): writes wait for it"
        )),
        "{}",
        rows[0].why
    );
    assert_eq!(rows[0].role_in_force, None);
    assert!(!rows[0].writer);
    assert_eq!(rows[2].state, ServerState::Fenced);
    assert_eq!(
        rows[2].why,
        "writable but not the writer of w: fenced, it gets no statement"
    );
    // With no writer anywhere, distances are not known.
    assert_eq!(rows[1].gtid_distance, None);
    assert_eq!(rows[1].role_in_force.as_deref(), Some("r"));
    // A promoted replica serves the writer group.
    members.writer[w] = Some(ServerId(1));
    members.members[w] = vec![ServerId(1)];
    members.members[r] = vec![];
    members.catching_up.clear();
    let rows = rows_with(&rt, &members, &health, |_| {});
    assert_eq!(rows[1].role_in_force.as_deref(), Some("w"));
    assert!(rows[1].writer);
    assert_eq!(rows[1].gtid_distance, Some(0));
    assert_eq!(rows[0].gtid_distance, Some(0), "a holds all b has");
    assert_eq!(rows[0].role_in_force, None);
    assert_eq!(rows[0].why, "in no hostgroup");
}

#[test]
fn missing_acknowledged_gtids_are_listed_per_server() {
    let r = rows(&healthy(), |inp| {
        inp.acked.insert("w".into(), set("1-95"));
    });
    assert_eq!(r[0].missing_acknowledged, "");
    assert_eq!(r[1].missing_acknowledged, format!("{U}:91-95"));
    assert!(
        r[1].why.ends_with("lacks 5 acknowledged transactions"),
        "{}",
        r[1].why
    );
    assert_eq!(r[2].missing_acknowledged, format!("{U}:1-95"));
}

#[test]
fn rows_serialize_with_state_names() {
    let r = rows(&healthy(), |_| {});
    let json = serde_json::to_value(&r[1]).unwrap();
    assert_eq!(json["state"], "online");
    assert_eq!(json["gtid_distance"], 10);
    assert_eq!(json["catchup_ms"], serde_json::Value::Null);
    assert_eq!(json["role_in_force"], "r");
}
