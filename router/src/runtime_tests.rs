use std::path::Path;

use super::*;
use crate::health::{Lag, ShunReason, Writable};
use crate::ids::GroupId;
use crate::route::Membership;

const SPLIT: &str = r#"
[[hostgroups]]
name = "w"
[[hostgroups]]
name = "r"
role = "reader"
writer = "w"
[[hostgroups]]
name = "other"
[[servers]]
name = "a"
port = 1
hostgroup = "w"
[[servers]]
name = "b"
port = 2
hostgroup = "r"
[[servers]]
name = "c"
port = 3
hostgroup = "r"
[[servers]]
name = "x"
port = 4
hostgroup = "other"
[[users]]
name = "app"
password = "pw"
[[users]]
name = "bi"
password = "pw"
default_hostgroup = "r"
backend_user = "bi_ro"
[backend.tls]
mode = "disabled"
[monitor]
enabled = false
"#;

fn runtime(text: &str) -> Runtime {
    let cfg = Config::from_toml(text, Path::new("r.toml")).unwrap();
    Runtime::build(cfg).unwrap()
}

fn health(states: &[(&str, Option<bool>, bool)]) -> HealthMap {
    states
        .iter()
        .map(|&(name, read_only, shunned)| {
            let status = if shunned {
                Status::Shunned {
                    reason: ShunReason::Unreachable,
                }
            } else {
                Status::Up
            };
            let writable = if read_only == Some(false) {
                Writable::Found
            } else {
                Writable::No
            };
            let h = ServerHealth {
                status,
                read_only,
                lag: Lag::Unknown,
                writable,
                ..ServerHealth::default()
            };
            (name.to_string(), h)
        })
        .collect()
}

fn names(rt: &Runtime, m: &Membership, group: &str) -> Vec<String> {
    let g = rt.group_named(group).unwrap();
    m.members[g]
        .iter()
        .map(|&s| rt.servers[s].name.clone())
        .collect()
}

#[test]
fn users_get_their_groups_and_backend_credentials() {
    let rt = runtime(SPLIT);
    let app = &rt.users["app"];
    assert_eq!(rt.groups[app.writer].name, "w");
    assert_eq!(app.default_group, app.writer);
    assert_eq!(&*app.backend_user, "app");
    assert_eq!(app.backend_password, b"pw");
    let bi = &rt.users["bi"];
    assert_eq!(rt.groups[bi.default_group].name, "r");
    assert_eq!(
        rt.groups[bi.writer].name, "w",
        "a reader default keeps its writer"
    );
    assert_eq!(&*bi.backend_user, "bi_ro");
    assert_eq!(rt.groups[GroupId(0)].reads_to, Some(GroupId(1)));
    assert_eq!(rt.groups[GroupId(2)].reads_to, None);
}

#[test]
fn unknown_health_keeps_the_configured_groups() {
    let rt = runtime(SPLIT);
    let m = rt.members(&HealthMap::new(), &Facts::default());
    assert_eq!(names(&rt, &m, "w"), ["a"]);
    assert_eq!(names(&rt, &m, "r"), ["b", "c"]);
    assert_eq!(names(&rt, &m, "other"), ["x"]);
    assert!(m.split.iter().all(|s| !s));
}

#[test]
fn read_only_moves_servers_between_a_writer_and_its_reader_group() {
    let rt = runtime(SPLIT);
    // An operator promoted b and demoted a.
    let h = health(&[
        ("a", Some(true), false),
        ("b", Some(false), false),
        ("c", Some(true), false),
    ]);
    let m = rt.members(&h, &Facts::default());
    assert_eq!(names(&rt, &m, "w"), ["b"]);
    assert_eq!(names(&rt, &m, "r"), ["a", "c"]);
    assert!(!m.split[GroupId(0)]);
}

#[test]
fn shunned_servers_and_weight_zero_serve_nothing() {
    let text = SPLIT.replace(
        "port = 3\nhostgroup = \"r\"",
        "port = 3\nhostgroup = \"r\"\nweight = 0",
    );
    let rt = runtime(&text);
    let h = health(&[("a", Some(false), false), ("b", Some(true), true)]);
    let m = rt.members(&h, &Facts::default());
    assert_eq!(names(&rt, &m, "w"), ["a"]);
    assert!(names(&rt, &m, "r").is_empty());
}

#[test]
fn two_writable_servers_split_the_writer_group_unless_allowed() {
    let rt = runtime(SPLIT);
    let h = health(&[("a", Some(false), false), ("b", Some(false), false)]);
    let m = rt.members(&h, &Facts::default());
    assert!(names(&rt, &m, "w").is_empty());
    assert!(m.split[GroupId(0)]);
    assert_eq!(m.writer[GroupId(0)], None);
    // The writer in force stays; the other is fenced.
    let mut facts = Facts::default();
    facts.writers.insert("w".into(), "b".into());
    let m = rt.members(&h, &facts);
    assert_eq!(names(&rt, &m, "w"), ["b"]);
    assert!(!m.split[GroupId(0)]);
    assert_eq!(m.fenced, [rt.server_named("a").unwrap()]);
    assert_eq!(names(&rt, &m, "r"), ["c"], "a fenced server serves nothing");
    let allow = format!("{SPLIT}\n[routing]\nsplit_brain = \"allow\"\n");
    let rt = runtime(&allow);
    let m = rt.members(&h, &Facts::default());
    assert!(!m.split[GroupId(0)]);
    assert_eq!(
        names(&rt, &m, "w"),
        ["a"],
        "the first by configuration order"
    );
}

#[test]
fn a_writable_replica_that_still_replicates_does_not_displace_the_writer() {
    let rt = runtime(SPLIT);
    let mut h = health(&[("a", Some(false), false), ("b", Some(false), false)]);
    let b = h.get_mut("b").unwrap();
    b.writable = Writable::Turned(9);
    b.lag = Lag::Seconds(0);
    let mut facts = Facts::default();
    facts.writers.insert("w".into(), "a".into());
    let m = rt.members(&h, &facts);
    assert_eq!(names(&rt, &m, "w"), ["a"]);
    assert_eq!(m.fenced, [rt.server_named("b").unwrap()]);
    // Once it stopped replicating, it was promoted.
    h.get_mut("b").unwrap().lag = Lag::NotReplica;
    let m = rt.members(&h, &facts);
    assert_eq!(names(&rt, &m, "w"), ["b"]);
    assert_eq!(m.fenced, [rt.server_named("a").unwrap()]);
}

#[test]
fn a_fenced_server_made_read_only_stays_out_until_it_replicates() {
    let rt = runtime(SPLIT);
    let mut h = health(&[
        ("a", Some(true), false),
        ("b", Some(false), false),
        ("c", Some(true), false),
    ]);
    h.get_mut("a").unwrap().lag = Lag::NotReplica;
    h.get_mut("c").unwrap().lag = Lag::Seconds(0);
    let mut facts = Facts::default();
    facts.writers.insert("w".into(), "b".into());
    facts.fenced.insert("a".into());
    let m = rt.members(&h, &facts);
    assert_eq!(names(&rt, &m, "r"), ["c"]);
    assert_eq!(m.fenced, [rt.server_named("a").unwrap()]);
    // Replicating again: a reader like the others.
    h.get_mut("a").unwrap().lag = Lag::Seconds(3);
    let m = rt.members(&h, &facts);
    assert_eq!(names(&rt, &m, "r"), ["a", "c"]);
    assert!(m.fenced.is_empty());
}

#[test]
fn a_promoted_server_takes_writes_only_with_every_acknowledged_gtid() {
    let rt = runtime(SPLIT);
    let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    let set = |r: &str| GtidSet::parse(&format!("{u}:{r}")).unwrap();
    // a died; b was promoted with 1-8 applied; the router acknowledged 1-10.
    let mut h = health(&[
        ("a", Some(false), true),
        ("b", Some(false), false),
        ("c", Some(true), false),
    ]);
    let b = h.get_mut("b").unwrap();
    b.writable = Writable::Turned(5);
    b.executed = set("1-8");
    let mut facts = Facts::default();
    facts.acked.insert("w".into(), set("1-10"));
    facts.writers.insert("w".into(), "a".into());
    let m = rt.members(&h, &facts);
    assert!(names(&rt, &m, "w").is_empty(), "writes wait");
    let sb = rt.server_named("b").unwrap();
    assert_eq!(m.catching_up, [(GroupId(0), sb, set("9-10"))]);
    // Its reader's view shows it applied the rest.
    facts.seen.insert("b".into(), set("1-10"));
    let m = rt.members(&h, &facts);
    assert_eq!(names(&rt, &m, "w"), ["b"]);
    assert!(m.catching_up.is_empty() && m.lost.is_empty());
    // Or it never does, and the policy takes it after the window.
    facts.seen.clear();
    facts.accept_missing.insert("w".into());
    let m = rt.members(&h, &facts);
    assert_eq!(names(&rt, &m, "w"), ["b"]);
    assert_eq!(m.lost, [(GroupId(0), set("9-10"))]);
}

#[test]
fn writer_is_also_reader_puts_the_writer_in_the_reader_group() {
    let text = format!("{SPLIT}\n[routing]\nwriter_is_also_reader = true\n");
    let rt = runtime(&text);
    let h = health(&[("a", Some(false), false), ("b", Some(true), false)]);
    let m = rt.members(&h, &Facts::default());
    assert_eq!(names(&rt, &m, "w"), ["a"]);
    assert_eq!(names(&rt, &m, "r"), ["a", "b", "c"]);
}

#[test]
fn a_broken_config_is_refused_whole_with_every_problem() {
    let text = SPLIT
        .replace("hostgroup = \"other\"", "hostgroup = \"nowhere\"")
        .replace("writer = \"w\"", "writer = \"r\"")
        .replace("default_hostgroup = \"r\"", "default_hostgroup = \"zz\"");
    let cfg = Config::from_toml(&text, Path::new("r.toml")).unwrap();
    let err = Runtime::build(cfg).unwrap_err().to_string();
    for needle in ["nowhere", "writer \"r\" is not a writer hostgroup", "zz"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn gtids_are_tracked_for_a_consistent_pair_without_a_failover_window() {
    // user and router reads need the acknowledged sets, which only GTIDs
    // returned in OK packets feed.
    let window0 = "[hostgroups.failover]\nwindow = \"0s\"\n";
    let no_pair = SPLIT.replacen("name = \"w\"\n", &format!("name = \"w\"\n{window0}"), 1);
    let rt = runtime(&no_pair);
    assert!(
        !rt.servers[ServerId::new(0)].track_gtids,
        "nothing needs them"
    );
    let pair = format!(
        "{no_pair}[[consistent_pairs]]\nreader = \"r\"\nwriter = \"w\"\nscope = \"router\"\n"
    );
    let rt = runtime(&pair);
    for s in ["a", "b", "c"] {
        let id = rt.server_named(s).unwrap();
        assert!(rt.servers[id].track_gtids, "{s}");
    }
}
