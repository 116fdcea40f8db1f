use super::*;
use crate::ids::ServerId;

const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

fn set(t: &str) -> GtidSet {
    GtidSet::parse(t).unwrap()
}

fn read<'a>(scope: Scope, needed: &'a GtidSet) -> Read<'a> {
    Read {
        scope,
        needed,
        pinned: None,
        waited: Duration::ZERO,
        max_wait: Duration::from_millis(5),
        catch_up: None,
        writer_cost: None,
        tiebreak: 0,
    }
}

fn cand(id: usize, view: Option<&GtidSet>) -> Candidate<'_> {
    Candidate {
        id: ServerId::new(id),
        healthy: true,
        weight: 1,
        load: 0,
        view,
    }
}

#[test]
fn a_replica_that_has_the_write_is_chosen() {
    let needed = set(&format!("{U}:1-10"));
    let behind = set(&format!("{U}:1-9"));
    let ahead = set(&format!("{U}:1-12"));
    let r = decide(
        &read(Scope::Session, &needed),
        &[cand(0, Some(&behind)), cand(1, Some(&ahead))],
    );
    assert_eq!(r, Route::Replica(ServerId(1)));
}

#[test]
fn nobody_caught_up_waits_then_falls_back() {
    let needed = set(&format!("{U}:1-10"));
    let behind = set(&format!("{U}:1-9"));
    let c = [cand(0, Some(&behind)), cand(1, Some(&behind))];
    let mut r = read(Scope::Session, &needed);
    assert_eq!(decide(&r, &c), Route::Wait(Duration::from_millis(5)));
    r.waited = Duration::from_millis(3);
    assert_eq!(decide(&r, &c), Route::Wait(Duration::from_millis(2)));
    r.waited = Duration::from_millis(5);
    assert_eq!(decide(&r, &c), Route::Primary(Fallback::NotCaughtUp));
    r.max_wait = Duration::ZERO;
    r.waited = Duration::ZERO;
    assert_eq!(decide(&r, &c), Route::Primary(Fallback::NotCaughtUp));
}

#[test]
fn waiting_only_pays_when_a_replica_beats_the_writer() {
    let needed = set(&format!("{U}:1-10"));
    let behind = set(&format!("{U}:1-9"));
    let c = [cand(0, Some(&behind)), cand(1, Some(&behind))];
    let mut r = read(Scope::Session, &needed);
    // A replica expected in 0.2 ms, the writer answering in 0.5 ms: wait.
    r.catch_up = Some(Duration::from_micros(200));
    r.writer_cost = Some(Duration::from_micros(500));
    assert_eq!(decide(&r, &c), Route::Wait(Duration::from_millis(5)));
    // Expected in 3 ms: the writer is faster, go now.
    r.catch_up = Some(Duration::from_millis(3));
    assert_eq!(decide(&r, &c), Route::Primary(Fallback::SlowCatchUp));
    // A busy writer (4 ms a read): waiting pays again.
    r.writer_cost = Some(Duration::from_millis(4));
    assert_eq!(decide(&r, &c), Route::Wait(Duration::from_millis(5)));
    // Either estimate unknown: wait as configured.
    r.writer_cost = None;
    r.catch_up = Some(Duration::from_secs(1));
    assert_eq!(decide(&r, &c), Route::Wait(Duration::from_millis(5)));
    r.writer_cost = Some(Duration::from_micros(1));
    r.catch_up = None;
    assert_eq!(decide(&r, &c), Route::Wait(Duration::from_millis(5)));
    // The estimates never keep a read from a replica that qualifies, nor
    // stretch the wait past max_wait.
    r.catch_up = Some(Duration::from_secs(1));
    let ahead = set(&format!("{U}:1-10"));
    let c2 = [cand(0, Some(&behind)), cand(1, Some(&ahead))];
    assert_eq!(decide(&r, &c2), Route::Replica(ServerId(1)));
    r.catch_up = Some(Duration::ZERO);
    r.waited = Duration::from_millis(5);
    assert_eq!(decide(&r, &c), Route::Primary(Fallback::NotCaughtUp));
}

#[test]
fn ranges_and_holes_need_every_gtid() {
    // OWN_GTID may report a range; a view with a hole in it does not qualify.
    let needed = set(&format!("{U}:10-11"));
    let holed = set(&format!("{U}:1-10:12-20"));
    let full = set(&format!("{U}:1-20"));
    assert_eq!(
        decide(&read(Scope::Session, &needed), &[cand(0, Some(&holed))]),
        Route::Wait(Duration::from_millis(5))
    );
    assert_eq!(
        decide(
            &read(Scope::Session, &needed),
            &[cand(0, Some(&holed)), cand(1, Some(&full))]
        ),
        Route::Replica(ServerId(1))
    );
}

#[test]
fn tagged_gtids_are_distinct_sources() {
    let needed = set(&format!("{U}:batch:5"));
    let untagged_only = set(&format!("{U}:1-100"));
    let with_tag = set(&format!("{U}:1-100:batch:1-5"));
    assert!(matches!(
        decide(
            &read(Scope::Session, &needed),
            &[cand(0, Some(&untagged_only))]
        ),
        Route::Wait(_)
    ));
    assert_eq!(
        decide(&read(Scope::Session, &needed), &[cand(0, Some(&with_tag))]),
        Route::Replica(ServerId(0))
    );
}

#[test]
fn a_replica_without_a_view_never_qualifies_for_causal_reads() {
    // Reader down since start: no view; a stale view still counts (it is a
    // lower bound), but no view at all cannot prove anything.
    let needed = set(&format!("{U}:1"));
    let r = decide(&read(Scope::Session, &needed), &[cand(0, None)]);
    assert_eq!(r, Route::Wait(Duration::from_millis(5)));
    // An eventual read does not care.
    let r = decide(&read(Scope::Eventual, &needed), &[cand(0, None)]);
    assert_eq!(r, Route::Replica(ServerId(0)));
}

#[test]
fn after_a_reset_the_smaller_view_is_what_counts() {
    let needed = set(&format!("{U}:1-10"));
    let reset_view = GtidSet::default();
    assert!(matches!(
        decide(
            &read(Scope::Session, &needed),
            &[cand(0, Some(&reset_view))]
        ),
        Route::Wait(_)
    ));
}

#[test]
fn no_healthy_replica_goes_straight_to_the_primary() {
    let needed = set(&format!("{U}:1"));
    let full = set(&format!("{U}:1-5"));
    let mut c = cand(0, Some(&full));
    c.healthy = false;
    assert_eq!(
        decide(&read(Scope::Session, &needed), &[c]),
        Route::Primary(Fallback::NoHealthyReplica)
    );
    assert_eq!(
        decide(&read(Scope::Session, &needed), &[]),
        Route::Primary(Fallback::NoHealthyReplica)
    );
}

#[test]
fn a_transaction_stays_on_its_server() {
    let needed = set(&format!("{U}:1-10"));
    let full = set(&format!("{U}:1-20"));
    let mut r = read(Scope::Session, &needed);
    r.pinned = Some(ServerId(7));
    assert_eq!(
        decide(&r, &[cand(0, Some(&full))]),
        Route::Pinned(ServerId(7))
    );
}

#[test]
fn a_session_that_wrote_nothing_reads_anywhere_healthy() {
    let needed = GtidSet::default();
    assert_eq!(
        decide(&read(Scope::Session, &needed), &[cand(3, None)]),
        Route::Replica(ServerId(3))
    );
}

#[test]
fn load_and_weight_choose_among_qualified() {
    let needed = set(&format!("{U}:1"));
    let v = set(&format!("{U}:1-5"));
    let mut a = cand(0, Some(&v));
    let mut b = cand(1, Some(&v));
    a.load = 4;
    a.weight = 2; // 2 per weight unit
    b.load = 3;
    b.weight = 1; // 3 per weight unit
    assert_eq!(
        decide(&read(Scope::Session, &needed), &[a, b]),
        Route::Replica(ServerId(0))
    );
    // Equal: the tiebreak rotates between them.
    b.load = 2;
    let mut r = read(Scope::Session, &needed);
    let mut seen = std::collections::HashSet::new();
    for t in 0..4 {
        r.tiebreak = t;
        if let Route::Replica(id) = decide(&r, &[a, b]) {
            seen.insert(id);
        }
    }
    assert_eq!(seen.len(), 2, "ties must rotate");
    // Weight 0 serves only when it is the only one that qualifies.
    let mut z = cand(2, Some(&v));
    z.weight = 0;
    let behind = GtidSet::default();
    let c = cand(3, Some(&behind));
    assert_eq!(
        decide(&read(Scope::Session, &needed), &[z, c]),
        Route::Replica(ServerId(2))
    );
    assert_eq!(
        decide(&read(Scope::Session, &needed), &[z, cand(4, Some(&v))]),
        Route::Replica(ServerId(4))
    );
}
