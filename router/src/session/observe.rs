//! What the session records for the router's statistics
//! ([`crate::stats`]): for each statement (COM_QUERY, COM_STMT_EXECUTE)
//! its digest, where it was routed and why, the rows it sent and the ERR it
//! ended with, folded into the digest table and the query log when it
//! ends; what it is doing now, for the processlist; every ERR sent to the
//! client, for the error table.
//!
//! ```text
//! begin (activity: the statement, since) ──> digest (once: the rules reuse it)
//!   ──> routed (activity: the server) ──> rows, ERR ──> end: Digests, QueryLog, activity idle
//! ```
//!
//! Per statement: the digest into a buffer the session keeps, a few short
//! locks, no allocation once the digest is known (the query log, when on,
//! formats its line).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use causeway_wire::ErrPacket;

use super::driver::Session;
use super::state::PinReason;
use crate::config::Role;
use crate::ids::{GroupId, ServerId};
use crate::route::Why;
use crate::stats::errors::BACKEND;
use crate::stats::{CausalNote, Command, LogLine, Sample, Sent, Served};

/// Statements longer than this get the digest of their beginning, which
/// the rules do not reuse (a `match_digest` rule computes its own).
const DIGEST_INPUT_MAX: usize = 64 << 10;

/// Which text the digest buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum DigestOf {
    /// None for this statement (statistics off, or no text).
    #[default]
    Nothing,
    /// The beginning of a long statement's.
    Prefix,
    /// The whole statement's.
    Whole,
}

/// What the current statement did, as far as the statistics care; one per
/// session, reused.
#[derive(Debug, Default)]
pub(super) struct Observed {
    /// When the statement under way (COM_QUERY, COM_STMT_EXECUTE) began.
    began: Option<Instant>,
    digest: String,
    digest_of: DigestOf,
    /// The session's schema when it began.
    schema: Option<Bytes>,
    /// Where it was routed: the server, the group serving it there, why.
    routed: Option<(ServerId, GroupId, Why)>,
    /// It is a plain read.
    read: bool,
    causal: Option<CausalNote>,
    /// Result-set rows sent to the client.
    pub(super) rows: u64,
    /// The ERR it ended with.
    error: Option<u16>,
    /// The query log's sampling draw (xorshift state).
    draw: u64,
}

impl Observed {
    /// Moves where the statement was routed to the ids of a new
    /// configuration (a reload while it waited); forgotten when the new one
    /// lacks the server or the group.
    pub(super) fn remap(
        &mut self,
        server: &dyn Fn(ServerId) -> Option<ServerId>,
        group: &dyn Fn(GroupId) -> Option<GroupId>,
    ) {
        self.routed = self
            .routed
            .and_then(|(s, g, why)| Some((server(s)?, group(g)?, why)));
    }

    fn next_draw(&mut self, seed: u32) -> u64 {
        if self.draw == 0 {
            self.draw = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        }
        // xorshift64
        let mut x = self.draw;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.draw = x;
        x
    }
}

impl Session<'_> {
    /// A statement begins (`started`); `text` is what the processlist
    /// shows (the packet's bytes, not copied).
    pub(super) fn observe_begin(&mut self, text: Option<Bytes>, started: Instant) {
        let o = &mut self.obs;
        o.began = Some(started);
        o.digest_of = DigestOf::Nothing;
        o.routed = None;
        o.read = false;
        o.causal = None;
        o.rows = 0;
        o.error = None;
        if o.schema != self.state.wanted.schema {
            o.schema.clone_from(&self.state.wanted.schema);
        }
        self.activity.begin(text, started);
    }

    /// Whether statements need a digest (statistics or the query log on).
    fn wants_digest(&self) -> bool {
        self.cur.rt.config.stats.digests || self.shared.stats.query_log.enabled()
    }

    /// The statement's text: its digest, computed once, when wanted.
    pub(super) fn observe_text(&mut self, sql: &str) {
        if self.obs.began.is_none() || !self.wants_digest() {
            return;
        }
        self.digest(sql);
    }

    /// The digest of `sql` into the buffer (of its beginning when long).
    fn digest(&mut self, sql: &str) {
        let cut = crate::stats::digests::truncated(sql, DIGEST_INPUT_MAX);
        // A long statement's buffer does not stay with the session.
        if self.obs.digest.capacity() > 4096 && cut.len() < 1024 {
            self.obs.digest = String::new();
        }
        crate::rules::digest_into(cut, &mut self.obs.digest);
        self.obs.digest_of = if cut.len() == sql.len() {
            DigestOf::Whole
        } else {
            DigestOf::Prefix
        };
    }

    /// COM_STMT_PREPARE of `sql`: its digest, for the statement (kept
    /// for every EXECUTE of it) and for the rules that route the PREPARE.
    pub(super) fn observe_prepare(&mut self, sql: &str) -> Box<str> {
        self.digest(sql);
        self.obs.digest.as_str().into()
    }

    /// COM_STMT_EXECUTE of statement `id` begins: its text and digest (made
    /// when it was prepared).
    pub(super) fn observe_execute(&mut self, id: u32, started: Instant) {
        let text = self.stmts.get(&id).map(|p| p.sql.clone());
        self.observe_begin(text, started);
        if let Some(p) = self.stmts.get(&id) {
            self.obs.digest.clear();
            self.obs.digest.push_str(&p.digest);
            self.obs.digest_of = if p.text.len() <= DIGEST_INPUT_MAX {
                DigestOf::Whole
            } else {
                DigestOf::Prefix
            };
        }
    }

    /// The current statement's digest, for the rules, when it was computed
    /// from its whole text.
    pub(super) fn whole_digest(&self) -> Option<&str> {
        (self.obs.digest_of == DigestOf::Whole).then_some(self.obs.digest.as_str())
    }

    /// The statement was routed to held connection `i`, in group `g`.
    pub(super) fn observe_route(&mut self, i: usize, g: GroupId, why: Why, read: bool) {
        self.obs.routed = Some((self.held[i].server, g, why));
        self.obs.read = read;
        self.activity.on_server(&self.held[i].conn.server);
    }

    /// A causal read was served (`served`: replica or primary) for `reason`.
    pub(super) fn observe_causal(
        &mut self,
        scope: &'static str,
        served: &'static str,
        reason: &'static str,
    ) {
        self.obs.causal = Some(CausalNote {
            scope,
            served,
            reason,
        });
    }

    /// The session waits for something (`Some`), or stopped waiting.
    pub(super) fn observe_waiting(&self, waiting: Option<Command>) {
        let running = if self.obs.began.is_some() {
            Command::Query
        } else {
            Command::Idle
        };
        self.activity.set(waiting.unwrap_or(running));
    }

    /// An ERR goes to the client: made by the router (`kind`), or a
    /// server's, forwarded (`kind` [`BACKEND`]).
    pub(super) fn observe_err(&mut self, err: &ErrPacket, kind: &'static str) {
        let sent = Sent::of(err, kind);
        self.shared.stats.errors.record(&sent, SystemTime::now());
        self.obs.error = Some(err.code);
    }

    /// A server's ERR packet is forwarded to the client.
    pub(super) fn observe_backend_err(&mut self, payload: &Bytes) {
        if let Ok(err) = ErrPacket::decode(payload) {
            self.observe_err(&err, BACKEND);
        }
    }

    /// The session fails with `e` (its client gets `e`'s ERR, if any, and
    /// is closed): a statement under way ends with it.
    pub(super) fn observe_failure(&mut self, e: &crate::error::Error) {
        if let Some(err) = e.client_err(&self.peer.ip().to_string()) {
            self.observe_err(&err, e.kind());
        }
        self.observe_end();
    }

    /// The statement under way ends: counted in its digest's row and the
    /// latency histogram, logged when the query log wants it, and the
    /// session shown idle.
    pub(super) fn observe_end(&mut self) {
        let Some(started) = self.obs.began.take() else {
            return;
        };
        let at = Instant::now();
        let took = at.saturating_duration_since(started);
        self.shared
            .metrics
            .query_seconds
            .observe(took.as_secs_f64());
        self.record(took, at);
        self.obs.digest_of = DigestOf::Nothing;
        let pinned_to = self
            .held
            .iter()
            .find(|h| self.state.pinned(h.server))
            .map(|h| &h.conn.server);
        let schema = self.state.wanted.schema.as_ref();
        self.activity.end(at, schema, pinned_to);
    }

    /// Into the digest table and the query log.
    fn record(&mut self, took: Duration, at: Instant) {
        let (digests_on, log) = (
            self.cur.rt.config.stats.digests,
            &self.shared.stats.query_log,
        );
        let logged = log.enabled() && {
            let draw = self.obs.next_draw(self.id);
            log.wants(draw, self.obs.error.is_some())
        };
        let o = &self.obs;
        if o.digest_of == DigestOf::Nothing || !(digests_on || logged) {
            return;
        }
        let rt = &self.cur.rt;
        let routed = o.routed.and_then(|(s, g, why)| {
            let group = rt.groups.get(g.index())?;
            let server = rt.servers.get(s.index())?;
            Some((group, server.name.as_str(), why))
        });
        let hostgroup = routed.map_or("", |(g, _, _)| g.name.as_str());
        if digests_on {
            let read = routed.filter(|_| o.read).map(|(g, _, _)| match g.role {
                Role::Reader => Served::Replica,
                Role::Writer => Served::Writer,
            });
            self.shared.stats.digests.record(&Sample {
                digest: &o.digest,
                schema: o.schema.as_deref(),
                user: &self.user,
                hostgroup,
                took,
                rows: o.rows,
                error: o.error.is_some(),
                read,
                at,
            });
        }
        if logged {
            let schema = o.schema.as_deref().map(String::from_utf8_lossy);
            log.write(&LogLine {
                time: SystemTime::now(),
                session: self.id,
                user: &self.user,
                schema: schema.as_deref(),
                digest: crate::stats::digests::truncated(
                    &o.digest,
                    crate::stats::digests::MAX_DIGEST_LEN,
                ),
                hostgroup: routed.map(|_| hostgroup),
                server: routed.map(|(_, s, _)| s),
                route: routed.map(|(_, _, why)| why.label()),
                causal: o.causal,
                duration_ms: took.as_secs_f64() * 1000.0,
                rows: o.rows,
                error: o.error,
            });
        }
    }

    /// Keeps `causeway_router_pinned_sessions` true for this session, and
    /// what the processlist shows of its pins.
    pub(super) fn count_pins(&mut self) {
        if self.pinned_counted.is_empty()
            && self.state.pins.is_empty()
            && self.state.txn == super::state::Txn::Idle
        {
            return;
        }
        let mut now: Vec<PinReason> = Vec::new();
        for h in &self.held {
            for r in self.state.reasons(h.server) {
                if !now.contains(&r) {
                    now.push(r);
                }
            }
        }
        if now == self.pinned_counted {
            return;
        }
        let m = &self.shared.metrics;
        for r in &self.pinned_counted {
            if !now.contains(r) {
                m.pinned(*r).dec();
            }
        }
        for r in &now {
            if !self.pinned_counted.contains(r) {
                m.pinned(*r).inc();
            }
        }
        self.activity.set_pins(&now);
        self.pinned_counted = now;
    }
}

/// The processlist's entry for a new session.
pub(super) fn activity(
    peer: std::net::SocketAddr,
    tls: bool,
    schema: Option<Bytes>,
) -> Arc<crate::stats::Activity> {
    Arc::new(crate::stats::Activity::new(peer, tls, schema))
}
