use super::*;
use crate::health::ShunReason;

const SHUN_UNREACHABLE: Status = Status::Shunned {
    reason: ShunReason::Unreachable,
};

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

// ---- parsing check results ----

fn result(columns: &[&str], rows: &[&[Option<&str>]]) -> QueryResult {
    QueryResult {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: rows
            .iter()
            .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
            .collect(),
        types: vec![253; columns.len()],
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
            compression: None,
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
    // Nothing listens there: the first refused check shuns it.
    assert!(h.checks >= 1 && h.failures == h.checks, "{h:?}");
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

/// A loopback port whose listener answers every connection with ERR `code`
/// in place of the greeting, as MySQL does for 1040, 1129 and 1130.
async fn refusing_port(code: u16) -> u16 {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut payload = bytes::BytesMut::new();
    causeway_wire::ErrPacket::new(code, *b"HY000", "refused")
        .encode(CapabilityFlags::PROTOCOL_41, &mut payload);
    let mut frame = bytes::BytesMut::new();
    causeway_wire::packet::encode_packet(0, &payload, &mut frame);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(&frame).await;
        }
    });
    port
}

#[tokio::test]
async fn a_server_refusing_the_monitor_is_not_shunned_a_full_one_is() {
    let m = Monitor::spawn(
        vec![
            target("refusing", refusing_port(1130).await),
            target("full", refusing_port(1040).await),
        ],
        fast(),
        Vec::new(),
    );
    let mut rx = m.subscribe();
    wait_until(&mut rx, "checked both a few times", |map| {
        map["full"].status == SHUN_UNREACHABLE && map["refusing"].checks >= 5
    })
    .await;
    let snap = m.snapshot();
    let refusing = &snap["refusing"];
    assert_eq!(refusing.status, Status::Unknown, "{refusing:?}");
    assert_eq!(refusing.misconfigured, Some(1130));
    assert_eq!(refusing.consecutive_errors, 0);
    let error = refusing.last_error.as_deref().unwrap();
    assert!(error.contains("1130"), "{error}");
    let full = &snap["full"];
    assert_eq!(full.misconfigured, None, "{full:?}");
    assert!(full.last_error.as_deref().unwrap().contains("1040"));
}

fn task_ids(m: &Monitor) -> Vec<u64> {
    let mut ids: Vec<u64> = m
        .shared
        .lock()
        .by_name
        .values()
        .map(|w| w.task_id)
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn reconfigure_restarts_the_checks_with_the_new_settings_keeping_health() {
    let off = MonitorConfig {
        enabled: false,
        ..fast()
    };
    let m = Monitor::spawn(
        vec![
            target("down", closed_port()),
            target("refusing", refusing_port(1045).await),
        ],
        off.clone(),
        Vec::new(),
    );
    assert_eq!(tasks_running(&m), 0);

    // Turned on: both checked.
    m.reconfigure(fast(), b"pw".to_vec());
    assert_eq!(tasks_running(&m), 2);
    assert_eq!(*m.config(), fast());
    let mut rx = m.subscribe();
    wait_until(&mut rx, "checked with the new settings", |map| {
        map["down"].status == SHUN_UNREACHABLE && map["refusing"].misconfigured == Some(1045)
    })
    .await;

    // The same settings again: nothing restarts.
    let ids = task_ids(&m);
    m.reconfigure(fast(), b"pw".to_vec());
    assert_eq!(task_ids(&m), ids);

    // A new password: new tasks, the health kept meanwhile.
    m.reconfigure(fast(), b"other".to_vec());
    assert_eq!(tasks_running(&m), 2);
    assert!(task_ids(&m).iter().all(|id| !ids.contains(id)));
    let snap = m.snapshot();
    assert_eq!(snap["down"].status, SHUN_UNREACHABLE);
    assert_eq!(snap["refusing"].misconfigured, Some(1045));
    let checks = snap["refusing"].checks;
    wait_until(&mut rx, "checked by the new task", |map| {
        map["refusing"].checks > checks
    })
    .await;

    // Turned off: every server unknown, as if never checked.
    m.reconfigure(off, Vec::new());
    assert_eq!(tasks_running(&m), 0);
    assert!(m.snapshot().values().all(|h| *h == ServerHealth::default()));
}
