//! Where a statement goes: pure, from what the statement is
//! ([`Classified`]), where the session's state lives, hints and rules.
//!
//! Precedence, first match wins:
//!
//! | # | condition | goes to |
//! |---|---|---|
//! | 1 | a transaction is open, tables are locked (`LOCK TABLES`, FTWRL) | that connection |
//! | 2 | names a temporary table the session created, or a text prepared statement | the connection that has it |
//! | 3 | uses named locks held | the connection holding them |
//! | 4 | reads `ROW_COUNT()`/`FOUND_ROWS()`/`LAST_INSERT_ID()` | the connection of the previous statement, while the session has it |
//! | 5 | uses user variables assigned there and not read back yet | that connection (elsewhere, they are read back and replayed first) |
//! | 6 | `autocommit` is off | the writer group (the statement opens a transaction) |
//! | 7 | a `causeway:` hint names a hostgroup or `primary` | that group / the writer group |
//! | 8 | a query rule sets a destination | that group |
//! | 9 | a plain read, or `START TRANSACTION READ ONLY` | the reader group paired with the session's writer group (if any) |
//! | 10 | anything else (writes, DDL, locking reads, side effects, `SET`, unparseable, multi-statements) | the session's default group for writes: its writer group |
//!
//! Session state is what makes 1–5 outrank hints and rules: sending such a
//! statement elsewhere would change its result, not just its cost. A
//! statement that *creates* such state (assigns a variable, takes a lock,
//! creates a temporary table) goes to rows 3–5's connection when there is
//! one, otherwise like a write; the session then remembers where it ran.
//! User variables read back and replayed live nowhere in particular: a
//! statement using only those is routed like any other.

use causeway_gtid::GtidSet;

use crate::classify::{Classified, Kind, TxnOp};
use crate::ids::{GroupId, IdVec, ServerId};

/// Which servers serve each hostgroup now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Usable servers per group, in config order.
    pub members: IdVec<GroupId, Vec<ServerId>>,
    /// Groups with more than one writable server and no way to tell which
    /// one takes writes ([`crate::failover::Election::Ambiguous`]).
    pub split: IdVec<GroupId, bool>,
    /// Per writer group, the server elected to take writes, when one is.
    pub writer: IdVec<GroupId, Option<ServerId>>,
    /// Writable servers that are not their cluster's writer: no statement
    /// of any kind goes to them.
    pub fenced: Vec<ServerId>,
    /// Writer groups with no writer because every writable server lacks
    /// acknowledged GTIDs: which, and what it lacks.
    pub catching_up: Vec<(GroupId, ServerId, GtidSet)>,
    /// Writer groups whose writer lacks acknowledged GTIDs (accepted by
    /// the cluster's policy after its window): what was lost.
    pub lost: Vec<(GroupId, GtidSet)>,
}

impl Membership {
    /// The group `server` serves in force: the writer group that elected
    /// it, else the first group it is a member of, else `configured` (its
    /// group in the configuration). A promoted replica serves its writer
    /// group; a demoted writer its cluster's reader group.
    pub fn serving(&self, server: ServerId, configured: GroupId) -> GroupId {
        if let Some((g, _)) = self.writer.with_ids().find(|(_, w)| **w == Some(server)) {
            return g;
        }
        self.members
            .with_ids()
            .find(|(_, m)| m.contains(&server))
            .map_or(configured, |(g, _)| g)
    }
}

/// Where the session's state lives, by server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lives {
    /// Every statement must go here: an open transaction, locked tables.
    pub exclusive: Option<ServerId>,
    /// The connection of the previous statement, while the session has it.
    pub last: Option<ServerId>,
    /// User variables the statement uses that were assigned there and not
    /// read back yet.
    pub vars: Option<ServerId>,
    /// Named locks.
    pub locks: Option<ServerId>,
    /// A temporary table or text prepared statement the statement names.
    pub temp: Option<ServerId>,
    /// `autocommit` is off.
    pub autocommit_off: bool,
}

/// The groups of the session's user.
#[derive(Debug, Clone, Copy)]
pub struct Groups {
    /// Writes go here.
    pub writer: GroupId,
    /// Plain reads go here (`None`: to `writer`).
    pub reads: Option<GroupId>,
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
    /// Every route, in the order of [`Why::index`].
    pub const ALL: [Why; 6] = [
        Why::Transaction,
        Why::SessionState,
        Why::Hint,
        Why::Rule,
        Why::Read,
        Why::Write,
    ];

    /// Its position in [`Why::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

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
pub enum Target {
    /// The session's connection to this server.
    Conn(ServerId, Why),
    /// Some server of a hostgroup.
    Group(GroupId, Why),
}

/// What decides, besides the statement itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steer {
    /// A hint's group (`hostgroup=`, or the writer group for `primary`).
    pub hint: Option<GroupId>,
    /// A query rule's destination.
    pub rule: Option<GroupId>,
    /// The statement names a temporary table of the session.
    pub temp_table: bool,
}

/// Decides where `c` goes.
pub fn decide(c: &Classified, lives: &Lives, steer: &Steer, groups: &Groups) -> Target {
    if let Some(t) = lives.exclusive {
        return Target::Conn(t, Why::Transaction);
    }
    let s = &c.session;
    // What cannot move first (objects on a connection), then the previous
    // statement's results, then user variables (which the session reads
    // back and replays where the statement runs).
    let state = [
        (s.temp_tables || steer.temp_table, lives.temp),
        (s.named_locks, lives.locks),
        (s.last_statement_info, lives.last),
        (s.reads_user_vars || s.sets_user_vars, lives.vars),
    ];
    if let Some(conn) = state.iter().find_map(|&(uses, at)| at.filter(|_| uses)) {
        return Target::Conn(conn, Why::SessionState);
    }
    if lives.autocommit_off {
        return Target::Group(groups.writer, Why::Transaction);
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
    members: &[ServerId],
    held: impl Fn(ServerId) -> bool,
    load: impl Fn(ServerId) -> usize,
    weight: impl Fn(ServerId) -> u32,
    tiebreak: u64,
) -> Option<ServerId> {
    if let Some(&m) = members.iter().find(|&&m| held(m)) {
        return Some(m);
    }
    let n = members.len();
    if n == 0 {
        return None;
    }
    let start = (tiebreak % n as u64) as usize;
    let mut best: Option<(ServerId, u64, u64)> = None;
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

    const W: GroupId = GroupId(0);
    const R: GroupId = GroupId(1);
    const OTHER: GroupId = GroupId(2);
    const PRIMARY: ServerId = ServerId(0);
    const REPLICA1: ServerId = ServerId(1);
    const S2: ServerId = ServerId(2);
    const S3: ServerId = ServerId(3);
    const S4: ServerId = ServerId(4);
    const GROUPS: Groups = Groups {
        writer: W,
        reads: Some(R),
    };

    fn route(sql: &str, held: &Lives, steer: &Steer) -> Target {
        decide(&classify(sql), held, steer, &GROUPS)
    }

    #[test]
    fn plain_reads_go_to_the_reader_group_and_the_rest_to_the_writer() {
        let none = (&Lives::default(), &Steer::default());
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
            &Lives::default(),
            &Steer::default(),
            &groups,
        );
        assert_eq!(t, Target::Group(W, Why::Write));
    }

    #[test]
    fn a_transaction_keeps_everything_on_its_connection() {
        let held = Lives {
            exclusive: Some(PRIMARY),
            vars: Some(REPLICA1),
            ..Lives::default()
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
                Target::Conn(PRIMARY, Why::Transaction),
                "{sql}"
            );
        }
    }

    #[test]
    fn a_server_serves_the_group_of_its_role_in_force() {
        let m = Membership {
            members: vec![vec![REPLICA1], vec![PRIMARY, S2], vec![]].into(),
            split: vec![false; 3].into(),
            writer: vec![Some(REPLICA1), None, None].into(),
            ..Membership::default()
        };
        // Promoted: configured as a reader, serving the writer group.
        assert_eq!(m.serving(REPLICA1, R), W);
        // Demoted: configured as the writer, now a reader.
        assert_eq!(m.serving(PRIMARY, W), R);
        assert_eq!(m.serving(S2, R), R);
        // Out of every group (shunned, fenced): its configured group.
        assert_eq!(m.serving(S3, OTHER), OTHER);
    }

    #[test]
    fn session_state_is_read_where_it_lives() {
        let held = Lives {
            last: Some(S2),
            vars: Some(S3),
            locks: Some(S4),
            temp: Some(PRIMARY),
            ..Lives::default()
        };
        let none = Steer::default();
        let cases = [
            ("SELECT LAST_INSERT_ID()", S2),
            ("SELECT FOUND_ROWS()", S2),
            ("SELECT ROW_COUNT()", S2),
            ("SELECT @x", S3),
            ("SET @y = 2", S3),
            ("SELECT IS_USED_LOCK('a')", S4),
            ("SELECT RELEASE_LOCK('a')", S4),
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
            Target::Conn(PRIMARY, Why::SessionState)
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
                route(sql, &Lives::default(), &hint),
                Target::Group(W, Why::Write),
                "{sql}"
            );
        }
        // Without state involved, reading a user variable never set is a
        // read of NULL anywhere: still safe on the writer.
        assert_eq!(
            route("SELECT @never_set", &Lives::default(), &Steer::default()),
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
            route("INSERT INTO t VALUES (1)", &Lives::default(), &both),
            Target::Group(OTHER, Why::Hint)
        );
        let rule = Steer {
            rule: Some(W),
            ..Steer::default()
        };
        assert_eq!(
            route("SELECT 1", &Lives::default(), &rule),
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
            route("SELECT * FROM tmp1", &Lives::default(), &temp),
            Target::Group(W, Why::Write)
        );
    }

    #[test]
    fn pick_prefers_held_then_least_loaded_per_weight_and_rotates_ties() {
        let s = ServerId;
        let members = [s(10), s(11), s(12)];
        let weight = |m: ServerId| if m == s(12) { 0 } else { 1 };
        assert_eq!(
            pick(&members, |m| m == s(11), |_| 0, weight, 0),
            Some(s(11))
        );
        let load = |m: ServerId| if m == s(10) { 5 } else { 0 };
        assert_eq!(pick(&members, |_| false, load, weight, 0), Some(s(11)));
        let first: Vec<_> = (0..4)
            .map(|t| pick(&members, |_| false, |_| 0, weight, t).unwrap())
            .collect();
        assert!(
            first.contains(&s(10)) && first.contains(&s(11)),
            "{first:?}"
        );
        assert!(!first.contains(&s(12)), "weight 0 is never picked");
        // weight 3 vs 1: the heavier takes up to 3x the load first.
        let w = |m: ServerId| if m == s(10) { 3 } else { 1 };
        let two = [s(10), s(11)];
        let one_on_10 = |m: ServerId| usize::from(m == s(10));
        assert_eq!(pick(&two, |_| false, one_on_10, w, 1), Some(s(10)));
        let three_on_10 = |m: ServerId| if m == s(10) { 3 } else { 0 };
        assert_eq!(pick(&two, |_| false, three_on_10, w, 0), Some(s(11)));
        assert_eq!(pick(&[], |_| false, |_| 0, w, 0), None);
        assert_eq!(pick(&[s(12)], |_| false, |_| 0, weight, 0), None);
    }
}
