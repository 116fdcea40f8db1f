//! The session's driver: the thin I/O shell around the pure parts. For each
//! command: decode it once, plan where it runs ([`super::plan`]), get that
//! connection (held, or from the pool: idle, opened, or after a wait in the
//! queue), bring it to the session's settings ([`super::replay`]), forward,
//! stream the response back ([`causeway_wire::ResponseTracker`]), fold the
//! response into the session's state ([`super::state`]).
//!
//! ```text
//!            ┌────────────────────── idle: release unpinned connections after multiplex_delay ─┐
//!            v                                                                                   │
//! Idle ──command──> Plan ──> Connection ──> Replay ──> Forwarding ──response complete──> After ──┘
//!   │                 │         └─ the pool's queue full / timed out: ERR 9004
//!   │                 └─ Refuse: ERR (no usable server 9001, split brain 9002, hint 9003)
//!   ├─ COM_QUIT, EOF, idle_timeout, KILL CONNECTION ──> connections released or reset into the pool ──> closed
//!   ├─ KILL n / COM_PROCESS_KILL ──> kill via a separate backend connection ──> Idle
//!   ├─ COM_PING ──> answered by the router ──> Idle
//!   ├─ COM_RESET_CONNECTION ──> pinned connections reset, state forgotten ──> Idle
//!   └─ COM_CHANGE_USER ──> re-authenticated, connections given back, state forgotten ──> Idle
//! ```
//!
//! Memory per session is bounded by one 16 MiB chunk plus the socket
//! buffers, whatever the result size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use causeway_wire::compress::{looks_like_frame, Algorithm};
use causeway_wire::{CapabilityFlags, Chunk, ErrPacket, OkPacket, StatusFlags};
use tracing::{debug, info, warn};

use super::causal::Causal;
use super::command::{self, Cmd, StmtOp};
use super::conns::Held;
use super::leave::Release;
use super::prepared::Prepared;
use super::replay::Wanted;
use super::state::{ConnId, LastInsertId, PinReason, SessionState};
use crate::backend::connect::Login;
use crate::error::{Error, Result};
use crate::frontend::handshake::{send_err, Established};
use crate::ids::{GroupId, ServerId};
use crate::io::PacketIo;
use crate::shared::{Current, SessionInfo, Shared};

/// Why no connection could be had.
#[derive(Debug)]
pub(super) enum Failure {
    /// An ERR for the client; the session goes on.
    Client(ErrPacket),
    /// The session cannot go on.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

/// One session in its command phase.
#[derive(Debug)]
pub struct Session<'a> {
    pub(super) shared: &'a Shared,
    /// The configuration in force for the current command.
    pub(super) cur: Arc<Current>,
    pub(super) client: PacketIo,
    pub(super) caps: CapabilityFlags,
    pub(super) login: Login,
    pub(super) user: String,
    pub(super) peer: SocketAddr,
    pub(super) id: u32,
    /// Sequence id of the next packet to the client within the current command.
    pub(super) client_seq: u8,
    /// What the session is made of.
    pub(super) state: SessionState,
    /// Connections the session holds now.
    pub(super) held: Vec<Held>,
    /// Connections it gave back, which it may get back in the state it
    /// left them.
    pub(super) affinity: Vec<(ServerId, ConnId)>,
    pub(super) stmts: crate::ids::FastMap<u32, Prepared>,
    pub(super) next_stmt: u32,
    pub(super) turn: u64,
    pub(super) kill: Arc<tokio::sync::Notify>,
    /// KILL QUERY while no backend runs the statement (it waits for a
    /// connection, a replica or a writer).
    pub(super) interrupt: Arc<crate::shared::Interrupt>,
    /// [`crate::shared::Interrupt::count`] when the command began.
    pub(super) interrupts_seen: u64,
    /// The command is `SHOW PROCESSLIST`: the row of the backend
    /// connection it runs on shows the session's id.
    pub(super) own_row: bool,
    pub(super) causal: Causal,
    /// Status flags of the last response (for OKs the router makes).
    pub(super) status: StatusFlags,
    /// The command's packet has chunks (over 16 MiB) not read yet: nothing
    /// forwarded them. They are skipped before the router answers, and in
    /// any case before the next command.
    pub(super) unread: bool,
    /// The command allows no reply (COM_STMT_SEND_LONG_DATA): an ERR the
    /// router would send is kept in `withheld` instead.
    pub(super) silent: bool,
    pub(super) withheld: Option<ErrPacket>,
    /// Pin reasons counted in the metrics for this session now.
    pub(super) pinned_counted: Vec<PinReason>,
    /// The backend thread of the statement running now, 0 between
    /// statements (KILL QUERY finds it here).
    pub(super) active: Arc<std::sync::atomic::AtomicU32>,
    /// The backend threads it holds (KILL's view of them).
    pub(super) threads: crate::shared::Threads,
    /// The timer of the idle wait (giving connections back, idle timeout).
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The schema named at login could not be checked (no usable server):
    /// if the first connection says it does not exist, the login fails
    /// then, as MySQL's would have.
    pub(super) schema_unverified: bool,
    /// The compressed protocol the client negotiated, in force from the
    /// login's OK on.
    compression: Option<Algorithm>,
    /// The current statement's backend timeout (rules, user).
    pub(super) backend_timeout: Option<Duration>,
    /// Until when the current command may wait for a writer (its
    /// cluster's failover window, from its first wait).
    pub(super) wait_until: Option<Instant>,
    /// The writer refused the current EXECUTE for read_only (it ran
    /// nothing): it may run again until then.
    pub(super) refused_until: Option<Instant>,
    /// The current EXECUTE, a read, lost its connection to this server
    /// before it answered anything: it may run once more elsewhere.
    pub(super) read_broke: Option<ServerId>,
    /// The current EXECUTE ran once more already (see `read_broke`).
    pub(super) read_retried: bool,
    /// What of the current command's response reached the client:
    /// nothing, whole packets, or part of one (a packet over 16 MiB).
    pub(super) replied: Replied,
    /// What the current statement did, for the statistics.
    pub(super) obs: super::observe::Observed,
    /// What the session is doing now (the processlist).
    pub(super) activity: Arc<crate::stats::Activity>,
}

/// How much of a command's response the client got (what may follow when
/// the backend connection breaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Replied {
    /// Nothing: a read may run again elsewhere.
    #[default]
    Nothing,
    /// Whole packets: an ERR may end the response.
    Packets,
    /// Part of a packet, or a LOCAL INFILE exchange begun: only closing
    /// the connection is left.
    Tangled,
}

impl<'a> Session<'a> {
    /// Takes over an authenticated client.
    pub fn new(
        est: Established,
        peer: SocketAddr,
        id: u32,
        shared: &'a Shared,
        kill: Arc<tokio::sync::Notify>,
    ) -> Self {
        let mut client = est.client;
        let activity = super::observe::activity(peer, client.tls, est.login.database.clone());
        client.set_write_timeout(Some(shared.config.frontend.net_write_timeout));
        client.set_read_limits(
            shared.config.frontend.net_read_timeout,
            shared.client_buffers.clone(),
        );
        let wanted = Wanted {
            schema: est.login.database.clone(),
            multi_statements: est.caps.contains(CapabilityFlags::MULTI_STATEMENTS),
            ..Wanted::default()
        };
        Self {
            shared,
            cur: shared.current(),
            client,
            caps: est.caps,
            login: est.login,
            user: est.user,
            peer,
            id,
            client_seq: est.seq,
            state: SessionState::new(wanted),
            held: Vec::new(),
            affinity: Vec::new(),
            stmts: Default::default(),
            next_stmt: 1,
            turn: u64::from(id),
            kill,
            interrupt: Arc::default(),
            interrupts_seen: 0,
            own_row: false,
            causal: Causal::default(),
            status: StatusFlags::AUTOCOMMIT,
            unread: false,
            replied: Replied::Nothing,
            backend_timeout: None,
            wait_until: None,
            refused_until: None,
            read_broke: None,
            read_retried: false,
            silent: false,
            withheld: None,
            pinned_counted: Vec::new(),
            active: Arc::default(),
            threads: Arc::default(),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            schema_unverified: false,
            compression: est.compression,
            obs: Default::default(),
            activity,
        }
    }

    /// Answers the client's login: checks the schema it named (on a usable
    /// server of its cluster, ERR 1049 like MySQL when it does not exist),
    /// then OK. No backend is needed when no schema was named, nor when no
    /// server is usable (the schema is then checked by the first statement).
    /// Returns false when the login was refused (the session is over).
    pub async fn start(&mut self) -> Result<bool> {
        self.register();
        if self.state.wanted.schema.is_some() {
            match self.check_schema().await {
                Ok(()) => {}
                Err(Failure::Client(err)) => {
                    self.send_client_err(&err).await?;
                    self.close().await;
                    return Ok(false);
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
        let mut ok = BytesMut::new();
        OkPacket {
            status: StatusFlags::AUTOCOMMIT,
            ..OkPacket::default()
        }
        .encode(self.caps, &mut ok);
        let seq = self.client_seq;
        self.client.write_packet(seq, &ok).await?;
        if let Some(a) = self.compression {
            let max = self.shared.config.frontend.max_packet_size;
            self.client.start_compression(a, max);
        }
        Ok(true)
    }

    /// Relays commands until the client quits or something fails.
    pub async fn run(&mut self) -> Result<()> {
        // KILL CONNECTION from another session ends this one at once,
        // whatever it is doing: idle (next_command) or in a command (its
        // work is dropped, never given back to a pool), as MySQL does. One
        // waiter for the session's life, not one per command.
        let kill = self.kill.clone();
        let mut killed = std::pin::pin!(kill.notified());
        loop {
            self.client.expect_sequence(Some(0));
            self.client_seq = 1;
            let first = match self.next_command(killed.as_mut()).await? {
                Some(c) => c,
                None => return Ok(()),
            };
            // The configuration in force when the command arrived (a reload
            // applies from the next command on).
            self.refresh().await?;
            self.wait_until = None;
            self.backend_timeout = None;
            self.shared.metrics.commands.inc();
            let Some(cmd) = command::decode(&first, self.caps) else {
                return Err(Error::ClientUnexpected("empty command packet"));
            };
            let (first, cmd) = command::with_session_id(first, cmd, self.id);
            self.interrupts_seen = self.interrupt.count();
            // Biased, the kill first: a client whose commands never wait
            // (pipelined) is still seen to be killed.
            let goes_on = tokio::select! {
                biased;
                _ = killed.as_mut() => {
                    self.killed().await;
                    return Ok(());
                }
                r = self.dispatch(first, cmd) => r?,
            };
            if !goes_on {
                return Ok(());
            }
            self.skip_rest().await?;
            self.active.store(0, std::sync::atomic::Ordering::Relaxed);
            // Connections others wait for go back now.
            self.release_held(Release::Awaited).await?;
            self.client.shrink();
        }
    }

    /// Serves one command. False: the session is over.
    async fn dispatch(&mut self, first: Chunk, cmd: Cmd) -> Result<bool> {
        let started = Instant::now();
        self.causal.writer_read = None;
        self.unread = first.more;
        self.own_row =
            matches!(&cmd, Cmd::Query { sql } if super::connid::is_show_processlist(sql));
        match cmd {
            Cmd::Quit => {
                self.close().await;
                return Ok(false);
            }
            Cmd::Kill(target) => {
                if !self.kill(target).await? {
                    return Ok(false);
                }
            }
            // Like MySQL: an ERR, and the session goes on.
            Cmd::BadKill => {
                let err = ErrPacket::new(1835, *b"HY000", "Malformed communication packet.");
                self.send_client_err(&err).await?;
            }
            Cmd::UntranslatableKill => self.refuse_kill().await?,
            Cmd::Query { sql } => {
                self.observe_begin(Some(sql.clone()), started);
                self.query(first, &sql).await?;
                self.observe_end();
            }
            Cmd::Prepare => self.prepare(first).await?,
            Cmd::Stmt(op, id) => {
                if op == StmtOp::Execute {
                    self.observe_execute(id, started);
                }
                self.statement(first, op, id).await?;
                self.observe_end();
            }
            Cmd::ChangeUser => {
                if !self.change_user(first).await? {
                    return Ok(false);
                }
            }
            Cmd::Ping if self.held.is_empty() => self.local_ok().await?,
            Cmd::ResetConnection => self.reset_connection(first).await?,
            Cmd::InitDb => self.init_db(first).await?,
            Cmd::SetOption(on) => self.set_option(first, on).await?,
            Cmd::Ping | Cmd::Other => self.on_home(first).await?,
        }
        Ok(true)
    }

    /// Killed (KILL CONNECTION) in the middle of a command: a statement
    /// running on a backend is killed there too (its connection is
    /// dropped, so the server would otherwise run it to its end), every
    /// connection is closed, and so is the client's, with no answer: the
    /// client sees the connection lost, as with MySQL.
    async fn killed(&mut self) {
        info!("killed during a command");
        let running = self.active.swap(0, std::sync::atomic::Ordering::Relaxed);
        let on = self.held.iter().position(|h| h.conn.thread_id == running);
        if let Some(i) = on.filter(|_| running != 0) {
            self.kill_abandoned(i);
        }
        self.held.clear();
        self.count_pins();
        self.client.shutdown().await;
    }

    /// Kills, in the background, the statement held connection `i` runs:
    /// the session gives up on it and drops the connection, but the server
    /// would run it to its end.
    pub(super) fn kill_abandoned(&self, i: usize) {
        let rt = &self.cur.rt;
        if let Some(u) = rt.users.get(&self.user) {
            super::kill::kill_abandoned(
                rt.servers[self.held[i].server].endpoint.clone(),
                u.backend_user.clone(),
                u.backend_password.clone(),
                self.held[i].conn.thread_id,
            );
        }
    }

    /// Waits for the client's next command, giving unpinned connections
    /// back to their pools once the session has been idle for
    /// `multiplex_delay`. `None`: the session is over.
    /// Whether a command read on an uncompressed client leg is really a
    /// compressed frame: a client that compresses though compression was not
    /// negotiated (it would wait forever for compressed answers).
    fn uncompressed_frame(&self, c: &Chunk) -> bool {
        self.client.compression().is_none() && looks_like_frame(&c.payload)
    }

    async fn next_command(
        &mut self,
        mut killed: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Result<Option<Chunk>> {
        let idle = self.idle_timeout();
        let now = tokio::time::Instant::now();
        let deadline = now + idle;
        let releasable = self.held.iter().any(|h| !self.state.pinned(h.server));
        let mut release_at = releasable.then(|| now + self.cur.rt.config.backend.multiplex_delay);
        // Held connections are watched once the session has idled a
        // moment: a busy session pays nothing for it, and a server closing
        // an idle connection is seen within WATCH_AFTER.
        let mut watch_at = (!self.held.is_empty()).then(|| now + WATCH_AFTER);
        loop {
            // One timer, moved rather than made anew for every command.
            let wake = [release_at, watch_at]
                .into_iter()
                .flatten()
                .fold(deadline, |a, b| a.min(b));
            self.timer.as_mut().reset(wake);
            let watching = watch_at.is_none() && !self.held.is_empty();
            let next = tokio::select! {
                biased;
                _ = killed.as_mut() => {
                    // As MySQL: an idle session killed is closed, unanswered.
                    info!("killed");
                    self.close().await;
                    return Ok(None);
                }
                r = self.client.next_chunk() => Some(r),
                (k, said) = super::conns::held_speaks(&mut self.held), if watching => {
                    if self.held_spoke(k, said).await? {
                        continue;
                    }
                    return Ok(None);
                }
                _ = &mut self.timer => None,
            };
            match next {
                None if watch_at.is_some_and(|w| w <= tokio::time::Instant::now()) => {
                    watch_at = None;
                }
                None if release_at.is_some_and(|r| r <= tokio::time::Instant::now()) => {
                    release_at = None;
                    self.release_held(Release::Idle).await?;
                }
                None if tokio::time::Instant::now() >= deadline => {
                    info!(timeout = ?idle, "idle timeout; closing");
                    let err = ErrPacket::new(
                        4031,
                        *b"HY000",
                        "The client was disconnected by the server because of inactivity.",
                    );
                    // As MySQL: sequence 0, no command is being answered.
                    self.client_seq = 0;
                    let _ = self.send_err_of("idle_timeout", &err).await;
                    self.close().await;
                    return Ok(None);
                }
                None => {}
                Some(chunk) => match chunk? {
                    Some(c) if c.first && self.uncompressed_frame(&c) => {
                        warn!("compressed frame from a client that did not negotiate compression");
                        // MySQL answers 1047 (the frame's first byte taken
                        // for a command); the router also closes, as the
                        // client cannot read an uncompressed answer.
                        return Err(Error::ClientUnexpected(
                            "compressed frame without compression negotiated",
                        ));
                    }
                    Some(c) => return Ok(Some(c)),
                    None => {
                        debug!("client closed the connection");
                        self.close().await;
                        return Ok(None);
                    }
                },
            }
        }
    }

    /// How long the session may stay idle: `frontend.idle_timeout`, or
    /// less when the client set its own `wait_timeout`, as MySQL does.
    fn idle_timeout(&self) -> Duration {
        let configured = self.shared.config.frontend.idle_timeout;
        self.state
            .wanted
            .vars
            .get(b"wait_timeout")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok())
            .filter(|&secs| secs > 0)
            .map_or(configured, |secs| configured.min(Duration::from_secs(secs)))
    }

    /// Held connection `k` said something (or closed) while the session
    /// was idle: its server closed it (`wait_timeout`, a shutdown, KILL).
    /// It goes; when session state lived there the session ends as a
    /// direct client's would: the server's ERR (4031 ...) is forwarded as
    /// it came, then the client is closed. True: the session goes on.
    async fn held_spoke(&mut self, k: usize, said: Result<Option<Chunk>>) -> Result<bool> {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(self.held_spoke_unboxed(k, said)).await
    }

    async fn held_spoke_unboxed(&mut self, k: usize, said: Result<Option<Chunk>>) -> Result<bool> {
        let server = self.held[k].conn.server.clone();
        let err = match said {
            Ok(Some(c)) if c.payload.first() == Some(&0xff) && !c.more => Some(c),
            _ => None,
        };
        let why = match &err {
            Some(c) => format!(
                "the server sent ERR {} and closed it",
                ErrPacket::decode(&c.payload).map_or(0, |e| e.code)
            ),
            None => "the server closed it".to_string(),
        };
        debug!(server = %server, why, "a held connection spoke while the session was idle");
        if self.lose(k, &why).await.is_ok() {
            return Ok(true);
        }
        if let Some(c) = err {
            self.observe_backend_err(&c.payload);
            self.client.queue_chunk(&c);
            let _ = self.client.flush().await;
        }
        self.close().await;
        Ok(false)
    }

    /// Takes the configuration in force; when it is a new one (a reload),
    /// what the session holds is moved to the new ids by server name.
    pub(super) async fn refresh(&mut self) -> Result<()> {
        let next = self.shared.current();
        if Arc::ptr_eq(&next.rt, &self.cur.rt) {
            let moved = !Arc::ptr_eq(&next, &self.cur);
            self.cur = next;
            if moved {
                self.leave_out_of_service().await?;
            }
            return Ok(());
        }
        let old = std::mem::replace(&mut self.cur, next);
        let new = self.cur.clone();
        let map = |s: ServerId| new.rt.server_named(&old.rt.servers[s].name);
        let map_group = |g: GroupId| new.rt.group_named(&old.rt.groups[g].name);
        // A server the configuration no longer has: its connection ends;
        // when the session's state lived there, the session too.
        let mut lost = None;
        let mut k = 0;
        while k < self.held.len() {
            if map(self.held[k].server).is_some() {
                k += 1;
                continue;
            }
            let name = old.rt.servers[self.held[k].server].name.clone();
            let why = format!("server '{name}' was removed from the configuration");
            if let Err(e) = self.lose(k, &why).await {
                lost.get_or_insert(e);
            }
        }
        for h in &mut self.held {
            if let Some(s) = map(h.server) {
                h.server = s;
            }
        }
        self.state.remap(&map);
        self.causal.remap(&map, &map_group);
        self.obs.remap(&map, &map_group);
        self.affinity.clear();
        self.publish();
        lost.map_or(Ok(()), Err)
    }

    /// Reads and drops the rest of a command over 16 MiB that was not
    /// forwarded (refused, or without a target), so that its chunks are not
    /// taken for commands; a reply then follows its last chunk's sequence.
    pub(super) async fn skip_rest(&mut self) -> Result<()> {
        let limit = self.shared.config.frontend.net_read_timeout;
        while self.unread {
            let c = next_chunk_of_command(&mut self.client, limit).await?;
            self.client_seq = c.seq.wrapping_add(1);
            self.unread = c.more;
        }
        Ok(())
    }

    /// After a failure: an ERR to the client unless its own connection
    /// broke, then close every leg.
    pub async fn fail(&mut self, e: &Error) {
        send_err(&mut self.client, self.client_seq, e, self.peer).await;
        self.observe_failure(e);
        self.held.clear();
        self.count_pins();
    }

    /// Ends the session: connections are given back (unpinned), or reset
    /// into the pool (pinned), or closed.
    pub(super) async fn close(&mut self) {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(async {
            self.close_all().await;
            self.count_pins();
            self.client.shutdown().await;
        })
        .await
    }

    pub(super) async fn send_client_err(&mut self, err: &ErrPacket) -> Result<()> {
        self.send_err_of("router", err).await
    }

    /// Sends an ERR the router made, of `kind` (its name in the error
    /// statistics).
    async fn send_err_of(&mut self, kind: &'static str, err: &ErrPacket) -> Result<()> {
        self.skip_rest().await?;
        if self.silent {
            self.withheld = Some(err.clone());
            return Ok(());
        }
        self.observe_err(err, kind);
        let mut buf = BytesMut::new();
        err.encode(self.caps, &mut buf);
        self.client.write_packet(self.client_seq, &buf).await
    }

    /// Sends a router-made ERR for a command and counts it.
    pub(super) async fn refuse(&mut self, kind: &'static str, err: &ErrPacket) -> Result<()> {
        self.shared.metrics.error(kind);
        debug!(
            kind,
            code = err.code,
            "refused: {}",
            String::from_utf8_lossy(&err.message)
        );
        self.send_err_of(kind, err).await
    }

    /// An OK the router answers itself (COM_PING, a token, ...).
    pub(super) async fn local_ok(&mut self) -> Result<()> {
        let mut buf = BytesMut::new();
        OkPacket {
            status: self.status & (StatusFlags::IN_TRANS | StatusFlags::AUTOCOMMIT),
            ..OkPacket::default()
        }
        .encode(self.caps, &mut buf);
        let seq = self.client_seq;
        self.client.write_packet(seq, &buf).await
    }

    /// A KILL the router cannot translate to the backend's thread id (in a
    /// multi-statement, a prepared statement, ...): forwarded, the backend
    /// would kill its own thread with the router id's number.
    async fn refuse_kill(&mut self) -> Result<()> {
        info!("refused a KILL the router cannot translate");
        let err = ErrPacket::new(
            1235,
            *b"42000",
            "This version of MySQL doesn't yet support 'KILL through the router except as a \
             statement of its own: KILL [QUERY | CONNECTION] <id>'",
        );
        self.send_client_err(&err).await
    }

    /// Registers the session for KILL (once; again after COM_CHANGE_USER).
    pub(super) fn register(&self) {
        if let Ok(mut s) = self.shared.sessions.lock() {
            s.insert(
                self.id,
                SessionInfo {
                    user: self.user.clone(),
                    threads: self.threads.clone(),
                    active: self.active.clone(),
                    kill: self.kill.clone(),
                    interrupt: self.interrupt.clone(),
                    activity: self.activity.clone(),
                },
            );
        }
        self.publish();
    }

    /// Tells KILL where this session's backend threads are now.
    pub(super) fn publish(&self) {
        if let Ok(mut t) = self.threads.lock() {
            t.clear();
            t.extend(
                self.held
                    .iter()
                    .map(|h| (h.conn.server.clone(), h.conn.thread_id)),
            );
        }
    }

    /// A statement needs `LAST_INSERT_ID()`: its value to replay, when the
    /// statement runs on connection `i` and the value is not there.
    pub(super) fn last_insert_id_for(&self, i: usize) -> std::result::Result<Option<u64>, ()> {
        match self.state.last_insert_id {
            LastInsertId::Known(v) => Ok(Some(v)),
            LastInsertId::On(_, c) if c == self.held[i].conn.id => Ok(None),
            LastInsertId::On(..) | LastInsertId::Lost => Err(()),
        }
    }
}

/// How long a session idles before the connections it holds are watched
/// for their server closing them.
const WATCH_AFTER: Duration = Duration::from_millis(200);

/// The next chunk of a client command over 16 MiB, within `limit`.
pub(super) async fn next_chunk_of_command(client: &mut PacketIo, limit: Duration) -> Result<Chunk> {
    tokio::time::timeout(limit, client.next_chunk())
        .await
        .map_err(|_| Error::ClientReadTimeout("the rest of a command"))??
        .ok_or(Error::ClientUnexpected(
            "connection closed inside a command",
        ))
}
