use super::*;

fn ok(read_only: bool, lag: Lag) -> Observation {
    Observation::Ok {
        read_only: Some(read_only),
        lag,
        executed: None,
    }
}

/// A check the server did not answer (connect refused).
fn fail(why: &str) -> Observation {
    failed(Some(2003), why)
}

fn failed(code: Option<u16>, why: &str) -> Observation {
    Observation::Failed(CheckError {
        code,
        message: why.to_string(),
        refused: false,
        started: 0,
    })
}

/// A check the server answered by refusing the monitor with `code`.
fn refused(code: u16) -> Observation {
    failed(Some(code), &format!("backend refused: {code}"))
}

/// Folds `obs` from a never-checked server, returning every state.
fn run(
    obs: &[Observation],
    max_lag: Option<Duration>,
    shun_after_errors: u32,
) -> Vec<ServerHealth> {
    let mut h = ServerHealth::default();
    obs.iter()
        .enumerate()
        .map(|(t, o)| {
            let shun = ShunRule {
                errors: shun_after_errors,
                after: Duration::ZERO,
            };
            h = observe(&h, o, max_lag, shun, t as u64);
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

#[test]
fn first_good_check_brings_an_unknown_server_up() {
    let h = run(&[ok(true, Lag::Seconds(0))], secs(5), 3);
    assert_eq!(h[0].status, Status::Up);
    assert_eq!(h[0].read_only, Some(true));
    assert_eq!(h[0].lag, Lag::Seconds(0));
    assert_eq!((h[0].checks, h[0].failures), (1, 0));
    assert!(h[0].is_usable());
    assert!(ServerHealth::default().is_usable());
}

#[test]
fn failures_keep_the_last_known_status_until_the_threshold() {
    let h = run(&[fail("a"), fail("b"), fail("c")], None, 3);
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
        3,
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
        2,
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
        let h = run(&[fail("a")], None, n);
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
        3,
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
        3,
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
        3,
    );
    assert_eq!(h[0].status, SHUN_BROKEN);
    assert_eq!(h[1].status, Status::Up);
    let h = run(&[ok(true, Lag::Broken)], None, 3);
    assert_eq!(h[0].status, Status::Up);
    assert_eq!(h[0].lag, Lag::Broken);
}

#[test]
fn a_replica_that_stopped_replicating_or_unchecked_lag_stays_up() {
    for lag in [Lag::NotReplica, Lag::Unknown] {
        let h = run(&[ok(false, lag)], secs(1), 3);
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
        2,
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
    let h = run(&obs, secs(5), 3);
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
    let h = run(&obs, None, 2);
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
    let h = run(&obs, secs(5), 2);
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
                executed: None,
            },
        ],
        None,
        3,
    );
    let ro: Vec<_> = h.iter().map(|h| h.read_only).collect();
    assert_eq!(ro, [Some(true), Some(false), None]);
}

// ---- writable since when, and refused connections ----

#[test]
fn a_promotion_is_stamped_a_server_found_writable_is_not() {
    // Read-only, then writable at check 1: a promotion, at the
    // monitor's clock of that check.
    let h = run(
        &[ok(true, Lag::NotReplica), ok(false, Lag::NotReplica)],
        None,
        3,
    );
    assert_eq!(h[0].writable, Writable::No);
    assert_eq!(h[1].writable, Writable::Turned(1));
    // Writable from its first check: found so, not promoted.
    let h = run(
        &[ok(false, Lag::NotReplica), ok(false, Lag::NotReplica)],
        None,
        3,
    );
    assert_eq!(h[0].writable, Writable::Found);
    assert_eq!(h[1].writable, Writable::Found, "kept, not re-stamped");
    assert!(Writable::Turned(0) > Writable::Found);
}

#[test]
fn a_writable_server_that_crashes_and_comes_back_writable_keeps_its_stamp() {
    let h = run(
        &[
            ok(true, Lag::NotReplica),
            ok(false, Lag::NotReplica),
            fail("crash"),
            fail("down"),
            fail("down"),
            ok(false, Lag::NotReplica),
        ],
        None,
        2,
    );
    assert_eq!(h[3].status, SHUN_UNREACHABLE);
    assert_eq!(h[3].writable, Writable::Turned(1), "kept while down");
    assert_eq!(h[5].writable, Writable::Turned(1), "not a new promotion");
    // Demoted, then promoted again: a new stamp.
    let h = run(
        &[
            ok(false, Lag::NotReplica),
            ok(true, Lag::NotReplica),
            ok(false, Lag::NotReplica),
        ],
        None,
        2,
    );
    assert_eq!(h[1].writable, Writable::No);
    assert_eq!(h[2].writable, Writable::Turned(2));
}

#[test]
fn a_refused_connection_shuns_at_once() {
    let refused_connect = Observation::Failed(CheckError {
        code: Some(2003),
        message: "connection refused".into(),
        refused: true,
        started: 0,
    });
    let h = run(&[ok(false, Lag::NotReplica), refused_connect], None, 3);
    assert_eq!(h[1].status, SHUN_UNREACHABLE);
    assert_eq!(h[1].consecutive_errors, 1);
    // A timeout is not a refusal: it waits for shun_after_errors.
    let h = run(&[ok(false, Lag::NotReplica), fail("timed out")], None, 3);
    assert_eq!(h[1].status, Status::Up);
}

#[test]
fn a_writer_silent_for_shun_after_is_shunned_whatever_the_count() {
    let ms = |n: u64| n * 1_000_000;
    let timed_out = |started: u64| {
        Observation::Failed(CheckError {
            code: Some(2013),
            message: "timed out".into(),
            refused: false,
            started,
        })
    };
    let shun = ShunRule {
        errors: 10,
        after: Duration::from_secs(1),
    };
    let up = observe(
        &ServerHealth::default(),
        &ok(false, Lag::NotReplica),
        None,
        shun,
        ms(0),
    );
    // A check started at 100 ms failed at 900 ms: silent for 0.8 s.
    let h1 = observe(&up, &timed_out(ms(100)), None, shun, ms(900));
    assert_eq!(h1.status, Status::Up, "suspect, not shunned yet");
    assert_eq!(h1.down_since, Some(ms(100)));
    // The next, started at 1 s, failed at 1.1 s: silent for 1 s.
    let h2 = observe(&h1, &timed_out(ms(1000)), None, shun, ms(1100));
    assert_eq!(h2.status, SHUN_UNREACHABLE);
    assert_eq!(h2.consecutive_errors, 2);
    // One good check forgets it.
    let h3 = observe(&h2, &ok(false, Lag::NotReplica), None, shun, ms(1200));
    assert_eq!((h3.status, h3.down_since), (Status::Up, None));
    // A read-only server: by count only (its checks may block in SHOW
    // REPLICA STATUS while replication is reconfigured).
    let replica = observe(
        &ServerHealth::default(),
        &ok(true, Lag::Seconds(0)),
        None,
        shun,
        ms(0),
    );
    let r1 = observe(&replica, &timed_out(ms(100)), None, shun, ms(900));
    let r2 = observe(&r1, &timed_out(ms(1000)), None, shun, ms(5000));
    assert_eq!(r2.status, Status::Up);
    // Zero: by count only.
    let off = ShunRule {
        errors: 10,
        after: Duration::ZERO,
    };
    let h = observe(&h1, &timed_out(ms(1000)), None, off, ms(60_000));
    assert_eq!(h.status, Status::Up);
}

#[test]
fn the_executed_set_follows_each_good_check_and_stays_while_down() {
    let set = |s: &str| GtidSet::parse(s).unwrap();
    let with = |e: &str| Observation::Ok {
        read_only: Some(false),
        lag: Lag::NotReplica,
        executed: Some(set(e)),
    };
    let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5";
    let b = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-9";
    let h = run(&[with(a), fail("x"), with(b)], None, 3);
    assert_eq!(h[0].executed, set(a));
    assert_eq!(h[1].executed, set(a));
    assert_eq!(h[2].executed, set(b));
}

// ---- a server that refuses the monitor ----

#[test]
fn each_failure_is_down_or_misconfigured_by_its_code() {
    let kind = |code| {
        CheckError {
            code,
            message: String::new(),
            refused: false,
            started: 0,
        }
        .kind()
    };
    for code in MISCONFIGURED_CODES {
        assert_eq!(kind(Some(code)), FailureKind::Misconfigured, "{code}");
    }
    // Not answering, not serving, nonsense, and codes nobody listed.
    for code in [
        None,
        Some(2003),
        Some(2013),
        Some(2026),
        Some(1040),
        Some(1053),
        Some(1129),
        Some(1105),
        Some(3169),
        Some(0),
    ] {
        assert_eq!(kind(code), FailureKind::Down, "{code:?}");
    }
}

#[test]
fn a_refusing_server_is_never_shunned_and_stays_unknown() {
    for code in MISCONFIGURED_CODES {
        let h = run(&vec![refused(code); 10], secs(5), 2);
        for h in &h {
            assert_eq!(h.status, Status::Unknown, "{code}");
            assert!(h.is_usable());
            assert_eq!(h.misconfigured, Some(code));
            assert_eq!(h.consecutive_errors, 0);
        }
        let last = h.last().unwrap();
        assert_eq!((last.checks, last.failures), (10, 10));
        assert_eq!(
            last.last_error.as_deref(),
            Some(&*format!("backend refused: {code}"))
        );
    }
}

#[test]
fn down_codes_shun_at_the_threshold() {
    for code in [
        None,
        Some(2003),
        Some(2013),
        Some(2026),
        Some(1040),
        Some(1053),
    ] {
        let h = run(&[failed(code, "x"), failed(code, "y")], None, 2);
        assert_eq!(h[0].status, Status::Unknown, "{code:?}");
        assert_eq!(h[1].status, SHUN_UNREACHABLE, "{code:?}");
        assert_eq!(h[1].misconfigured, None);
    }
}

#[test]
fn a_refusal_forgets_the_lag_and_status_but_keeps_the_role() {
    let lagging = Status::Shunned {
        reason: ShunReason::LagOver { lag_s: 9, max_s: 1 },
    };
    for (before, status) in [
        (vec![ok(false, Lag::NotReplica)], Status::Up),
        (vec![ok(true, Lag::Seconds(9))], lagging),
        (vec![ok(true, Lag::Broken)], SHUN_BROKEN),
        (vec![fail("a"), fail("b")], SHUN_UNREACHABLE),
    ] {
        let mut obs = before.clone();
        obs.push(refused(1045));
        let h = run(&obs, secs(1), 2);
        assert_eq!(h[before.len() - 1].status, status);
        let last = h.last().unwrap();
        assert_eq!(last.status, Status::Unknown, "after {status:?}");
        assert_eq!(last.read_only, h[before.len() - 1].read_only);
        assert_eq!(last.writable, h[before.len() - 1].writable);
        assert_eq!(last.lag, Lag::Unknown);
        assert_eq!(last.consecutive_errors, 0);
        assert_eq!(last.misconfigured, Some(1045));
    }
}

#[test]
fn a_check_that_succeeds_again_ends_the_misconfiguration() {
    let h = run(
        &[
            refused(1045),
            refused(1227),
            ok(true, Lag::Seconds(9)),
            ok(true, Lag::Seconds(0)),
        ],
        secs(5),
        2,
    );
    assert_eq!(h[1].misconfigured, Some(1227), "the latest refusal");
    assert_eq!(h[2].misconfigured, None);
    assert_eq!(
        h[2].status,
        Status::Shunned {
            reason: ShunReason::LagOver { lag_s: 9, max_s: 5 }
        },
        "back to normal checking"
    );
    assert_eq!(h[3].status, Status::Up);
    assert_eq!(h[3].read_only, Some(true));
}

#[test]
fn a_refusing_server_that_goes_down_is_shunned_after_the_threshold() {
    let h = run(
        &[
            refused(1045),
            refused(1045),
            fail("a"),
            fail("b"),
            refused(1045),
        ],
        None,
        2,
    );
    assert_eq!(
        h[2].status,
        Status::Unknown,
        "downs count from the last answer"
    );
    assert_eq!(h[3].status, SHUN_UNREACHABLE);
    assert_eq!(h[3].misconfigured, Some(1045), "nothing was fixed");
    // It answers again (still refusing): not down any more.
    assert_eq!(h[4].status, Status::Unknown);
    assert_eq!(h[4].consecutive_errors, 0);
}

#[test]
fn refusals_between_downs_reset_the_count() {
    let mut obs = Vec::new();
    for _ in 0..5 {
        obs.extend([fail("a"), refused(1045)]);
    }
    let h = run(&obs, None, 2);
    assert!(h.iter().all(ServerHealth::is_usable), "{h:?}");
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
