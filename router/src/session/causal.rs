//! Causal reads, the session's side: what the session needs and where its
//! reads may go.
//!
//! - **Knowing what the session needs.** Backend connections of servers
//!   whose cluster is the writer of a consistent pair run with
//!   `session_track_gtids = OWN_GTID` (set with the session state before
//!   their first statement, again after any reset). Every OK packet's GTIDs
//!   are added to the session's needed set for that cluster's writer
//!   hostgroup, and to the returning server's view (it has them). The client
//!   sees OK packets as MySQL would send them to it: without GTIDs unless it
//!   set `session_track_gtids` itself, without any session state when it did
//!   not ask for `CLIENT_SESSION_TRACK`.
//! - **Routing a read** in a reader hostgroup of a consistent pair:
//!   [`crate::causal::decide`] over the group's usable servers and their
//!   views; waits for a view change when none has caught up yet (woken by
//!   the delta that makes one qualify, bounded by the pair's `max_wait`),
//!   then falls back to the writer hostgroup.
//! - **Scopes**: a hint's `consistency=`, else a rule's, else the user's,
//!   else the pair's. A token (`SET @causeway_min_gtid = '<set>'` for the
//!   session, or a `min_gtid=` hint for one statement) is added to what
//!   every non-eventual read needs. `user` adds every GTID the router
//!   acknowledged to the session's user, `router` every GTID it
//!   acknowledged ([`crate::writers`], in memory); `global` adds the
//!   primary's executed set, fetched after the read arrived
//!   ([`crate::global`]).
//! - **Across connections** (`user`, `router`): a write's GTIDs are
//!   acknowledged (added to the router's sets, under their lock) before
//!   its OK packet is queued for the client. A read another connection
//!   sends after the client saw that OK reaches the router after it, and
//!   takes the same lock to compute what it needs: it needs that write.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use causeway_gtid::GtidSet;
use regex::bytes::Regex;
use tracing::{debug, error, warn};

use super::driver::{Failure, Session};
use super::plan::router_err;
use crate::acked::ALL_INTERVALS;
use crate::causal::{self, Candidate, Fallback, Read, Route, Scope};
use crate::classify::contains_ci;
use crate::error::Result;
use crate::global::FetchLogin;
use crate::ids::{GroupId, ServerId};
use crate::route::Why;
use crate::writers::Whose;

/// The session's side of causal reads: what its reads need, by cluster
/// (the writer group whose writes they must see).
#[derive(Debug, Default)]
pub struct Causal {
    /// GTIDs of the session's writes, by writer group.
    pub needed: Vec<(GroupId, GtidSet)>,
    /// By writer group: when the session last wrote there, and the server
    /// that returned the GTIDs.
    pub wrote_at: Vec<(GroupId, Instant, ServerId)>,
    /// A causal read sent to the writer: its server, and when the statement
    /// was sent, to measure what such a read costs (see `Views::read_took`).
    pub writer_read: Option<(ServerId, Option<Instant>)>,
    /// `SET @causeway_min_gtid`: GTIDs every causal read must see.
    pub token: Option<GtidSet>,
}

impl Causal {
    /// Moves what it holds to the ids of a new configuration; what the new
    /// one does not have is dropped (the needed GTIDs of a writer group
    /// that disappeared no longer route anything).
    pub fn remap(
        &mut self,
        server: &dyn Fn(ServerId) -> Option<ServerId>,
        group: &dyn Fn(GroupId) -> Option<GroupId>,
    ) {
        self.needed = std::mem::take(&mut self.needed)
            .into_iter()
            .filter_map(|(g, set)| Some((group(g)?, set)))
            .collect();
        self.wrote_at = std::mem::take(&mut self.wrote_at)
            .into_iter()
            .filter_map(|(g, at, s)| Some((group(g)?, at, server(s)?)))
            .collect();
        self.writer_read = None;
    }

    fn needed_in(&self, w: GroupId) -> Option<&GtidSet> {
        self.needed.iter().find(|(g, _)| *g == w).map(|(_, s)| s)
    }
}

/// What a statement asks of a causal read (from hints and rules).
#[derive(Debug, Default)]
pub(super) struct Ask {
    /// `consistency=` of a hint, else of a rule.
    pub scope: Option<Scope>,
    /// `min_gtid=` of a hint.
    pub token: Option<GtidSet>,
}

/// The session variable a client sets to pass a token.
const TOKEN_VAR: &[u8] = b"causeway_min_gtid";

/// The needed set is compacted (holes filled with GTIDs every server of
/// the cluster has) once it has more intervals than this.
const COMPACT_AFTER: usize = 16;

static TOKEN_SET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?is)^\s*SET\s+@(?:causeway_min_gtid|`causeway_min_gtid`)\s*:?=\s*(?:(NULL)|'([^']*)'|"([^"]*)")\s*;?\s*$"#,
    )
    .expect("token regex")
});
static STARTS_WITH_SET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*SET\b").expect("set regex"));

/// `SET @causeway_min_gtid = '<set>' | NULL`: the router keeps the token
/// itself (`Some(Ok(None))` clears it). A `SET` that assigns it anything
/// else is refused (`Some(Err)`); any other statement is not one
/// (`None`).
pub(super) fn token_statement(sql: &[u8]) -> Option<std::result::Result<Option<GtidSet>, String>> {
    if !contains_ci(sql, TOKEN_VAR) {
        return None;
    }
    let Some(caps) = TOKEN_SET.captures(sql) else {
        return STARTS_WITH_SET.is_match(sql).then(|| {
            Err(
                "set @causeway_min_gtid in a statement of its own, to a quoted GTID set or NULL"
                    .to_string(),
            )
        });
    };
    if caps.get(1).is_some() {
        return Some(Ok(None));
    }
    let text = caps
        .get(2)
        .or_else(|| caps.get(3))
        .map_or(&b""[..], |m| m.as_bytes());
    if text.iter().all(u8::is_ascii_whitespace) {
        return Some(Ok(None));
    }
    Some(
        GtidSet::parse_bytes(text)
            .map(Some)
            .map_err(|e| format!("@causeway_min_gtid is not a GTID set: {e}")),
    )
}

impl Session<'_> {
    /// Held connection `i`'s server returned GTIDs `text` in an OK packet:
    /// the session's later reads need them, that server has them, and the
    /// router acknowledged them.
    pub(super) fn wrote(&mut self, i: usize, text: &[u8]) {
        let set = match GtidSet::parse_bytes(text) {
            Ok(set) if !set.is_empty() => set,
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, "unreadable GTIDs in an OK packet");
                return;
            }
        };
        let s = self.held[i].server;
        let rt = &self.cur.rt;
        let server = &rt.servers[s];
        self.shared.views.wrote(self.cur.views[s], &set);
        let cluster = server.cluster;
        // What a new writer must hold (crate::failover), and what `user`
        // and `router` reads need: acknowledged before the client sees the
        // OK, so a read it sends after, on any connection, needs them.
        let cluster_name = &rt.groups[cluster].name;
        let acked_intervals = self
            .shared
            .writers
            .acknowledge(cluster_name, &self.user, &set);
        // A statement that was running on a server when it got fenced
        // committed there, not on the writer: say so, and count it.
        let now = self.shared.current();
        if Arc::ptr_eq(&now.rt, rt) && now.members.fenced.contains(&s) {
            error!(server = %server.name, hostgroup = %cluster_name, gtids = %set,
                "a write committed on a fenced server after another became the writer: \
                 the writer lacks it");
            self.shared.writers.lose(cluster_name, &set);
        }
        let now = Instant::now();
        match self
            .causal
            .wrote_at
            .iter_mut()
            .find(|(g, ..)| *g == cluster)
        {
            Some(w) => {
                w.1 = now;
                w.2 = s;
            }
            None => self.causal.wrote_at.push((cluster, now, s)),
        }
        let k = match self.causal.needed.iter().position(|(g, _)| *g == cluster) {
            Some(k) => k,
            None => {
                self.causal.needed.push((cluster, GtidSet::new()));
                self.causal.needed.len() - 1
            }
        };
        self.causal.needed[k].1.union_with(&set);
        let own_long = self.causal.needed[k].1.interval_count() > COMPACT_AFTER;
        let acked_long = acked_intervals > ALL_INTERVALS;
        if !own_long && !acked_long {
            return;
        }
        // Fill holes with what every server of the cluster has: a read
        // that qualified still does (views only grow), and the sets stay a
        // few intervals however many writes were made.
        let Some((common, every_server)) = self.everywhere(cluster) else {
            return;
        };
        if own_long {
            self.causal.needed[k].1.union_with(&common);
        }
        // The acknowledged sets are compacted on every monitor change
        // too; this keeps them short without a monitor, and between its
        // checks. Only with a view of every server: a new writer must hold
        // what they are filled with.
        if acked_long && every_server {
            self.shared
                .writers
                .compact(cluster_name, &common, ALL_INTERVALS);
        }
    }

    /// What every server of `cluster` with a view has applied, and whether
    /// every server of it has a view (`None`: none has).
    fn everywhere(&self, cluster: GroupId) -> Option<(GtidSet, bool)> {
        let views = self.shared.views.read();
        let mut common: Option<GtidSet> = None;
        let mut every_server = true;
        for (id, srv) in self.cur.rt.servers.with_ids() {
            if srv.cluster != cluster {
                continue;
            }
            let Some(v) = views.at(self.cur.views[id]) else {
                every_server = false;
                continue;
            };
            common = Some(match common {
                None => v.set.clone(),
                Some(c) => c.intersection(&v.set),
            });
        }
        common.map(|c| (c, every_server))
    }

    /// `SET @causeway_min_gtid`, answered by the router.
    pub(super) async fn set_token(
        &mut self,
        res: std::result::Result<Option<GtidSet>, String>,
    ) -> Result<()> {
        match res {
            Ok(token) => {
                debug!(token = ?token.as_ref().map(ToString::to_string), "token set");
                self.causal.token = token;
                self.local_ok().await
            }
            Err(msg) => {
                self.refuse("hint", &router_err(9003, format!("Causeway: {msg}")))
                    .await
            }
        }
    }

    /// A read in reader group `g` of a consistent pair: a server whose view
    /// has what the read needs, else the writer group. The held index.
    pub(super) async fn causal_read(
        &mut self,
        g: GroupId,
        ask: &Ask,
    ) -> std::result::Result<usize, Failure> {
        let cur = self.cur.clone();
        let rt = &cur.rt;
        let Some((w, pair_scope, max_wait)) = rt.groups[g].pair else {
            return Err(Failure::Fatal(crate::error::Error::Internal(
                "causal read outside a consistent pair".into(),
            )));
        };
        let user_scope = rt.users.get(&self.user).and_then(|u| u.consistency);
        let scope = ask.scope.or(user_scope).unwrap_or(pair_scope);
        let mut needed = GtidSet::new();
        let mut acked_at = None;
        if scope != Scope::Eventual {
            if let Some(n) = self.causal.needed_in(w) {
                needed.union_with(n);
            }
            if let Some(t) = ask.token.as_ref().or(self.causal.token.as_ref()) {
                needed.union_with(t);
            }
            // What the router acknowledged before the read arrived: in
            // memory, no round trip.
            let whose = match scope {
                Scope::User => Some(Whose::User(&self.user)),
                Scope::Router => Some(Whose::All),
                _ => None,
            };
            if let Some(whose) = whose {
                acked_at = self
                    .shared
                    .writers
                    .needed(&rt.groups[w].name, whose, &mut needed);
            }
            if scope == Scope::Global {
                match self.primary_set(w).await {
                    Ok(set) => needed.union_with(&set),
                    Err(e) => {
                        warn!(error = %e, "global read: the primary's set is unknown; reading on the primary");
                        return self
                            .fall_back_to(w, scope, "global_fetch_failed", None, true)
                            .await;
                    }
                }
            }
        }
        let mut members = cur.members.members[g].clone();
        // What a read on the writer costs, as measured (see `writer_read`).
        let writer_cost = cur.members.members[w].first().and_then(|&p| {
            let views = self.shared.views.read();
            views.at(cur.views[p])?.read_cost
        });
        // When the writes the read needs are known (no token), when the
        // last was made and by which server: how soon a replica should
        // have them. For `user` and `router`, the last acknowledged, by the
        // writer in force.
        let no_token = ask.token.is_none() && self.causal.token.is_none();
        let own_write = match scope {
            Scope::Session if no_token => self
                .causal
                .wrote_at
                .iter()
                .find(|(c, ..)| *c == w)
                .map(|(_, at, s)| (*at, *s)),
            Scope::User | Scope::Router if no_token => acked_at.zip(cur.members.writer[w]),
            _ => None,
        };
        // Without any reader, no view will ever change: waiting is useless.
        let max_wait = if members.iter().any(|&m| rt.servers[m].reader.is_some()) {
            max_wait
        } else {
            Duration::ZERO
        };
        let started = Instant::now();
        let mut changes = self.shared.views.subscribe();
        let mut waited = false;
        loop {
            changes.borrow_and_update();
            self.turn = self.turn.wrapping_add(1);
            let held: Vec<ServerId> = self.held.iter().map(|h| h.server).collect();
            let decide_now = |catch_up: Option<Duration>| {
                let views = self.shared.views.read();
                let candidates: Vec<Candidate<'_>> = members
                    .iter()
                    .map(|&m| {
                        let s = &rt.servers[m];
                        // A server the session already holds costs nothing more.
                        Candidate {
                            id: m,
                            healthy: true,
                            weight: s.weight,
                            load: if held.contains(&m) {
                                0
                            } else {
                                u32::try_from(cur.pool(m).in_use()).unwrap_or(u32::MAX)
                            },
                            view: views.at(cur.views[m]).map(|v| &v.set),
                        }
                    })
                    .collect();
                causal::decide(
                    &Read {
                        scope,
                        needed: &needed,
                        pinned: None,
                        waited: started.elapsed(),
                        max_wait,
                        catch_up,
                        writer_cost,
                        tiebreak: self.turn,
                    },
                    &candidates,
                )
            };
            let mut route = decide_now(None);
            // Whether waiting pays matters only when the read would wait.
            if let (Route::Wait(_), Some((at, source)), Some(_)) = (route, own_write, writer_cost) {
                if let Some(c) = self.catch_up(&members, at, source) {
                    route = decide_now(Some(c));
                }
            }
            match route {
                Route::Replica(m) | Route::Pinned(m) => match self.acquire(m).await {
                    Ok(i) => {
                        self.shared
                            .metrics
                            .causal(scope_label(scope), "replica", "caught_up");
                        self.observe_causal(scope_label(scope), "replica", "caught_up");
                        if waited {
                            self.shared
                                .metrics
                                .causal_wait_seconds
                                .observe(started.elapsed().as_secs_f64());
                        }
                        return Ok(i);
                    }
                    Err(Failure::Client(err)) if err.code != 1317 => {
                        debug!(server = %rt.servers[m].name, code = err.code, "causal read: server unreachable; trying the others");
                        members.retain(|&c| c != m);
                    }
                    Err(f) => return Err(f),
                },
                Route::Wait(left) => {
                    waited = true;
                    let interrupt = self.interrupt.clone();
                    self.observe_waiting(Some(crate::stats::Command::WaitingReplica));
                    tokio::select! {
                        _ = tokio::time::timeout(left, changes.changed()) => {}
                        _ = interrupt.after(self.interrupts_seen) => {
                            self.observe_waiting(None);
                            return Err(Failure::Client(super::kill::interrupted()));
                        }
                    }
                    self.observe_waiting(None);
                }
                Route::Primary(why) => {
                    let reason = match why {
                        Fallback::NoHealthyReplica => "no_healthy_replica",
                        Fallback::NotCaughtUp => "not_caught_up",
                        Fallback::SlowCatchUp => "slow_catch_up",
                    };
                    let waited = waited.then(|| started.elapsed());
                    let requires = !needed.is_empty();
                    return self.fall_back_to(w, scope, reason, waited, requires).await;
                }
            }
        }
    }

    /// The read goes to the writer group; with `requires` (it needs GTIDs)
    /// a split writer group refuses it, as it refuses writes.
    async fn fall_back_to(
        &mut self,
        w: GroupId,
        scope: Scope,
        reason: &'static str,
        waited: Option<Duration>,
        requires: bool,
    ) -> std::result::Result<usize, Failure> {
        let m = &self.shared.metrics;
        m.causal(scope_label(scope), "primary", reason);
        self.observe_causal(scope_label(scope), "primary", reason);
        if let Some(d) = waited {
            m.causal_wait_seconds.observe(d.as_secs_f64());
        }
        let cur = self.cur.clone();
        if !requires && cur.members.split[w] {
            // A read that needs nothing may use either writable server.
            if let Some(&s) = cur.members.members[w].first() {
                let i = self.acquire(s).await?;
                self.causal.writer_read = Some((s, None));
                return Ok(i);
            }
        }
        let (i, _) = self.in_group(w, Why::Read).await?;
        self.causal.writer_read = Some((self.held[i].server, None));
        Ok(i)
    }

    /// The expected wait until one of `members` holds what `source`
    /// returned to the session at `at`: the soonest among those with an
    /// estimate (`None` when none has one).
    fn catch_up(&self, members: &[ServerId], at: Instant, source: ServerId) -> Option<Duration> {
        let now = Instant::now();
        let since = now.saturating_duration_since(at);
        let ids = &self.cur.views;
        members
            .iter()
            .filter_map(|&m| self.shared.views.lag(ids[m], ids[source], now))
            .map(|lag| lag.saturating_sub(since))
            .min()
    }

    /// Held connection `i` has just been sent a statement: when it is the
    /// causal read sent to the writer, its clock starts.
    pub(super) fn writer_read_sent(&mut self, i: usize) {
        if let Some((server, sent @ None)) = &mut self.causal.writer_read {
            if *server == self.held[i].server {
                *sent = Some(Instant::now());
            }
        }
    }

    /// The first packet of a response arrived: when it answers the causal
    /// read sent to the writer, the time since it was sent is what such a
    /// read costs there (what waiting for a replica competes with; the
    /// session's state replay and the client's pace are not in it).
    pub(super) fn writer_read_answered(&mut self) {
        if let Some((_, Some(_))) = &self.causal.writer_read {
            if let Some((server, Some(sent))) = self.causal.writer_read.take() {
                self.shared
                    .views
                    .read_took(self.cur.views[server], sent.elapsed());
            }
        }
    }

    /// The executed set of writer group `w`'s primary, fetched after now
    /// (shared with concurrent global reads), learned into its view.
    async fn primary_set(&mut self, w: GroupId) -> std::result::Result<GtidSet, String> {
        let cur = self.cur.clone();
        let rt = &cur.rt;
        let &m = cur.members.members[w]
            .first()
            .ok_or_else(|| format!("no usable server in '{}'", rt.groups[w].name))?;
        let user = rt
            .users
            .get(&self.user)
            .ok_or_else(|| "user vanished".to_string())?;
        let server = &rt.servers[m];
        let login = FetchLogin {
            endpoint: server.endpoint.clone(),
            user: user.backend_user.to_string(),
            password: user.backend_password.clone(),
            timeout: rt.config.backend.connect_timeout,
        };
        let set = self.shared.global.fetch(&login).await?;
        self.shared.views.learn(cur.views[m], &set);
        Ok(set)
    }
}

/// The metrics label of a scope.
pub(super) fn scope_label(s: Scope) -> &'static str {
    match s {
        Scope::Eventual => "eventual",
        Scope::Session => "session",
        Scope::User => "user",
        Scope::Router => "router",
        Scope::Token => "token",
        Scope::Global => "global",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn token_statements_are_recognised() {
        let set = |t: &str| Some(Ok(Some(GtidSet::parse(t).unwrap())));
        let sql = format!("SET @causeway_min_gtid = '{U}:1-5'");
        assert_eq!(token_statement(sql.as_bytes()), set(&format!("{U}:1-5")));
        let sql = format!("  set @`causeway_min_gtid`:=\"{U}:7\" ; ");
        assert_eq!(token_statement(sql.as_bytes()), set(&format!("{U}:7")));
        assert_eq!(
            token_statement(b"SET @causeway_min_gtid = NULL"),
            Some(Ok(None))
        );
        assert_eq!(
            token_statement(b"SET @CAUSEWAY_MIN_GTID = ''"),
            Some(Ok(None))
        );
        assert!(matches!(
            token_statement(b"SET @causeway_min_gtid = 'nonsense'"),
            Some(Err(_))
        ));
        assert!(matches!(
            token_statement(b"SET @causeway_min_gtid = @x"),
            Some(Err(_))
        ));
        assert!(matches!(
            token_statement(b"SET @a = 1, @causeway_min_gtid = ''"),
            Some(Err(_))
        ));
        assert_eq!(token_statement(b"SELECT @causeway_min_gtid"), None);
        assert_eq!(token_statement(b"SET @a = 1"), None);
    }
}
