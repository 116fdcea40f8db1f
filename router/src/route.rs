//! Where a statement goes: pure, from what the statement is
//! ([`Classified`]), what the session holds, hints and rules.
//!
//! Precedence, first match wins:
//!
//! | # | condition | goes to |
//! |---|---|---|
//! | 1 | a transaction is open (or autocommit is off) | its connection |
//! | 2 | reads `LAST_INSERT_ID()`/`FOUND_ROWS()`/`ROW_COUNT()` | the connection of the previous statement |
//! | 3 | uses user variables set earlier | the connection where they were set |
//! | 4 | uses named locks held | the connection holding them |
//! | 5 | names a temporary table the session created | the connection that has it |
//! | 6 | a `causeway:` hint names a hostgroup or `primary` | that group / the writer group |
//! | 7 | a query rule sets a destination | that group |
//! | 8 | a plain read, or `START TRANSACTION READ ONLY` | the reader group paired with the session's writer group (if any) |
//! | 9 | anything else (writes, DDL, locking reads, side effects, `SET`, unparseable, multi-statements) | the session's default group for writes: its writer group |
//!
//! Session state is what makes 1–5 outrank hints and rules: sending such a
//! statement elsewhere would change its result, not just its cost. A
//! statement that *creates* such state (sets a variable, takes a lock,
//! creates a temporary table) goes to rows 3–5's connection when there is
//! one, otherwise like a write; the session then remembers where it ran.

use crate::classify::{Classified, Kind, TxnOp};
use crate::runtime::GroupIdx;

/// What the session holds, by server name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Held<'a> {
    /// The connection of an open transaction (or of autocommit = 0).
    pub txn: Option<&'a str>,
    /// The connection of the previous statement.
    pub last: Option<&'a str>,
    /// The connection where user variables were set.
    pub vars: Option<&'a str>,
    /// The connection holding named locks.
    pub locks: Option<&'a str>,
    /// The connection that has the session's temporary tables.
    pub temp: Option<&'a str>,
}

/// The groups of the session's user.
#[derive(Debug, Clone, Copy)]
pub struct Groups {
    /// Writes go here.
    pub writer: GroupIdx,
    /// Plain reads go here (`None`: to `writer`).
    pub reads: Option<GroupIdx>,
}

/// Why a statement went where it went (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Inside a transaction.
    Transaction,
    /// Session state lives on that connection.
    SessionState,
    /// A comment hint.
    Hint,
    /// A query rule.
    Rule,
    /// A plain read.
    Read,
    /// A write, or not provably a read.
    Write,
}

impl Why {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Why::Transaction => "transaction",
            Why::SessionState => "session_state",
            Why::Hint => "hint",
            Why::Rule => "rule",
            Why::Read => "read",
            Why::Write => "write",
        }
    }
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// An existing connection of the session, by server name.
    Conn(&'a str, Why),
    /// Some server of a hostgroup.
    Group(GroupIdx, Why),
}

/// What decides, besides the statement itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steer {
    /// A hint's group (`hostgroup=`, or the writer group for `primary`).
    pub hint: Option<GroupIdx>,
    /// A query rule's destination.
    pub rule: Option<GroupIdx>,
    /// The statement names a temporary table of the session.
    pub temp_table: bool,
}

/// Decides where `c` goes.
pub fn decide<'a>(c: &Classified, held: &Held<'a>, steer: &Steer, groups: &Groups) -> Target<'a> {
    if let Some(t) = held.txn {
        return Target::Conn(t, Why::Transaction);
    }
    let s = &c.session;
    let state = [
        (s.last_statement_info, held.last),
        (s.reads_user_vars || s.sets_user_vars, held.vars),
        (s.named_locks, held.locks),
        (s.temp_tables || steer.temp_table, held.temp),
    ];
    if let Some(conn) = state.iter().find_map(|&(uses, at)| at.filter(|_| uses)) {
        return Target::Conn(conn, Why::SessionState);
    }
    // State created for the first time goes where writes go, so later
    // statements that need it find it on the writer.
    let creates_state = s.sets_user_vars || s.named_locks || s.temp_tables;
    if !creates_state {
        if let Some(g) = steer.hint {
            return Target::Group(g, Why::Hint);
        }
        if let Some(g) = steer.rule {
            return Target::Group(g, Why::Rule);
        }
    }
    let read =
        c.is_plain_read() && !steer.temp_table || c.kind == Kind::Transaction(TxnOp::BeginReadOnly);
    match (read, groups.reads) {
        (true, Some(r)) => Target::Group(r, Why::Read),
        _ => Target::Group(groups.writer, Why::Write),
    }
}

/// Picks a server among `members` of a group: one the session already has
/// a connection to (`held`), else the one with the lowest load per weight,
/// ties broken by `tiebreak` so equal servers take turns.
pub fn pick(
    members: &[usize],
    held: impl Fn(usize) -> bool,
    load: impl Fn(usize) -> usize,
    weight: impl Fn(usize) -> u32,
    tiebreak: u64,
) -> Option<usize> {
    if let Some(&m) = members.iter().find(|&&m| held(m)) {
        return Some(m);
    }
    let n = members.len();
    if n == 0 {
        return None;
    }
    let start = (tiebreak % n as u64) as usize;
    let mut best: Option<(usize, u64, u64)> = None;
    for k in 0..n {
        let m = members[(start + k) % n];
        let w = u64::from(weight(m));
        if w == 0 {
            continue;
        }
        let l = load(m) as u64 + 1;
        // l / w < bl / bw  <=>  l * bw < bl * w
        let better = match best {
            None => true,
            Some((_, bl, bw)) => l * bw < bl * w,
        };
        if better {
            best = Some((m, l, w));
        }
    }
    best.map(|(m, _, _)| m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    const W: GroupIdx = 0;
    const R: GroupIdx = 1;
    const OTHER: GroupIdx = 2;
    const GROUPS: Groups = Groups {
        writer: W,
        reads: Some(R),
    };

    fn route<'a>(sql: &str, held: &Held<'a>, steer: &Steer) -> Target<'a> {
        decide(&classify(sql), held, steer, &GROUPS)
    }

    #[test]
    fn plain_reads_go_to_the_reader_group_and_the_rest_to_the_writer() {
        let none = (&Held::default(), &Steer::default());
        for sql in [
            "SELECT * FROM t WHERE id = 1",
            "select 1",
            "SHOW TABLES",
            "START TRANSACTION READ ONLY",
        ] {
            assert_eq!(
                route(sql, none.0, none.1),
                Target::Group(R, Why::Read),
                "{sql}"
            );
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "SELECT * FROM t FOR UPDATE",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "SELECT a INTO OUTFILE '/tmp/x' FROM t",
            "SELECT SLEEP(1)",
            "CREATE TABLE x (a int)",
            "BEGIN",
            "START TRANSACTION",
            "SET autocommit = 0",
            "SET NAMES utf8mb4",
            "this is not sql",
            "SELECT 1; SELECT 2",
        ] {
            assert_eq!(
                route(sql, none.0, none.1),
                Target::Group(W, Why::Write),
                "{sql}"
            );
        }
    }

    #[test]
    fn without_a_reader_group_reads_go_to_the_writer() {
        let groups = Groups {
            writer: W,
            reads: None,
        };
        let t = decide(
            &classify("SELECT 1"),
            &Held::default(),
            &Steer::default(),
            &groups,
        );
        assert_eq!(t, Target::Group(W, Why::Write));
    }

    #[test]
    fn a_transaction_keeps_everything_on_its_connection() {
        let held = Held {
            txn: Some("primary"),
            vars: Some("replica1"),
            ..Held::default()
        };
        let steer = Steer {
            hint: Some(OTHER),
            rule: Some(OTHER),
            temp_table: true,
        };
        for sql in [
            "SELECT 1",
            "COMMIT",
            "SELECT @x",
            "INSERT INTO t VALUES (1)",
        ] {
            assert_eq!(
                route(sql, &held, &steer),
                Target::Conn("primary", Why::Transaction),
                "{sql}"
            );
        }
    }

    #[test]
    fn session_state_is_read_where_it_lives() {
        let held = Held {
            last: Some("last"),
            vars: Some("vars"),
            locks: Some("locks"),
            temp: Some("temp"),
            txn: None,
        };
        let none = Steer::default();
        let cases = [
            ("SELECT LAST_INSERT_ID()", "last"),
            ("SELECT FOUND_ROWS()", "last"),
            ("SELECT ROW_COUNT()", "last"),
            ("SELECT @x", "vars"),
            ("SET @y = 2", "vars"),
            ("SELECT IS_USED_LOCK('a')", "locks"),
            ("SELECT RELEASE_LOCK('a')", "locks"),
        ];
        for (sql, at) in cases {
            assert_eq!(
                route(sql, &held, &none),
                Target::Conn(at, Why::SessionState),
                "{sql}"
            );
        }
        let temp = Steer {
            temp_table: true,
            hint: Some(OTHER),
            ..Steer::default()
        };
        assert_eq!(
            route("SELECT * FROM tmp1", &held, &temp),
            Target::Conn("temp", Why::SessionState)
        );
    }

    #[test]
    fn new_session_state_goes_to_the_writer_even_against_hints() {
        let hint = Steer {
            hint: Some(OTHER),
            ..Steer::default()
        };
        for sql in [
            "SET @x = 1",
            "SELECT GET_LOCK('a', 1)",
            "CREATE TEMPORARY TABLE t1 (a int)",
        ] {
            assert_eq!(
                route(sql, &Held::default(), &hint),
                Target::Group(W, Why::Write),
                "{sql}"
            );
        }
        // Without state involved, reading a user variable never set is a
        // read of NULL anywhere: still safe on the writer.
        assert_eq!(
            route("SELECT @never_set", &Held::default(), &Steer::default()),
            Target::Group(W, Why::Write)
        );
    }

    #[test]
    fn hints_outrank_rules_and_rules_outrank_classification() {
        let both = Steer {
            hint: Some(OTHER),
            rule: Some(R),
            temp_table: false,
        };
        assert_eq!(
            route("INSERT INTO t VALUES (1)", &Held::default(), &both),
            Target::Group(OTHER, Why::Hint)
        );
        let rule = Steer {
            rule: Some(W),
            ..Steer::default()
        };
        assert_eq!(
            route("SELECT 1", &Held::default(), &rule),
            Target::Group(W, Why::Rule)
        );
    }

    #[test]
    fn a_read_of_a_temp_table_without_its_connection_goes_to_the_writer() {
        let temp = Steer {
            temp_table: true,
            ..Steer::default()
        };
        assert_eq!(
            route("SELECT * FROM tmp1", &Held::default(), &temp),
            Target::Group(W, Why::Write)
        );
    }

    #[test]
    fn pick_prefers_held_then_least_loaded_per_weight_and_rotates_ties() {
        let members = [10, 11, 12];
        let weight = |m: usize| if m == 12 { 0 } else { 1 };
        assert_eq!(pick(&members, |m| m == 11, |_| 0, weight, 0), Some(11));
        assert_eq!(
            pick(
                &members,
                |_| false,
                |m| if m == 10 { 5 } else { 0 },
                weight,
                0
            ),
            Some(11)
        );
        let first: Vec<_> = (0..4)
            .map(|t| pick(&members, |_| false, |_| 0, weight, t).unwrap())
            .collect();
        assert!(first.contains(&10) && first.contains(&11), "{first:?}");
        assert!(!first.contains(&12), "weight 0 is never picked");
        // weight 3 vs 1: the heavier takes up to 3x the load first.
        let w = |m: usize| if m == 10 { 3 } else { 1 };
        assert_eq!(
            pick(&[10, 11], |_| false, |m| if m == 10 { 1 } else { 0 }, w, 1),
            Some(10)
        );
        assert_eq!(
            pick(&[10, 11], |_| false, |m| if m == 10 { 3 } else { 0 }, w, 0),
            Some(11)
        );
        assert_eq!(pick(&[], |_| false, |_| 0, w, 0), None);
        assert_eq!(pick(&[12], |_| false, |_| 0, weight, 0), None);
    }
}
