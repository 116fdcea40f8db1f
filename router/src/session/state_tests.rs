use super::*;
use crate::session::track::TxnState;
use crate::sqlscan::scan;

const W: ServerId = ServerId(0);
const R: ServerId = ServerId(1);

fn ok(status: StatusFlags) -> Response {
    Response {
        status: Some(status),
        ..Response::default()
    }
}

fn tracked(t: Tracked) -> Response {
    Response {
        status: Some(StatusFlags::AUTOCOMMIT),
        tracked: t,
        ..Response::default()
    }
}

fn run(s: &mut SessionState, server: ServerId, e: &Effects<'_>, r: &Response) -> After {
    let mut cs = ConnState::default();
    s.after(server, 1, &mut cs, e, r)
}

#[test]
fn a_transaction_opens_and_ends_on_its_server() {
    let mut s = SessionState::default();
    let e = Effects::default();
    run(
        &mut s,
        W,
        &e,
        &ok(StatusFlags::IN_TRANS | StatusFlags::AUTOCOMMIT),
    );
    assert_eq!(s.txn, Txn::Open(W));
    assert!(s.pinned(W));
    assert_eq!(s.exclusive(), Some(W));
    assert_eq!(s.reasons(W), [PinReason::Transaction]);
    // An ERR says nothing about the transaction.
    let err = Response {
        err: true,
        ..Response::default()
    };
    run(&mut s, W, &e, &err);
    assert_eq!(s.txn, Txn::Open(W));
    run(&mut s, W, &e, &ok(StatusFlags::AUTOCOMMIT));
    assert_eq!(s.txn, Txn::Idle);
    assert!(!s.pinned(W));
}

#[test]
fn tracked_variables_and_schema_become_wanted_and_the_connection_has_them() {
    let mut s = SessionState::default();
    let mut cs = ConnState::default();
    let r = tracked(Tracked {
        state_changed: true,
        vars: vec![
            ("sql_mode".into(), "ANSI".into()),
            ("time_zone".into(), "+01:00".into()),
        ],
        schema: Some("app".into()),
        ..Tracked::default()
    });
    s.after(W, 1, &mut cs, &Effects::default(), &r);
    assert_eq!(
        s.wanted.vars.get(b"sql_mode").map(|v| &v[..]),
        Some(&b"ANSI"[..])
    );
    assert_eq!(s.wanted.schema.as_deref(), Some(&b"app"[..]));
    assert_eq!(cs.vars, s.wanted.vars);
    assert_eq!(cs.schema, s.wanted.schema);
    assert!(s.pins.is_empty(), "explained changes pin nothing");
}

#[test]
fn unexplained_or_unreplayable_state_pins_until_reset() {
    let mut s = SessionState::default();
    let changed = tracked(Tracked {
        state_changed: true,
        ..Tracked::default()
    });
    // A statement the router understands and that explains nothing.
    run(&mut s, W, &Effects::default(), &changed);
    assert_eq!(s.reasons(W), [PinReason::UnknownState]);
    // CALL: even with variables reported, what else it did is unknown.
    let mut s = SessionState::default();
    let call = Effects {
        opaque: true,
        ..Effects::default()
    };
    let r = tracked(Tracked {
        state_changed: true,
        vars: vec![("sql_mode".into(), "".into())],
        ..Tracked::default()
    });
    run(&mut s, W, &call, &r);
    assert_eq!(s.reasons(W), [PinReason::UnknownState]);
    // A one-shot variable cannot go to another connection.
    let mut s = SessionState::default();
    let r = tracked(Tracked {
        state_changed: true,
        vars: vec![("insert_id".into(), "5".into())],
        ..Tracked::default()
    });
    run(&mut s, W, &Effects::default(), &r);
    assert!(s.wanted.vars.is_empty());
    assert_eq!(s.reasons(W), [PinReason::UnknownState]);
    s.reset();
    assert!(!s.pinned(W));
}

#[test]
fn an_err_after_part_of_several_statements_pins_what_they_did() {
    let err = |state_changed| Response {
        err: true,
        tracked: Tracked {
            state_changed,
            ..Tracked::default()
        },
        ..Response::default()
    };
    let t = vec!["t".to_string()];
    let single = Effects {
        creates_temp: &t,
        ..Effects::default()
    };
    // One statement that failed did nothing, whatever its text says.
    let mut s = SessionState::default();
    run(&mut s, W, &single, &err(false));
    assert!(!s.pinned(W));
    // A multi-statement whose earlier statements reported a change: the
    // text's effects cannot be trusted (which of them ran?).
    let multi = Effects {
        several: true,
        ..single
    };
    run(&mut s, W, &multi, &err(true));
    assert_eq!(s.reasons(W), [PinReason::UnknownState]);
    // ... one whose earlier statements changed nothing stays free.
    let mut s = SessionState::default();
    run(&mut s, W, &multi, &err(false));
    assert!(!s.pinned(W));
    // A failed CALL: its ERR hides what ran before.
    let call = Effects {
        several: true,
        opaque: true,
        ..Effects::default()
    };
    run(&mut s, W, &call, &err(false));
    assert_eq!(s.reasons(W), [PinReason::UnknownState]);
    // An unparsed single statement that failed did nothing.
    let mut s = SessionState::default();
    let odd = Effects {
        opaque: true,
        ..Effects::default()
    };
    run(&mut s, W, &odd, &err(false));
    assert!(!s.pinned(W));
}

#[test]
fn user_variables_are_uncaptured_until_read_back_then_wanted() {
    let mut s = SessionState::default();
    let sc = scan(b"SET @a = 1, @b = 'x'");
    let e = Effects {
        assigns: &sc.assigns,
        ..Effects::default()
    };
    let mut cs = ConnState::default();
    let r = tracked(Tracked {
        state_changed: true,
        ..Tracked::default()
    });
    s.after(W, 7, &mut cs, &e, &r);
    assert!(!s.pinned(W), "user variables do not pin");
    assert_eq!(s.uncaptured_on(W).len(), 2);
    assert_eq!(s.vars_live_on(&[Bytes::from("b")]), Some(W));
    assert_eq!(cs.user_vars.get(&Bytes::from("a")), Some(&None));
    let ok = s.captured(
        W,
        7,
        &mut cs,
        vec![
            ("a".into(), Some("1".into())),
            ("b".into(), Some("'x'".into())),
        ],
        None,
    );
    assert!(ok);
    assert!(s.uncaptured.is_empty());
    assert_eq!(
        s.wanted
            .user_vars
            .get(&Bytes::from("b"))
            .map(String::as_str),
        Some("'x'")
    );
    assert_eq!(cs.user_vars.get(&Bytes::from("a")), Some(&Some("1".into())));
    // A value no literal can give back pins instead.
    let sc = scan(b"SET @c = 1");
    let e = Effects {
        assigns: &sc.assigns,
        ..Effects::default()
    };
    s.after(W, 7, &mut cs, &e, &r);
    assert!(!s.captured(W, 7, &mut cs, vec![("c".into(), None)], None));
    assert_eq!(s.reasons(W), [PinReason::UnknownState]);
}

#[test]
fn temp_tables_prepared_statements_and_locks_pin_until_undone() {
    let mut s = SessionState::default();
    let r = tracked(Tracked {
        state_changed: true,
        ..Tracked::default()
    });
    let t = vec!["tmp1".to_string()];
    run(
        &mut s,
        W,
        &Effects {
            creates_temp: &t,
            ..Effects::default()
        },
        &r,
    );
    assert_eq!(s.temp_table_on("tmp1"), Some(W));
    let p = TextPrepare::Prepare("st".into());
    run(
        &mut s,
        W,
        &Effects {
            prepare: Some(&p),
            ..Effects::default()
        },
        &r,
    );
    let sc = scan(b"SELECT GET_LOCK('a', 1), GET_LOCK('b', 1)");
    run(
        &mut s,
        W,
        &Effects {
            locks: Some(&sc.locks),
            ..Effects::default()
        },
        &ok(StatusFlags::AUTOCOMMIT),
    );
    assert_eq!(
        s.reasons(W),
        [
            PinReason::NamedLocks,
            PinReason::TempTables,
            PinReason::Prepared
        ]
    );
    assert_eq!(s.locks_on(), Some(W));
    run(
        &mut s,
        W,
        &Effects {
            drops: &t,
            ..Effects::default()
        },
        &r,
    );
    let d = TextPrepare::Deallocate("st".into());
    run(
        &mut s,
        W,
        &Effects {
            prepare: Some(&d),
            ..Effects::default()
        },
        &r,
    );
    assert_eq!(s.reasons(W), [PinReason::NamedLocks]);
    s.locks_confirmed(W, &[Bytes::from("b")]);
    assert!(s.pinned(W));
    s.locks_confirmed(W, &[]);
    assert!(!s.pinned(W));
    // RELEASE_ALL_LOCKS ends locks whose names were not literals too.
    let sc = scan(b"SELECT GET_LOCK(@n, 1)");
    run(
        &mut s,
        W,
        &Effects {
            locks: Some(&sc.locks),
            ..Effects::default()
        },
        &ok(StatusFlags::AUTOCOMMIT),
    );
    assert!(s.pinned(W));
    let sc = scan(b"SELECT RELEASE_ALL_LOCKS()");
    run(
        &mut s,
        W,
        &Effects {
            locks: Some(&sc.locks),
            ..Effects::default()
        },
        &ok(StatusFlags::AUTOCOMMIT),
    );
    assert!(!s.pinned(W));
}

#[test]
fn failed_statements_change_nothing_the_text_says() {
    let mut s = SessionState::default();
    let t = vec!["tmp1".to_string()];
    let err = Response {
        err: true,
        ..Response::default()
    };
    run(
        &mut s,
        W,
        &Effects {
            creates_temp: &t,
            ..Effects::default()
        },
        &err,
    );
    assert!(!s.pinned(W));
}

#[test]
fn locked_tables_follow_the_tracker_and_take_everything() {
    let mut s = SessionState::default();
    let lock = tracked(Tracked {
        txn: Some(TxnState::parse(b"_______L")),
        ..Tracked::default()
    });
    run(&mut s, W, &Effects::default(), &lock);
    assert_eq!(s.exclusive(), Some(W));
    let unlock = tracked(Tracked {
        txn: Some(TxnState::parse(b"________")),
        ..Tracked::default()
    });
    run(&mut s, W, &Effects::default(), &unlock);
    assert_eq!(s.exclusive(), None);
    // FLUSH TABLES WITH READ LOCK has no tracker: the text says it.
    run(
        &mut s,
        W,
        &Effects {
            global_lock: Some(GlobalLock::TakeTables),
            ..Effects::default()
        },
        &ok(StatusFlags::AUTOCOMMIT),
    );
    assert_eq!(s.exclusive(), Some(W));
    run(
        &mut s,
        W,
        &Effects {
            global_lock: Some(GlobalLock::ReleaseTables),
            ..Effects::default()
        },
        &ok(StatusFlags::AUTOCOMMIT),
    );
    assert!(!s.pinned(W));
}

#[test]
fn found_rows_calc_pins_for_one_statement() {
    let mut s = SessionState::default();
    run(
        &mut s,
        R,
        &Effects {
            found_rows_calc: true,
            ..Effects::default()
        },
        &ok(StatusFlags::AUTOCOMMIT),
    );
    assert_eq!(s.reasons(R), [PinReason::NextStatement]);
    run(&mut s, R, &Effects::default(), &ok(StatusFlags::AUTOCOMMIT));
    assert!(!s.pinned(R));
}

#[test]
fn last_statement_and_last_insert_id_follow_their_connection() {
    let mut s = SessionState::default();
    let mut cs = ConnState::default();
    let insert = Response {
        status: Some(StatusFlags::AUTOCOMMIT),
        insert_id: 5,
        ..Response::default()
    };
    s.after(W, 3, &mut cs, &Effects::default(), &insert);
    assert_eq!(s.last_insert_id, LastInsertId::On(W, 3));
    assert!(s.last_on(3));
    s.captured(
        W,
        3,
        &mut cs,
        Vec::new(),
        Some((
            Captured {
                row_count: 1,
                found_rows: 0,
            },
            5,
        )),
    );
    assert_eq!(s.last_insert_id, LastInsertId::Known(5));
    assert_eq!(s.last.captured.map(|c| c.row_count), Some(1));
    // The read-back ran there: the connection no longer shows them, even
    // when it stays with the session.
    assert!(!s.last_on(3));
    s.left(W, 3);
    assert_eq!(s.last.on, None);
    // Broken before it was read back: lost, not guessed.
    s.after(W, 4, &mut cs, &Effects::default(), &insert);
    s.left(W, 4);
    assert_eq!(s.last_insert_id, LastInsertId::Lost);
    // The client sets it itself.
    let r = tracked(Tracked {
        state_changed: true,
        vars: vec![("last_insert_id".into(), "77".into())],
        ..Tracked::default()
    });
    run(&mut s, R, &Effects::default(), &r);
    assert_eq!(s.last_insert_id, LastInsertId::Known(77));
    assert!(s.wanted.vars.is_empty());
}

#[test]
fn client_tracker_settings_are_the_client_s_and_the_router_s_come_back() {
    let mut s = SessionState::default();
    let r = tracked(Tracked {
        state_changed: true,
        vars: vec![("session_track_state_change".into(), "ON".into())],
        ..Tracked::default()
    });
    let after = run(&mut s, W, &Effects::default(), &r);
    assert!(after.restore_trackers);
    assert!(s.client.state_change);
    assert!(s.wanted.vars.is_empty());
    assert!(!s.pinned(W));
}

#[test]
fn characteristics_wait_for_the_next_transaction() {
    let mut s = SessionState::default();
    let r = tracked(Tracked {
        state_changed: true,
        characteristics: Some("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;".into()),
        ..Tracked::default()
    });
    run(&mut s, W, &Effects::default(), &r);
    assert!(s.wanted.characteristics.is_some());
    assert!(!s.pinned(W));
    // BEGIN: the tracker now describes the open transaction.
    let begin = Response {
        status: Some(StatusFlags::IN_TRANS),
        tracked: Tracked {
            characteristics: Some("START TRANSACTION;".into()),
            txn: Some(TxnState::parse(b"T_______")),
            ..Tracked::default()
        },
        ..Response::default()
    };
    let mut cs = ConnState {
        characteristics: Some("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;".into()),
        ..ConnState::default()
    };
    s.after(W, 1, &mut cs, &Effects::default(), &begin);
    assert_eq!(s.wanted.characteristics, None);
    // ... and the connection has nothing pending for the next one: no
    // replay inside the transaction (MySQL would refuse it, ERR 1568).
    assert_eq!(cs.characteristics, None);
}

#[test]
fn cursors_and_long_data_pin_their_statement() {
    let mut s = SessionState::default();
    s.long_data(W, 4);
    assert_eq!(s.statement_on(4), Some(W));
    s.statement_done(4, false);
    assert!(!s.pinned(W));
    s.cursor(R, 5, true);
    assert_eq!(s.reasons(R), [PinReason::Cursor]);
    s.cursor(R, 5, false);
    assert!(!s.pinned(R));
    // A statement reading user variables stays where it was prepared until
    // it is closed; a reset does not end that.
    s.bind_statement(W, 6);
    assert_eq!(s.reasons(W), [PinReason::Prepared]);
    s.statement_done(6, true);
    assert_eq!(s.statement_on(6), Some(W));
    s.statement_closed(6);
    assert!(!s.pinned(W));
}
