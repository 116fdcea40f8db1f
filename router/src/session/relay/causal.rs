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
//!   every non-eventual read needs. `global` adds the primary's executed set,
//!   fetched after the read arrived ([`crate::global`]).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use causeway_gtid::GtidSet;
use causeway_wire::{CapabilityFlags, OkPacket, StatusFlags};
use regex::bytes::Regex;
use tracing::{debug, warn};

use super::{router_err, Failure, Session};
use crate::backend::connect::REQUIRED;
use crate::backend::query::simple_query;
use crate::causal::{self, Candidate, Fallback, Read, Route, Scope};
use crate::classify::contains_ci;
use crate::error::Result;
use crate::global::FetchLogin;
use crate::runtime::{GroupIdx, Server};

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

/// Whether a statement may change `session_track_gtids`.
pub(super) fn mentions_tracking(sql: &[u8]) -> bool {
    contains_ci(sql, b"session_track_gtids")
}

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
    /// The `session_track_gtids` value a connection to `server` must have:
    /// the client's own when it set one, OWN_GTID when the server's writes
    /// must be tracked, else none (left as the server has it).
    pub(super) fn track_setting(&self, server: &Server) -> Option<String> {
        if self.client_track.is_none() && !server.track_gtids {
            return None;
        }
        let offered = self
            .shared
            .greeting
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|g| g.capabilities))
            .is_some_and(|c| c.contains(CapabilityFlags::SESSION_TRACK));
        if !offered {
            return None;
        }
        if let Some(v) = &self.client_track {
            return Some(v.clone());
        }
        server.track_gtids.then(|| "OWN_GTID".to_string())
    }

    /// Capabilities of a new connection to `server`: the client's, plus
    /// `CLIENT_SESSION_TRACK` when its GTIDs are tracked.
    pub(super) fn backend_caps(&self, server: &Server) -> CapabilityFlags {
        let mut caps = self.caps | REQUIRED;
        if self.track_setting(server).is_some() {
            caps |= CapabilityFlags::SESSION_TRACK;
        }
        caps
    }

    /// Sets `session_track_gtids` on connection `i` when it should track
    /// and does not yet.
    pub(super) async fn ensure_tracking(
        &mut self,
        i: usize,
    ) -> std::result::Result<(), causeway_wire::ErrPacket> {
        if self.conns[i].tracking {
            return Ok(());
        }
        let Some(server) = self.rt.server(&self.conns[i].server) else {
            return Ok(());
        };
        let Some(value) = self.track_setting(&self.rt.servers[server]) else {
            return Ok(());
        };
        let limit = self.rt.config.backend.connect_timeout;
        let c = &mut self.conns[i];
        if !c.caps.contains(CapabilityFlags::SESSION_TRACK) {
            return Ok(());
        }
        let sql = format!("SET session_track_gtids = {value}");
        match simple_query(&mut c.io, c.caps, &sql, limit).await {
            Ok(_) => {
                c.tracking = true;
                Ok(())
            }
            Err(crate::error::Error::BackendRefused(err)) => Err(err),
            Err(e) => Err(router_err(
                9001,
                format!(
                    "Causeway: enabling GTID tracking on '{}': {}",
                    c.server,
                    e.report()
                ),
            )),
        }
    }

    /// The client changed `session_track_gtids` (a statement naming it
    /// succeeded on connection `i`): learn its value; when the client
    /// turned tracking off, the router turns it back on for itself and
    /// strips the GTIDs from what the client sees.
    pub(super) async fn tracking_changed(&mut self, i: usize) -> Result<()> {
        let limit = self.rt.config.backend.connect_timeout;
        let c = &mut self.conns[i];
        let value = simple_query(
            &mut c.io,
            c.caps,
            "SELECT @@session.session_track_gtids",
            limit,
        )
        .await
        .ok()
        .and_then(|r| {
            r.rows
                .first()
                .and_then(|row| row.first().cloned())
                .flatten()
        });
        match value.as_deref() {
            Some(v) if !v.eq_ignore_ascii_case("OFF") => {
                self.client_track = Some(v.to_ascii_uppercase());
                c.tracking = true;
            }
            _ => {
                self.client_track = None;
                c.tracking = false;
                if let Err(err) = self.ensure_tracking(i).await {
                    // The connection no longer reports GTIDs: the session's
                    // reads cannot be proven fresh on replicas; drop it
                    // (its state is replayed on the next one).
                    warn!(server = %self.conns[i].server, code = err.code, "could not re-enable GTID tracking; closing that connection");
                    if self.txn.as_deref() != Some(self.conns[i].server.as_str()) {
                        let c = self.conns.remove(i);
                        c.quit().await;
                        self.publish();
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether OK packets of connection `i` need [`Session::on_ok`]: it
    /// reports GTIDs, or it has `CLIENT_SESSION_TRACK` and the client does
    /// not (every OK then has another layout for the client, whatever the
    /// server's trackers say).
    pub(super) fn reads_oks(&self, i: usize) -> bool {
        let c = &self.conns[i];
        c.tracking
            || (c.caps.contains(CapabilityFlags::SESSION_TRACK)
                && !self.caps.contains(CapabilityFlags::SESSION_TRACK))
    }

    /// An OK packet from connection `i` (see [`Session::reads_oks`]): its GTIDs become needed
    /// (and known on that server). Returns the payload the client gets
    /// instead, when it differs.
    pub(super) fn on_ok(&mut self, i: usize, payload: &Bytes) -> Option<Bytes> {
        let caps = self.conns[i].caps;
        if payload.first() == Some(&0xFE)
            && (!caps.contains(CapabilityFlags::DEPRECATE_EOF) || payload.len() < 7)
        {
            return None; // a classic EOF
        }
        let ok = OkPacket::decode(payload, caps).ok()?;
        if ok.status.contains(StatusFlags::SESSION_STATE_CHANGED) {
            if let Ok(Some(text)) = ok.gtids() {
                match GtidSet::parse_bytes(text) {
                    Ok(set) if !set.is_empty() => self.wrote(i, &set),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "unreadable GTIDs in an OK packet"),
                }
            }
        }
        if !self.caps.contains(CapabilityFlags::SESSION_TRACK) {
            if !caps.contains(CapabilityFlags::SESSION_TRACK) {
                return None;
            }
            // The client did not ask for session state at all.
            let mut plain = ok;
            plain.status.remove(StatusFlags::SESSION_STATE_CHANGED);
            plain.session_state = Bytes::new();
            let mut out = BytesMut::with_capacity(payload.len());
            plain.encode(self.caps, &mut out);
            return Some(out.freeze());
        }
        if self.client_track.is_some() {
            return None;
        }
        let stripped = ok.without_gtids().ok()??;
        let mut out = BytesMut::with_capacity(payload.len());
        stripped.encode(caps, &mut out);
        Some(out.freeze())
    }

    /// Connection `i`'s server returned `set`: the session's later reads
    /// need it, and that server has it.
    fn wrote(&mut self, i: usize, set: &GtidSet) {
        let server = &self.conns[i].server;
        self.shared.views.wrote(server, set);
        let Some(s) = self.rt.server(server) else {
            return;
        };
        let cluster = self.rt.servers[s].cluster;
        let name = &self.rt.groups[cluster].name;
        match self.wrote_at.get_mut(name) {
            Some(w) => {
                w.0 = Instant::now();
                if w.1 != *server {
                    w.1.clone_from(server);
                }
            }
            None => {
                self.wrote_at
                    .insert(name.clone(), (Instant::now(), server.clone()));
            }
        }
        let needed = match self.needed.get_mut(name) {
            Some(n) => n,
            None => self.needed.entry(name.clone()).or_default(),
        };
        needed.union_with(set);
        if needed.interval_count() > COMPACT_AFTER {
            // Fill holes with what every server of the cluster has: a read
            // that qualified still does (views only grow), and the set
            // stays a few intervals however many writes the session made.
            let views = self.shared.views.read();
            let mut common: Option<GtidSet> = None;
            for srv in self.rt.servers.iter().filter(|s| s.cluster == cluster) {
                let Some(v) = views.get(&srv.name) else {
                    continue;
                };
                common = Some(match common {
                    None => v.set.clone(),
                    Some(c) => c.intersection(&v.set),
                });
            }
            if let Some(common) = common {
                needed.union_with(&common);
            }
        }
    }

    /// `SET @causeway_min_gtid`, answered by the router.
    pub(super) async fn set_token(
        &mut self,
        res: std::result::Result<Option<GtidSet>, String>,
    ) -> Result<()> {
        match res {
            Ok(token) => {
                debug!(token = ?token.as_ref().map(ToString::to_string), "token set");
                self.token = token;
                let mut buf = BytesMut::new();
                OkPacket {
                    status: self.status & (StatusFlags::IN_TRANS | StatusFlags::AUTOCOMMIT),
                    ..OkPacket::default()
                }
                .encode(self.caps, &mut buf);
                let seq = self.client_seq;
                self.client.write_packet(seq, &buf).await
            }
            Err(msg) => {
                self.refuse("hint", &router_err(9003, format!("Causeway: {msg}")))
                    .await
            }
        }
    }

    /// A read in reader group `g` of a consistent pair: a server whose view
    /// has what the read needs, else the writer group.
    pub(super) async fn causal_read(
        &mut self,
        g: GroupIdx,
        ask: &Ask,
    ) -> std::result::Result<usize, Failure> {
        let Some((w, pair_scope, max_wait)) = self.rt.groups[g].pair else {
            return Err(Failure::Fatal(crate::error::Error::Internal(
                "causal read outside a consistent pair".into(),
            )));
        };
        let user_scope = self.rt.users.get(&self.user).and_then(|u| u.consistency);
        let scope = ask.scope.or(user_scope).unwrap_or(pair_scope);
        let mut needed = GtidSet::new();
        if scope != Scope::Eventual {
            if let Some(n) = self.needed.get(&self.rt.groups[w].name) {
                needed.union_with(n);
            }
            if let Some(t) = ask.token.as_ref().or(self.token.as_ref()) {
                needed.union_with(t);
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
        let health = self.shared.monitor.snapshot();
        let all = self.rt.members(&health);
        let mut members = all.members[g].clone();
        // What a read on the writer costs, as measured (see `writer_read`).
        let writer_cost = all.members[w].first().and_then(|&p| {
            let views = self.shared.views.read();
            views.get(&self.rt.servers[p].name)?.read_cost
        });
        // When the session's own writes are all it needs, when they were
        // made and by which server: how soon a replica should have them.
        let own_write = (scope == Scope::Session && ask.token.is_none() && self.token.is_none())
            .then(|| self.wrote_at.get(&self.rt.groups[w].name).cloned())
            .flatten();
        // Without any reader, no view will ever change: waiting is useless.
        let max_wait = if members.iter().any(|&m| self.rt.servers[m].reader.is_some()) {
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
            let decide_now = |catch_up: Option<Duration>| {
                let views = self.shared.views.read();
                let pools = &self.shared.pools;
                let candidates: Vec<Candidate<'_>> = members
                    .iter()
                    .map(|&m| {
                        let s = &self.rt.servers[m];
                        // A server the session already holds costs nothing more.
                        let held = self.conns.iter().any(|c| c.server == s.name);
                        Candidate {
                            id: m,
                            healthy: true,
                            weight: s.weight,
                            load: if held {
                                0
                            } else {
                                u32::try_from(pools.in_use(&s.name)).unwrap_or(u32::MAX)
                            },
                            view: views.get(&s.name).map(|v| &v.set),
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
            if let (Route::Wait(_), Some((at, source)), Some(_)) = (route, &own_write, writer_cost)
            {
                if let Some(c) = self.catch_up(&members, *at, source) {
                    route = decide_now(Some(c));
                }
            }
            match route {
                Route::Replica(m) | Route::Pinned(m) => match self.open(m).await {
                    Ok(i) => {
                        self.shared
                            .metrics
                            .causal(scope_label(scope), "replica", "caught_up");
                        if waited {
                            self.shared
                                .metrics
                                .causal_wait_seconds
                                .observe(started.elapsed().as_secs_f64());
                        }
                        return Ok(i);
                    }
                    Err(Failure::Client(err)) => {
                        debug!(server = %self.rt.servers[m].name, code = err.code, "causal read: server unreachable; trying the others");
                        members.retain(|&c| c != m);
                    }
                    Err(f) => return Err(f),
                },
                Route::Wait(left) => {
                    waited = true;
                    let _ = tokio::time::timeout(left, changes.changed()).await;
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
        w: GroupIdx,
        scope: Scope,
        reason: &'static str,
        waited: Option<Duration>,
        requires: bool,
    ) -> std::result::Result<usize, Failure> {
        let m = &self.shared.metrics;
        m.causal(scope_label(scope), "primary", reason);
        if let Some(d) = waited {
            m.causal_wait_seconds.observe(d.as_secs_f64());
        }
        let i = self.in_group(w, requires).await?;
        self.writer_read = Some((self.conns[i].server.clone(), None));
        Ok(i)
    }

    /// The expected wait until one of `members` holds what `source`
    /// returned to the session at `at`: the soonest among those with an
    /// estimate (`None` when none has one).
    fn catch_up(&self, members: &[usize], at: Instant, source: &str) -> Option<Duration> {
        let now = Instant::now();
        let since = now.saturating_duration_since(at);
        members
            .iter()
            .filter_map(|&m| self.shared.views.lag(&self.rt.servers[m].name, source, now))
            .map(|lag| lag.saturating_sub(since))
            .min()
    }

    /// Connection `i` has just been sent a statement: when it is the causal
    /// read sent to the writer, its clock starts.
    pub(super) fn writer_read_sent(&mut self, i: usize) {
        if let Some((server, sent @ None)) = &mut self.writer_read {
            if *server == self.conns[i].server {
                *sent = Some(Instant::now());
            }
        }
    }

    /// The first packet of a response arrived: when it answers the causal
    /// read sent to the writer, the time since it was sent is what such a
    /// read costs there (what waiting for a replica competes with; the
    /// session's state replay and the client's pace are not in it).
    pub(super) fn writer_read_answered(&mut self) {
        if let Some((_, Some(_))) = &self.writer_read {
            if let Some((server, Some(sent))) = self.writer_read.take() {
                self.shared.views.read_took(&server, sent.elapsed());
            }
        }
    }

    /// The executed set of writer group `w`'s primary, fetched after now
    /// (shared with concurrent global reads), learned into its view.
    async fn primary_set(&mut self, w: GroupIdx) -> std::result::Result<GtidSet, String> {
        let health = self.shared.monitor.snapshot();
        let members = self.rt.members(&health);
        let &m = members.members[w]
            .first()
            .ok_or_else(|| format!("no usable server in '{}'", self.rt.groups[w].name))?;
        let user = self
            .rt
            .users
            .get(&self.user)
            .ok_or_else(|| "user vanished".to_string())?;
        let server = &self.rt.servers[m];
        let login = FetchLogin {
            endpoint: server.endpoint.clone(),
            user: user.backend_user.clone(),
            password: user.backend_password.clone(),
            timeout: self.rt.config.backend.connect_timeout,
        };
        let set = self.shared.global.fetch(&login).await?;
        self.shared.views.learn(&server.name, &set);
        Ok(set)
    }
}

/// The metrics label of a scope.
pub(super) fn scope_label(s: Scope) -> &'static str {
    match s {
        Scope::Eventual => "eventual",
        Scope::Session => "session",
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

    #[test]
    fn tracking_mentions_are_found_in_any_case() {
        assert!(mentions_tracking(b"SET SESSION_TRACK_GTIDS = OFF"));
        assert!(mentions_tracking(
            b"set @@session.session_track_gtids='OWN_GTID'"
        ));
        assert!(!mentions_tracking(b"SET session_track_schema = OFF"));
    }
}
