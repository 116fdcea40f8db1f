//! Routing a statement, the I/O side: hints and rules read, the planner
//! asked ([`super::plan`]), the connection it names got (held, borrowed,
//! or through the causal decision).

use causeway_wire::ErrPacket;

use std::time::{Duration, Instant};

use super::driver::{Failure, Session};
use super::leave::Release;
use super::plan::{self, router_err, Plan};
use super::state::ConnId;
use crate::classify::{self, Classified};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::ids::{GroupId, ServerId};
use crate::metrics::KindLabels;
use crate::route::{Steer, Target, Why};
use crate::rules::{Hints, RuleInput};
use crate::session::plan::Topology;

/// What hints and rules say about a statement.
pub(super) struct Steered {
    steer: Steer,
    ask: super::causal::Ask,
    /// A rule turns multiplexing off for it.
    sticky: bool,
    /// Its backend timeout (a rule's, else the user's).
    timeout: Option<Duration>,
}

impl Session<'_> {
    /// The user's writer group and default group.
    pub(super) fn user_groups(&self) -> (GroupId, GroupId) {
        self.cur
            .rt
            .users
            .get(&self.user)
            .map_or((GroupId(0), GroupId(0)), |u| (u.writer, u.default_group))
    }

    /// Hints and rules for `sql`; an ERR when a hint is malformed or names
    /// no hostgroup.
    pub(super) fn steer(
        &self,
        sql: &str,
        class: &Classified,
    ) -> std::result::Result<Steered, ErrPacket> {
        let hints = Hints::parse(sql);
        if let Some(e) = hints.errors.first() {
            return Err(router_err(9003, format!("Causeway: bad hint: {e}")));
        }
        let token = match &hints.min_gtid {
            None => None,
            Some(text) => Some(causeway_gtid::GtidSet::parse(text).map_err(|e| {
                router_err(
                    9003,
                    format!("Causeway: bad hint: min_gtid is not a GTID set: {e}"),
                )
            })?),
        };
        let rt = &self.cur.rt;
        let (writer, _) = self.user_groups();
        let hint = match (&hints.hostgroup, hints.primary) {
            (_, true) => Some(writer),
            (Some(name), false) => Some(rt.group_named(name).ok_or_else(|| {
                router_err(9003, format!("Causeway: hint names no hostgroup {name:?}"))
            })?),
            (None, false) => None,
        };
        let user_timeout = rt.users.get(&self.user).and_then(|u| u.backend_timeout);
        let (rule, rule_scope, sticky, rule_timeout) = if rt.rules.is_empty() {
            (None, None, false, None)
        } else {
            let schema = self
                .state
                .wanted
                .schema
                .as_deref()
                .and_then(|s| std::str::from_utf8(s).ok());
            let out = rt.rules.evaluate(&RuleInput {
                sql,
                digest: self.whole_digest(),
                user: &self.user,
                schema,
                client_ip: self.peer.ip(),
            });
            (
                out.destination.and_then(|d| rt.group_named(d)),
                out.consistency,
                out.multiplex == Some(false),
                out.backend_timeout,
            )
        };
        let temp_table = self.state.has_temp_tables()
            && class
                .tables
                .iter()
                .any(|t| self.state.temp_table_on(t).is_some());
        let steer = Steer {
            hint,
            rule,
            temp_table,
        };
        let ask = super::causal::Ask {
            scope: hints.consistency.or(rule_scope),
            token,
        };
        Ok(Steered {
            steer,
            ask,
            sticky,
            timeout: rule_timeout.or(user_timeout).filter(|t| !t.is_zero()),
        })
    }

    /// Classifies `sql`, parsing fully when the session has temporary
    /// tables (the fast path does not list tables).
    pub(super) fn classify(&self, sql: &str) -> Classified {
        if self.state.has_temp_tables() {
            classify::classify_parsed(sql)
        } else {
            classify::classify(sql)
        }
    }

    /// Plans, gets and syncs the connection for a statement: its index in
    /// `held`, or `None` when an ERR was sent instead.
    pub(super) async fn connection_for(
        &mut self,
        sql: &str,
        class: &Classified,
    ) -> Result<Option<(usize, Why, bool)>> {
        // While a cluster has no writer, what needs it waits here (once per
        // statement, bounded by the cluster's window and count).
        let shared = self.shared;
        let mut slot: Option<crate::writers::Slot<'_>> = None;
        let (got, sticky) = loop {
            let Steered {
                steer,
                ask,
                sticky,
                timeout,
            } = match self.steer(sql, class) {
                Ok(s) => s,
                Err(err) => {
                    self.refuse("hint", &err).await?;
                    return Ok(None);
                }
            };
            self.backend_timeout = timeout;
            // A paused hostgroup: the statement waits for RESUME, then is
            // steered again (a reload may have come meanwhile).
            if let Some(g) = self.paused_target(class, &steer) {
                match self.wait_resumed(g).await {
                    Ok(()) => continue,
                    Err(Failure::Client(e)) => break (Err(Failure::Client(e)), sticky),
                    Err(Failure::Fatal(e)) => return Err(e),
                }
            }
            let (got, cluster) = self.plan_and_get(class, &steer, &ask).await;
            match (got, cluster) {
                (Err(Failure::Client(e)), Some(w)) if matches!(e.code, 9001 | 9002) => {
                    let f = self.cur.rt.failover(w).clone();
                    if f.window.is_zero() || f.max_waiting == 0 {
                        break (Err(Failure::Client(e)), sticky);
                    }
                    let name = self.cur.rt.groups[w].name.clone();
                    if slot.is_none() {
                        match shared.writers.enter(&name, f.max_waiting) {
                            Some(s) => slot = Some(s),
                            None => {
                                shared
                                    .metrics
                                    .writer_waits
                                    .get_or_create(&KindLabels { kind: "full" })
                                    .inc();
                                let err = router_err(
                                    9006,
                                    format!(
                                        "Causeway: hostgroup '{name}' has no writer ({}) and {} statements \
                                         wait for one already (max_waiting); the statement was not executed",
                                        String::from_utf8_lossy(&e.message), f.max_waiting
                                    ),
                                );
                                break (Err(Failure::Client(err)), sticky);
                            }
                        }
                    }
                    let until = *self
                        .wait_until
                        .get_or_insert_with(|| Instant::now() + f.window);
                    if self.interrupted() {
                        break (Err(Failure::Client(super::kill::interrupted())), sticky);
                    }
                    if !self.wait_for_writer(until).await? {
                        shared
                            .metrics
                            .writer_waits
                            .get_or_create(&KindLabels { kind: "timeout" })
                            .inc();
                        let err = router_err(
                            9006,
                            format!(
                                "Causeway: hostgroup '{name}' found no writer within its failover window \
                                 of {:?} ({}); the statement was not executed",
                                f.window,
                                self.no_writer_reason(w)
                                    .unwrap_or_else(|| String::from_utf8_lossy(&e.message).into_owned())
                            ),
                        );
                        break (Err(Failure::Client(err)), sticky);
                    }
                }
                (got, _) => break (got, sticky),
            }
        };
        if slot.take().is_some() && got.is_ok() {
            shared
                .metrics
                .writer_waits
                .get_or_create(&KindLabels { kind: "served" })
                .inc();
        }
        match got {
            Ok((i, why)) => {
                self.count_route(why, i, class.is_plain_read());
                if sticky {
                    let s = self.held[i].server;
                    self.state.stick(s);
                }
                Ok(Some((i, why, sticky)))
            }
            Err(Failure::Client(err)) => {
                let kind = match err.code {
                    9002 => "split_brain",
                    9003 => "hint",
                    9004 => "pool_timeout",
                    9006 => "no_writer",
                    _ => "no_backend",
                };
                self.refuse(kind, &err).await?;
                Ok(None)
            }
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    /// The planner's connection for a statement, and, when that failed
    /// for want of a writer, the writer group it needed.
    async fn plan_and_get(
        &mut self,
        class: &Classified,
        steer: &Steer,
        ask: &super::causal::Ask,
    ) -> (std::result::Result<(usize, Why), Failure>, Option<GroupId>) {
        let held: Vec<(ServerId, ConnId)> =
            self.held.iter().map(|h| (h.server, h.conn.id)).collect();
        let lives = plan::lives(&self.state, class, &held);
        let (writer, default) = self.user_groups();
        let groups = plan::groups_of(&*self.cur.rt, writer, default);
        let target = plan::target(class, &lives, steer, &groups);
        self.turn = self.turn.wrapping_add(1);
        let held_servers: Vec<ServerId> = self.held.iter().map(|h| h.server).collect();
        let cur = self.cur.clone();
        let p = plan::plan(
            &*cur.rt,
            &cur.members,
            target,
            &held_servers,
            |s| cur.pool(s).in_use(),
            self.turn,
        );
        // What the session keeps on a server the monitor finds unreachable
        // is lost: the statement is not sent there.
        if let (Target::Conn(s, _), Plan::Held(..) | Plan::Borrow(..)) = (target, &p) {
            let name = &cur.rt.servers[s].name;
            if self.shared.monitor.unreachable(name) {
                let err = ErrPacket::new(
                    2013,
                    *b"HY000",
                    format!(
                        "Lost connection to MySQL server during query (Causeway: server '{name}' \
                         does not answer; the statement was not sent, and what the session kept \
                         on that server is lost)"
                    ),
                );
                return (Err(Failure::Fatal(Error::SessionLost(err))), None);
            }
        }
        let got = match p {
            // A fenced server gets nothing: what the session kept there (a
            // transaction, locks, variables) is gone with it.
            Plan::Held(s, _) | Plan::Borrow(s, _) if cur.members.fenced.contains(&s) => {
                let err = ErrPacket::new(
                    2013,
                    *b"HY000",
                    format!(
                        "Lost connection to MySQL server during query (Causeway: server '{}' \
                         is fenced: another server is its cluster's writer, and what the \
                         session kept on it is abandoned)",
                        cur.rt.servers[s].name
                    ),
                );
                Err(Failure::Fatal(Error::SessionLost(err)))
            }
            // acquire() finds a held one; a planned one is held.
            Plan::Held(s, why) | Plan::Borrow(s, why) => self.acquire(s).await.map(|i| (i, why)),
            Plan::Causal(g, why) => self.causal_read(g, ask).await.map(|i| (i, why)),
            Plan::Refuse(err) => Err(Failure::Client(err)),
        };
        let cluster = match target {
            Target::Group(g, _) if cur.rt.role(g) == Role::Writer => Some(g),
            _ => None,
        };
        // A plain read whose reader group has no usable server goes to the
        // writer when the configuration allows.
        match (got, target) {
            (Err(Failure::Client(e)), Target::Group(_, Why::Read))
                if e.code == 9001 && cur.rt.config.routing.reads_fall_back_to_writer =>
            {
                (self.in_group(writer, Why::Write).await, Some(writer))
            }
            (other, _) => (other, cluster),
        }
    }

    /// A statement needs a writer and its cluster has none: gives back
    /// what the session holds unpinned, hurries the monitor, and waits
    /// until the membership changes (or a short while passes: a refused
    /// connection is retried) or `until`. Whether to plan again.
    pub(super) async fn wait_for_writer(&mut self, until: Instant) -> Result<bool> {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(self.wait_for_writer_unboxed(until)).await
    }

    async fn wait_for_writer_unboxed(&mut self, until: Instant) -> Result<bool> {
        self.release_held(Release::Unpinned).await?;
        let mut changed = self.shared.writers.subscribe();
        changed.borrow_and_update();
        let now = Instant::now();
        if now >= until {
            return Ok(false);
        }
        self.shared.monitor.hurry();
        let nap = (until - now).min(Duration::from_millis(250));
        let interrupt = self.interrupt.clone();
        self.observe_waiting(Some(crate::stats::Command::WaitingWriter));
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(nap) => {}
            // KILL QUERY: the caller plans again and finds it.
            _ = interrupt.after(self.interrupts_seen) => {}
        }
        self.observe_waiting(None);
        // A client that went away gives its place back now.
        if self.client.peer_closed() {
            return Err(Error::ClientIo(std::io::Error::from(
                std::io::ErrorKind::UnexpectedEof,
            )));
        }
        self.refresh().await?;
        Ok(true)
    }

    /// The hostgroup a statement goes to when an operator paused it and the
    /// session holds no pinned connection (what runs on one goes on, so an
    /// open transaction can end). One atomic load when nothing is paused.
    fn paused_target(&self, class: &Classified, steer: &Steer) -> Option<GroupId> {
        if !self.shared.ops.any_paused() {
            return None;
        }
        if self.held.iter().any(|h| self.state.pinned(h.server)) {
            return None;
        }
        let held: Vec<(ServerId, ConnId)> =
            self.held.iter().map(|h| (h.server, h.conn.id)).collect();
        let lives = plan::lives(&self.state, class, &held);
        let (writer, default) = self.user_groups();
        let groups = plan::groups_of(&*self.cur.rt, writer, default);
        match plan::target(class, &lives, steer, &groups) {
            Target::Group(g, _) if self.shared.ops.is_paused(&self.cur.rt.groups[g].name) => {
                Some(g)
            }
            _ => None,
        }
    }

    /// Waits while an operator keeps hostgroup `g` paused, giving back
    /// what the session holds unpinned; KILL QUERY ends the wait with ERR
    /// 1317, a client that leaves ends it too.
    async fn wait_resumed(&mut self, g: GroupId) -> std::result::Result<(), Failure> {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(self.wait_resumed_unboxed(g)).await
    }

    async fn wait_resumed_unboxed(&mut self, g: GroupId) -> std::result::Result<(), Failure> {
        self.release_held(Release::Unpinned).await?;
        let name = self.cur.rt.groups[g].name.clone();
        tracing::debug!(hostgroup = %name, "hostgroup paused: the statement waits");
        let interrupt = self.interrupt.clone();
        let shared = self.shared;
        loop {
            tokio::select! {
                _ = shared.ops.wait_resumed(&name) => break,
                _ = interrupt.after(self.interrupts_seen) => {
                    return Err(Failure::Client(super::kill::interrupted()));
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if self.client.peer_closed() {
                        return Err(Failure::Fatal(Error::ClientIo(std::io::Error::from(
                            std::io::ErrorKind::UnexpectedEof,
                        ))));
                    }
                }
            }
        }
        self.refresh().await?;
        Ok(())
    }

    /// Whether a KILL QUERY came for the command under way.
    pub(super) fn interrupted(&self) -> bool {
        self.interrupt.count() != self.interrupts_seen
    }

    /// The failover window of `server`'s cluster.
    pub(super) fn failover_window(&self, server: ServerId) -> Duration {
        let rt = &self.cur.rt;
        rt.failover(rt.servers[server].cluster).window
    }

    /// Why writer group `w` has no writer, as the membership says.
    fn no_writer_reason(&self, w: GroupId) -> Option<String> {
        let m = &self.cur.members;
        let rt = &self.cur.rt;
        if m.split[w] {
            return Some("more than one writable server, none known to be the writer".into());
        }
        let lacking: Vec<String> = m
            .catching_up
            .iter()
            .filter(|(g, ..)| *g == w)
            .map(|(_, s, gap)| {
                if gap.is_empty() {
                    format!(
                        "server '{}' is writable but what the fleet's routers acknowledged is \
                         not known yet (etcd unreachable, or not read yet)",
                        rt.servers[*s].name
                    )
                } else {
                    format!(
                        "server '{}' is writable but lacks acknowledged GTIDs {gap}",
                        rt.servers[*s].name
                    )
                }
            })
            .collect();
        (!lacking.is_empty()).then(|| lacking.join("; "))
    }

    /// A connection to some server of group `g` (held or borrowed).
    pub(super) async fn in_group(
        &mut self,
        g: GroupId,
        why: Why,
    ) -> std::result::Result<(usize, Why), Failure> {
        self.turn = self.turn.wrapping_add(1);
        let cur = self.cur.clone();
        let mut members = cur.members.clone();
        loop {
            // Waiting for a connection gives back held ones: read anew.
            let held: Vec<ServerId> = self.held.iter().map(|h| h.server).collect();
            let p = plan::in_group(
                &*cur.rt,
                &members,
                g,
                why,
                &held,
                |s| cur.pool(s).in_use(),
                self.turn,
            );
            match p {
                Plan::Held(s, why) | Plan::Borrow(s, why) => match self.acquire(s).await {
                    Ok(i) => return Ok((i, why)),
                    // Unreachable: try the group's other servers.
                    Err(Failure::Client(e)) if e.code == 9001 => {
                        members.members[g].retain(|&m| m != s);
                        if members.members[g].is_empty() {
                            return Err(Failure::Client(e));
                        }
                    }
                    Err(e) => return Err(e),
                },
                Plan::Refuse(err) => return Err(Failure::Client(err)),
                Plan::Causal(..) => {
                    return Err(Failure::Fatal(Error::Internal(
                        "causal plan in_group".into(),
                    )))
                }
            }
        }
    }

    /// Counts a statement (`read`: a plain read) routed to held
    /// connection `i`, labelled with the group its server serves in force
    /// (a promoted replica's writes count for the writer group).
    fn count_route(&mut self, why: Why, i: usize, read: bool) {
        let s = self.held[i].server;
        let g = self.cur.members.serving(s, self.cur.rt.servers[s].group);
        if let Some(c) = self.cur.routed[g].get(why.index()) {
            c.inc();
        }
        self.observe_route(i, g, why, read);
    }

    /// The held connection to `server`.
    pub(super) fn held_index(&self, server: ServerId) -> Option<usize> {
        self.held.iter().position(|h| h.server == server)
    }
}
