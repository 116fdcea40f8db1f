//! The session's backend connections: getting one (held, or from the pool:
//! idle, opened, or after waiting), bringing it to the session's settings,
//! reading back what lives only on it before it leaves, giving it back.
//!
//! ```text
//! acquire(S) ──held──> i
//!           └─pool──> Grant::Conn (quiet check: a connection the server
//!                     closed is dropped, never lent) | Grant::Open ──> connect,
//!                     login, trackers on | ERR 1040 from the server ──> its limit
//!                     is learned, wait again | queue full / timed out ──> ERR 9004
//! sync(i) ──> replay (INIT_DB, one SET, SET TRANSACTION, SET_OPTION: pipelined, one round trip)
//! release(i) ──> read back (user variables, LAST_INSERT_ID(), ROW_COUNT(), FOUND_ROWS(),
//!                named locks still held) ──> still pinned: kept | else the pool
//! close_all ──> unpinned: the pool | pinned: COM_RESET_CONNECTION, then the pool | broken: closed
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use causeway_wire::command::ComQuery;
use causeway_wire::flags::Command;
use causeway_wire::{CapabilityFlags, Chunk, ErrPacket};
use tracing::{debug, warn};

use super::driver::{Failure, Session};
use super::plan::router_err;
use super::replay::{self, GtidTrack};
use super::state::{Effects, Response};
use super::track::ROUTER_TRACKERS;
use crate::backend::connect::{self, Login, REQUIRED};
use crate::backend::pool::{Conn, Grant, Limits, PoolKey, Refused, Want};
use crate::backend::query::simple_query;
use crate::backend::stmts::StmtCache;
use crate::classify::Classified;
use crate::error::{Error, Result};
use crate::ids::ServerId;

/// What a statement does with `LAST_INSERT_ID()`, for [`Session::sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lid {
    /// Nothing.
    Untouched,
    /// Reads it: the connection must have the session's value.
    Reads,
    /// May change it (CALL, text the router cannot parse): the connection
    /// must have the session's value, which afterwards is the
    /// connection's, whether or not the statement changed it.
    MayChange,
}

impl Lid {
    /// From the statement's classification.
    pub fn of(class: &Classified) -> Lid {
        if class.last_insert_id {
            Lid::Reads
        } else if class.opaque {
            Lid::MayChange
        } else {
            Lid::Untouched
        }
    }
}

/// A connection the session holds.
#[derive(Debug)]
pub struct Held {
    /// Its server.
    pub server: ServerId,
    /// The connection.
    pub conn: Conn,
    /// Statements it served since the session got it.
    pub statements: u64,
}

/// How long a server that refused a connect with ERR 1040 is held to the
/// number of connections open at that moment.
const FULL_HOLD: Duration = Duration::from_secs(5);

impl Session<'_> {
    /// Capabilities of the session's backend connections: the client's,
    /// plus what the router needs (session trackers among them).
    pub(super) fn backend_caps(&self) -> CapabilityFlags {
        self.caps | REQUIRED | CapabilityFlags::SESSION_TRACK
    }

    /// The session's connection to `server`: held, or from its pool (its
    /// own last one first), opened, or waited for.
    pub(super) async fn acquire(
        &mut self,
        server: ServerId,
    ) -> std::result::Result<usize, Failure> {
        if let Some(i) = self.held_index(server) {
            // Nothing may arrive between statements: a held connection
            // that has something to say was closed by its server (a crash,
            // wait_timeout). It goes; a new one is taken, unless session
            // state lived there (then the session ends).
            if self.held[i].conn.io.quiet() {
                return Ok(i);
            }
            self.lose(i, "the server closed the connection between statements")
                .await
                .map_err(Failure::Fatal)?;
            self.shared.monitor.hurry();
        }
        let cur = self.cur.clone();
        let rt = &cur.rt;
        let Some(user) = rt.users.get(&self.user) else {
            return Err(Failure::Fatal(Error::Internal("user vanished".into())));
        };
        let srv = &rt.servers[server];
        let b = &rt.config.backend;
        let want = Want {
            key: PoolKey {
                user: user.backend_user.clone(),
                caps: self.backend_caps(),
                charset: self.login.charset,
            },
            prefer: self
                .affinity
                .iter()
                .find(|(s, _)| *s == server)
                .map(|(_, c)| *c),
            no_schema: self.state.wanted.schema.is_none(),
            limits: Limits {
                max: srv.max_connections,
                user_max: user.backend_max_connections,
                queue_max: b.queue_max,
            },
        };
        let pool = cur.pool(server).clone();
        // A pooled connection the server closed, a connect the server
        // refused as full: try again, a bounded number of times.
        for _ in 0..8 {
            let mut evicted = None;
            let got = match pool.try_acquire(&want, &mut evicted) {
                Ok(Some(g)) => Ok((g, None)),
                Err(r) => Err(r),
                Ok(None) => {
                    // About to wait: what the session holds and does not
                    // need goes back first (two sessions each waiting for
                    // what the other holds would wait it out).
                    self.release_held(super::leave::Release::Unpinned)
                        .await
                        .map_err(Failure::Fatal)?;
                    let interrupt = self.interrupt.clone();
                    self.observe_waiting(Some(crate::stats::Command::WaitingConnection));
                    let got = tokio::select! {
                        got = pool.acquire(&want, b.queue_timeout, &mut evicted) => got,
                        // KILL QUERY: the queue is left (a connection
                        // granted meanwhile goes to the next waiter).
                        _ = interrupt.after(self.interrupts_seen) => {
                            self.observe_waiting(None);
                            return Err(Failure::Client(super::kill::interrupted()));
                        }
                    };
                    self.observe_waiting(None);
                    got
                }
            };
            if let Some(c) = evicted {
                c.quit().await;
            }
            let (grant, waited) = match got {
                Ok(g) => g,
                Err(r) => return Err(Failure::Client(self.refused(&srv.name, r))),
            };
            if let Some(w) = waited {
                self.shared
                    .metrics
                    .pool_wait_seconds
                    .observe(w.as_secs_f64());
            }
            let conn = match grant {
                Grant::Conn(mut c) => {
                    if !c.io.quiet() {
                        debug!(server = %srv.name, "a pooled connection was closed by the server; dropped");
                        continue;
                    }
                    *c
                }
                Grant::Open(lease) => match self.open(server, &want.key, lease).await? {
                    Some(c) => c,
                    None => continue,
                },
            };
            self.held.push(Held {
                server,
                conn,
                statements: 0,
            });
            if !user.multiplexing {
                self.state.stick(server);
            }
            self.publish();
            return Ok(self.held.len() - 1);
        }
        Err(Failure::Client(router_err(
            9001,
            format!(
                "Causeway: cannot get a working connection to server '{}'",
                srv.name
            ),
        )))
    }

    fn refused(&self, server: &str, r: Refused) -> ErrPacket {
        match r {
            Refused::Backoff(wait) => {
                self.shared.metrics.error("no_backend");
                router_err(
                    9001,
                    format!(
                        "Causeway: server '{server}' is unreachable (retrying in {} ms)",
                        wait.as_millis()
                    ),
                )
            }
            Refused::QueueFull(n) => router_err(
                9004,
                format!(
                    "Causeway: every connection to server '{server}' is busy and {n} statements \
                     are already waiting (backend.queue_max)"
                ),
            ),
            Refused::Timeout(t) => {
                self.shared.metrics.pool_timeouts.inc();
                router_err(
                    9004,
                    format!(
                        "Causeway: no connection to server '{server}' became free within {} ms \
                         (backend.queue_timeout; the server's max_connections or the pool limits \
                         are reached)",
                        t.as_millis()
                    ),
                )
            }
        }
    }

    /// Opens a connection with room the pool gave (`lease`). `Ok(None)`:
    /// the server refused it as full (ERR 1040); its limit is learned and
    /// the caller waits for a connection instead.
    async fn open(
        &mut self,
        server: ServerId,
        key: &PoolKey,
        lease: crate::backend::pool::Lease,
    ) -> std::result::Result<Option<Conn>, Failure> {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(self.open_unboxed(server, key, lease)).await
    }

    async fn open_unboxed(
        &mut self,
        server: ServerId,
        key: &PoolKey,
        lease: crate::backend::pool::Lease,
    ) -> std::result::Result<Option<Conn>, Failure> {
        let cur = self.cur.clone();
        let rt = &cur.rt;
        let srv = &rt.servers[server];
        let Some(user) = rt.users.get(&self.user) else {
            return Err(Failure::Fatal(Error::Internal("user vanished".into())));
        };
        let caps = key.caps;
        let login = Login {
            user: Bytes::copy_from_slice(user.backend_user.as_bytes()),
            database: self.state.wanted.schema.clone(),
            capabilities: caps,
            connect_attrs: router_attrs(),
            ..self.login.clone()
        };
        let ep = &srv.endpoint;
        let attempt = async {
            let mut g = connect::connect(ep).await?;
            let tls = ep.tls.as_ref();
            connect::login(&mut g, &login, &user.backend_password, tls, ep.compression).await?;
            Ok::<_, Error>(g)
        };
        let res = tokio::time::timeout(ep.connect_timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(Error::backend_timeout("connect", ep.connect_timeout)));
        let pool = cur.pool(server);
        let g = match res {
            Ok(g) => g,
            Err(Error::BackendRefused(err)) if err.code == 1040 => {
                warn!(server = %srv.name, "the server refused a connection: too many connections; waiting for one of ours");
                pool.server_full(FULL_HOLD);
                return Ok(None);
            }
            // The router's own login was refused: the client's credentials
            // were right, so it is told the router's backend account failed
            // (in its own user's terms), and the operator reads it in the log.
            Err(Error::BackendRefused(err)) if backend_login_refused(err.code) => {
                self.shared.metrics.error("backend_login");
                warn!(server = %srv.name, user = %self.user, backend_user = %user.backend_user,
                    code = err.code, message = %String::from_utf8_lossy(&err.message),
                    "the server refused the router's backend login");
                return Err(Failure::Client(ErrPacket::new(
                    9007,
                    *b"28000",
                    format!(
                        "Causeway: server '{}' refused the router's login for user '{}' (backend \
                         account '{}'): {} ({}); the backend credentials in the router's \
                         configuration need fixing",
                        srv.name,
                        self.user,
                        user.backend_user,
                        String::from_utf8_lossy(&err.message),
                        err.code
                    ),
                )));
            }
            // The server answered and said no (unknown database, no access
            // to it): the client sees that ERR as it is.
            Err(Error::BackendRefused(err)) => {
                if err.code == 1049 && self.schema_unverified {
                    return Err(Failure::Fatal(Error::SessionLost(err)));
                }
                return Err(Failure::Client(err));
            }
            Err(e) => {
                pool.failed(rt.config.backend.connect_backoff);
                self.shared.metrics.backend_connect_errors.inc();
                if e.is_refused() {
                    // Nothing listens there: no need to wait for the monitor.
                    self.shared.monitor.saw_refused(&srv.name);
                }
                warn!(server = %srv.name, error = %e.report(), "backend connect failed");
                // TLS and protocol failures keep their MySQL codes (2026,
                // ...); the server's address stays in the log.
                let err = match &e {
                    Error::BackendConnect { .. } | Error::BackendIo(_) => None,
                    _ => e.client_err(&self.peer.ip().to_string()),
                };
                return Err(Failure::Client(err.unwrap_or_else(|| {
                    router_err(
                        9001,
                        format!("Causeway: cannot reach server '{}'", srv.name),
                    )
                })));
            }
        };
        pool.connected();
        self.shared.metrics.backend_opened.inc();
        let mut io = g.io;
        io.set_write_timeout(Some(self.shared.config.frontend.net_write_timeout));
        let gtids = self.gtid_track(server);
        let mut conn = Conn {
            id: crate::backend::pool::next_conn_id(),
            io,
            server: Arc::from(srv.name.as_str()),
            thread_id: g.greeting.connection_id,
            nonce: g.greeting.auth_plugin_data,
            key: key.clone(),
            state: replay::ConnState {
                schema: self.state.wanted.schema.clone(),
                multi_statements: caps.contains(CapabilityFlags::MULTI_STATEMENTS),
                gtids: GtidTrack::Off,
                login_collation: self.login.charset,
                ..Default::default()
            },
            trackers: false,
            stmts: StmtCache::default(),
            lease,
        };
        let sql = format!(
            "SET {ROUTER_TRACKERS}, session_track_gtids = {}",
            gtids.sql()
        );
        let limit = rt.config.backend.connect_timeout;
        match simple_query(&mut conn.io, caps, &sql, limit).await {
            Ok(_) => {
                conn.trackers = true;
                conn.state.gtids = gtids;
                if let Some(db) = &conn.state.schema {
                    self.shared.schema_seen(&conn.key.user, db);
                    self.schema_unverified = false;
                }
                Ok(Some(conn))
            }
            Err(e) => {
                warn!(server = %srv.name, error = %e.report(), "enabling session trackers failed");
                Err(Failure::Client(router_err(
                    9001,
                    format!(
                        "Causeway: server '{}' refused the session trackers the router needs: {}",
                        srv.name,
                        e.report()
                    ),
                )))
            }
        }
    }

    /// `session_track_gtids` a connection to `server` needs: OWN_GTID where
    /// writes are tracked for causal reads, or what the client asked for.
    fn gtid_track(&self, server: ServerId) -> GtidTrack {
        let router = if self.cur.rt.servers[server].track_gtids {
            GtidTrack::Own
        } else {
            GtidTrack::Off
        };
        router.max(self.state.client.gtids)
    }

    /// Brings connection `i` to the session's settings, and `LAST_INSERT_ID()`
    /// to the session's value when the statement reads it or may change it
    /// (`lid`). False when an ERR was sent to the client instead.
    pub(super) async fn sync(&mut self, i: usize, lid: Lid) -> Result<bool> {
        let lid = match (lid, self.last_insert_id_for(i)) {
            (Lid::Untouched, _) => None,
            (_, Ok(v)) => v,
            // Changing it does not need it; the value elsewhere stays.
            (Lid::MayChange, Err(())) => None,
            (Lid::Reads, Err(())) => {
                let err = router_err(
                    9005,
                    "Causeway: LAST_INSERT_ID() is unknown: the backend connection that had \
                     it broke before the router read it back",
                );
                self.refuse("last_insert_id", &err).await?;
                return Ok(false);
            }
        };
        match self.sync_conn(i, lid).await? {
            Ok(()) => Ok(true),
            Err(err) => {
                self.refuse("backend_failed", &err).await?;
                Ok(false)
            }
        }
    }

    /// [`Session::sync`] without the client: the ERR that stopped it.
    pub(super) async fn sync_conn(
        &mut self,
        i: usize,
        lid: Option<u64>,
    ) -> Result<std::result::Result<(), ErrPacket>> {
        let server = self.held[i].server;
        let gtids = self.gtid_track(server);
        let h = &self.held[i];
        let own = if self.state.uncaptured.is_empty() {
            Vec::new()
        } else {
            self.state.uncaptured_on(server)
        };
        let Some(mut r) = replay::replay(&self.state.wanted, &h.conn.state, lid, &own) else {
            return Ok(Err(router_err(
                1105,
                "Causeway: the connection has a default schema the session does not",
            )));
        };
        let in_txn = self.state.txn == super::state::Txn::Open(server);
        if in_txn {
            // Characteristics cannot change inside a transaction (ERR 1568).
            r.characteristics.clear();
        }
        // Only what differs: `session_track_gtids` cannot be set inside a
        // transaction (ERR 1766), the others can.
        let mut trackers = Vec::new();
        if !h.conn.trackers {
            trackers.push(ROUTER_TRACKERS.to_string());
        }
        if h.conn.state.gtids != gtids {
            if in_txn {
                debug!("session_track_gtids differs inside a transaction; left as it is");
            } else {
                trackers.push(format!("session_track_gtids = {}", gtids.sql()));
            }
        }
        if !trackers.is_empty() {
            let trackers = trackers.join(", ");
            r.set = Some(match r.set.take() {
                Some(set) => format!("SET {trackers}, {}", &set[4..]),
                None => format!("SET {trackers}"),
            });
        }
        if r.is_empty() {
            return Ok(Ok(()));
        }
        if self
            .shared
            .skip_replay_for_tests
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            // Only the router's own trackers (the tests need GTIDs).
            let trackers = format!("{ROUTER_TRACKERS}, session_track_gtids = {}", gtids.sql());
            r = replay::Replay {
                set: Some(format!("SET {trackers}")),
                ..Default::default()
            };
        }
        self.shared.metrics.replays.inc();
        let limit = self.cur.rt.config.backend.connect_timeout;
        let conn = &mut self.held[i].conn;
        let mut sent = 0;
        if let Some(db) = &r.init_db {
            let mut p = BytesMut::with_capacity(db.len() + 1);
            p.put_u8(Command::InitDb as u8);
            p.put_slice(db);
            conn.io.queue_packet(0, &p);
            sent += 1;
        }
        for sql in r.set.iter().chain(&r.characteristics) {
            // With CLIENT_QUERY_ATTRIBUTES a COM_QUERY carries an (empty)
            // attribute block: ComQuery writes it.
            let mut p = BytesMut::with_capacity(sql.len() + 3);
            ComQuery::new(Bytes::copy_from_slice(sql.as_bytes()))
                .encode(conn.key.caps, &mut p)
                .map_err(Error::BackendProtocol)?;
            conn.io.queue_packet(0, &p);
            sent += 1;
        }
        if let Some(on) = r.set_option {
            conn.io
                .queue_packet(0, &[Command::SetOption as u8, u8::from(!on), 0]);
            sent += 1;
        }
        let run = async {
            conn.io.flush().await?;
            let mut first_err = None;
            for _ in 0..sent {
                let p = conn.io.read_packet(1 << 20).await?;
                if p.payload.first() == Some(&0xff) && first_err.is_none() {
                    first_err = Some(
                        ErrPacket::decode(&p.payload)
                            .unwrap_or_else(|_| router_err(1105, "Causeway: replay failed")),
                    );
                }
            }
            Ok::<_, Error>(first_err)
        };
        let failed = match tokio::time::timeout(limit, run).await {
            Ok(Ok(None)) => None,
            Ok(Ok(Some(err))) => Some(err),
            Ok(Err(e)) => Some(router_err(
                9001,
                format!(
                    "Causeway: restoring the session's settings on server '{}': {}",
                    conn.server,
                    e.report()
                ),
            )),
            Err(_) => Some(router_err(
                9001,
                format!("Causeway: server '{}' did not answer", conn.server),
            )),
        };
        if let Some(err) = failed {
            // A schema dropped since the session chose it stays its schema
            // (each connection that needs it says so), unless it was never
            // seen to exist: then the login fails now.
            if err.code == 1049 && self.schema_unverified {
                return Err(Error::SessionLost(err));
            }
            // Its state is unknown now: it leaves the session, closed;
            // when it held the session's state, the session ends.
            let why = format!("restoring the session's settings failed: {}", err.code);
            self.lose(i, &why).await?;
            return Ok(Err(err));
        }
        let conn = &mut self.held[i].conn;
        conn.state.replayed(&self.state.wanted, &r, &own);
        if let (Some(_), Some(db)) = (&r.init_db, &conn.state.schema) {
            self.shared.schema_seen(&conn.key.user, db);
            self.schema_unverified = false;
        }
        conn.trackers = true;
        if !in_txn {
            conn.state.gtids = gtids;
        }
        if self.state.last_on(conn.id) {
            // Its ROW_COUNT() / FOUND_ROWS() are the replay's now.
            self.state.last.on = None;
        }
        Ok(Ok(()))
    }

    /// Folds a response into the session's state.
    pub(super) async fn after_statement(
        &mut self,
        i: usize,
        effects: &Effects<'_>,
        out: &super::forward::Outcome,
    ) -> Result<()> {
        let h = &mut self.held[i];
        h.statements += 1;
        let resp = Response {
            status: out.status,
            err: out.err,
            tracked: out.tracked.clone(),
            insert_id: out.insert_id,
        };
        let after = self
            .state
            .after(h.server, h.conn.id, &mut h.conn.state, effects, &resp);
        if after.restore_trackers {
            h.conn.trackers = false;
        }
        if let Some(st) = out.status {
            self.status = st;
        }
        self.active.store(0, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The schema named at login (or by COM_CHANGE_USER) exists: checked on
    /// a usable server of the user's cluster (a pooled connection already
    /// in that schema proves it without a round trip). No usable server:
    /// the first statement checks it.
    pub(super) async fn check_schema(&mut self) -> std::result::Result<(), Failure> {
        let known = match (&self.state.wanted.schema, self.cur.rt.users.get(&self.user)) {
            (Some(db), Some(u)) => self.shared.schema_known(&u.backend_user, db),
            _ => false,
        };
        if known {
            return Ok(());
        }
        let (writer, default) = self.user_groups();
        let reads = super::plan::groups_of(&*self.cur.rt, writer, default).reads;
        let mut tried = Vec::new();
        for g in [Some(default), Some(writer), reads].into_iter().flatten() {
            if tried.contains(&g) {
                continue;
            }
            tried.push(g);
            match self.in_group(g, crate::route::Why::Write).await {
                Ok((i, _)) => {
                    let res = self.sync_conn(i, None).await?;
                    if let Err(err) = res {
                        return if err.code == 1049 || err.code == 1044 {
                            Err(Failure::Client(err))
                        } else {
                            self.schema_unverified = true;
                            Ok(())
                        };
                    }
                    if let Some(db) = &self.held[i].conn.state.schema {
                        let user = self.held[i].conn.key.user.clone();
                        self.shared.schema_seen(&user, &db.clone());
                    }
                    self.release(i).await.map_err(Failure::Fatal)?;
                    return Ok(());
                }
                // Access denied, unknown schema from a new login: the client's answer.
                Err(Failure::Client(err))
                    if err.code != 9001 && err.code != 9002 && err.code != 9004 =>
                {
                    return Err(Failure::Client(err));
                }
                Err(Failure::Client(_)) => continue,
                Err(f) => return Err(f),
            }
        }
        self.schema_unverified = true;
        Ok(())
    }
}

/// The connection attributes of the router's own backend connections.
fn router_attrs() -> Vec<(Bytes, Bytes)> {
    vec![
        (
            Bytes::from_static(b"_client_name"),
            Bytes::from_static(b"causeway-router"),
        ),
        (
            Bytes::from_static(b"_client_version"),
            Bytes::from_static(env!("CARGO_PKG_VERSION").as_bytes()),
        ),
        (
            Bytes::from_static(b"program_name"),
            Bytes::from_static(b"causeway-router"),
        ),
    ]
}

/// The first held connection that has something to say (or closes)
/// while the session is idle, and what; never, when none does. Nothing may
/// arrive on a held connection between statements.
pub(super) async fn held_speaks(held: &mut [Held]) -> (usize, Result<Option<Chunk>>) {
    use std::future::Future;
    use std::task::Poll;
    if held.is_empty() {
        return std::future::pending().await;
    }
    let mut reads: Vec<_> = held
        .iter_mut()
        .enumerate()
        .map(|(k, h)| Box::pin(async move { (k, h.conn.io.next_chunk().await) }))
        .collect();
    std::future::poll_fn(|cx| {
        for r in reads.iter_mut() {
            if let Poll::Ready(out) = r.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
        }
        Poll::Pending
    })
    .await
}

/// MySQL errors that refuse a login itself (the account, not the request):
/// access denied, an authentication method the router cannot answer, an
/// expired password, a locked account.
fn backend_login_refused(code: u16) -> bool {
    matches!(code, 1045 | 1251 | 1862 | 3118)
}
