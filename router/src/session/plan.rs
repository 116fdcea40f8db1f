//! The planner: for each statement, which connection serves it. Pure.
//!
//! ```text
//! statement ──classify──> Classified ──┐
//! session state ──lives()──> Lives ────┼──route::decide──> Target ──plan()──> Plan
//! hints, rules ──> Steer ──────────────┘                                │
//!                                                                        ├─ Held(s)     the session's connection to s
//!                                                                        ├─ Borrow(s)   one from s's pool (idle, or opened,
//!                                                                        │              or wait in its queue: the pool decides)
//!                                                                        ├─ Causal(g)   a reader group of a consistent pair:
//!                                                                        │              causal::decide picks (or waits, or the writer)
//!                                                                        └─ Refuse(e)   an ERR (no usable server, split brain)
//! then: replay::replay(wanted, connection) ──> what runs first; the statement; state.after(response)
//! ```

use causeway_wire::ErrPacket;

use super::state::{LastInsertId, SessionState};
use crate::classify::Classified;
use crate::config::Role;
use crate::ids::{GroupId, ServerId};
use crate::route::{self, Groups, Lives, Membership, Steer, Target, Why};

/// What the planner needs of the configuration in force
/// ([`crate::runtime::Runtime`] is one).
pub trait Topology {
    /// A group's role.
    fn role(&self, g: GroupId) -> Role;
    /// Reads in `g` are causal: it is the reader group of a consistent pair.
    fn paired(&self, g: GroupId) -> bool;
    /// Where a writer group's plain reads go.
    fn reads_to(&self, g: GroupId) -> Option<GroupId>;
    /// A group's name (for messages).
    fn group_name(&self, g: GroupId) -> &str;
    /// A server's weight in its group.
    fn weight(&self, s: ServerId) -> u32;
}

/// Which connection serves a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The connection the session holds to this server.
    Held(ServerId, Why),
    /// A connection from this server's pool.
    Borrow(ServerId, Why),
    /// A read in this reader group of a consistent pair.
    Causal(GroupId, Why),
    /// An ERR for the client.
    Refuse(ErrPacket),
}

/// Where the session's state lives, for `class`, given the servers it
/// holds connections to (`held`, with the connection ids).
pub fn lives(state: &SessionState, class: &Classified, held: &[(ServerId, u64)]) -> Lives {
    let holds = |conn: u64| held.iter().find(|(_, c)| *c == conn).map(|(s, _)| *s);
    // The previous statement's connection, for ROW_COUNT()/FOUND_ROWS();
    // LAST_INSERT_ID()'s where it lives unread.
    let last = if class.row_info {
        state.last.on.and_then(|(_, c)| holds(c))
    } else if class.last_insert_id {
        match state.last_insert_id {
            LastInsertId::On(_, c) => holds(c),
            _ => None,
        }
    } else {
        None
    };
    let names: Vec<_> = class.user_vars().cloned().collect();
    let temp = class
        .tables
        .iter()
        .find_map(|t| state.temp_table_on(t))
        .or_else(|| {
            let p = class.scan.as_ref()?.prepare.as_ref()?;
            state.prepared_on(p.name())
        });
    Lives {
        exclusive: state.exclusive(),
        last,
        vars: state.vars_live_on(&names),
        locks: state.locks_on(),
        temp,
        autocommit_off: state
            .wanted
            .vars
            .get(b"autocommit")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"OFF") || &v[..] == b"0"),
    }
}

/// A client-visible error the router makes itself.
pub fn router_err(code: u16, msg: impl Into<String>) -> ErrPacket {
    ErrPacket::new(code, *b"HY000", msg.into())
}

/// Where the statement runs: the route's target resolved against what the
/// session holds and which servers serve each group now. `writes`: the
/// group is asked to take writes (a split writer group refuses them).
pub fn plan(
    rt: &impl Topology,
    members: &Membership,
    target: Target,
    held: &[ServerId],
    load: impl Fn(ServerId) -> usize,
    tiebreak: u64,
) -> Plan {
    match target {
        Target::Conn(s, why) if held.contains(&s) => Plan::Held(s, why),
        Target::Conn(s, why) => Plan::Borrow(s, why),
        Target::Group(g, why) if rt.paired(g) => Plan::Causal(g, why),
        Target::Group(g, why) => in_group(rt, members, g, why, held, load, tiebreak),
    }
}

/// A server of group `g` for a statement routed there: one the session
/// holds, else the least loaded by weight.
pub fn in_group(
    rt: &impl Topology,
    members: &Membership,
    g: GroupId,
    why: Why,
    held: &[ServerId],
    load: impl Fn(ServerId) -> usize,
    tiebreak: u64,
) -> Plan {
    if members.split[g] && rt.role(g) == Role::Writer {
        return Plan::Refuse(router_err(
            9002,
            format!(
                "Causeway: hostgroup '{}' has more than one writable server and none is known \
                 to be the writer (split brain); refusing until one is read-only",
                rt.group_name(g)
            ),
        ));
    }
    let pick = route::pick(
        &members.members[g],
        |m| held.contains(&m),
        load,
        |m| rt.weight(m),
        tiebreak,
    );
    match pick {
        Some(s) if held.contains(&s) => Plan::Held(s, why),
        Some(s) => Plan::Borrow(s, why),
        None => Plan::Refuse(no_server(rt.group_name(g))),
    }
}

/// ERR 9001 for a group without a usable server.
pub fn no_server(group: &str) -> ErrPacket {
    router_err(
        9001,
        format!(
            "Causeway: no usable server in hostgroup '{group}' (all down, shunned or without weight)"
        ),
    )
}

/// The groups of a user: its writer group, and where plain reads go.
pub fn groups_of(rt: &impl Topology, writer: GroupId, default: GroupId) -> Groups {
    let reads = match rt.role(default) {
        Role::Reader => Some(default),
        Role::Writer => rt.reads_to(writer),
    };
    Groups { writer, reads }
}

/// Decides the target of `class` (see [`route::decide`]).
pub fn target(class: &Classified, lives: &Lives, steer: &Steer, groups: &Groups) -> Target {
    route::decide(class, lives, steer, groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;
    use crate::session::replay::ConnState;
    use crate::session::state::{Effects, Response};
    use crate::session::track::{Tracked, TxnState};
    use causeway_wire::StatusFlags;

    const W: ServerId = ServerId(0);
    const R1: ServerId = ServerId(1);

    #[test]
    fn state_decides_where_it_lives() {
        let mut s = SessionState::default();
        let mut cs = ConnState::default();
        // Nothing held, nothing lives anywhere.
        let l = lives(&s, &classify("SELECT @a"), &[]);
        assert_eq!((l.vars, l.exclusive, l.last), (None, None, None));
        // @a assigned on W and not read back: a statement using it goes there.
        let c = classify("SET @a = 1");
        let e = Effects {
            assigns: c.assigns(),
            ..Effects::default()
        };
        let ok = Response {
            status: Some(StatusFlags::AUTOCOMMIT),
            insert_id: 9,
            ..Response::default()
        };
        s.after(W, 11, &mut cs, &e, &ok);
        let l = lives(&s, &classify("SELECT @a + 1"), &[(W, 11)]);
        assert_eq!(l.vars, Some(W));
        assert_eq!(lives(&s, &classify("SELECT @b"), &[(W, 11)]).vars, None);
        // LAST_INSERT_ID() where it lives, ROW_COUNT() where the previous
        // statement ran, while the session holds those connections.
        let l = lives(&s, &classify("SELECT LAST_INSERT_ID()"), &[(W, 11)]);
        assert_eq!(l.last, Some(W));
        assert_eq!(lives(&s, &classify("SELECT ROW_COUNT()"), &[]).last, None);
        // LOCK TABLES: everything goes there.
        let locked = Response {
            status: Some(StatusFlags::AUTOCOMMIT),
            tracked: Tracked {
                txn: Some(TxnState::parse(b"_______L")),
                ..Tracked::default()
            },
            ..Response::default()
        };
        s.after(R1, 12, &mut cs, &Effects::default(), &locked);
        assert_eq!(lives(&s, &classify("SELECT 1"), &[]).exclusive, Some(R1));
    }

    #[test]
    fn autocommit_off_sends_reads_to_the_writer() {
        let mut s = SessionState::default();
        s.wanted.vars.set(b"autocommit", b"OFF");
        let l = lives(&s, &classify("SELECT * FROM t"), &[]);
        assert!(l.autocommit_off);
        let groups = Groups {
            writer: GroupId(0),
            reads: Some(GroupId(1)),
        };
        assert_eq!(
            target(&classify("SELECT * FROM t"), &l, &Steer::default(), &groups),
            Target::Group(GroupId(0), Why::Transaction)
        );
    }
}
