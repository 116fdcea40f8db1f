//! The command phase: each client command is routed ([`crate::route`]) to
//! one of the session's backend connections, opened lazily (from the pool
//! or by a new login) and brought to the session's state first; the
//! backend's response is streamed back chunk by chunk while a
//! [`ResponseTracker`] says when it is complete. Memory per session is
//! bounded by one 16 MiB chunk plus the socket buffers, whatever the
//! result size.
//!
//! ```text
//! Idle --command--> route --> [open: pool | connect+login] --> [sync: USE, replayed SETs]
//!      --> Forwarding --response complete--> effects (txn from status flags, pins, schema) --> Idle
//!                   Forwarding --LOCAL INFILE request--> client file --> Forwarding
//! Idle --COM_QUIT | EOF | idle_timeout | KILL CONNECTION--> connections reset into the pool, closed
//! Idle --KILL n / COM_PROCESS_KILL--> kill via a separate backend connection --> Idle
//! Idle --other KILL (multi-statement, prepared)--> ERR 1235 --> Idle
//! Idle --no usable server / split brain--> ERR 9001 / 9002 --> Idle
//! Idle --COM_CHANGE_USER--> re-authenticate (router users), fresh connections --> Idle
//! ```
//!
//! Session state a second connection needs is kept here: the default schema
//! (`USE`, COM_INIT_DB, login) and every successful `SET` of session
//! variables, replayed in order on a connection before its first statement.
//! The transaction state comes from the status flags of each response
//! (`SERVER_STATUS_IN_TRANS`, `SERVER_STATUS_AUTOCOMMIT`), not from guessing
//! at statements: while either says a transaction is open, everything goes to
//! that connection.
//!
//! Prepared statements keep client-visible ids of the router's own; each is
//! prepared lazily on whichever connection an EXECUTE is routed to, the
//! parameter types of the last EXECUTE are supplied to a connection that has
//! not seen them, and CLOSE reaches every connection that holds it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use causeway_gtid::GtidSet;
use causeway_wire::command::{ComChangeUser, ComQuery};
use causeway_wire::flags::Command;
use causeway_wire::response::{PacketRole, ResponseTracker};
use causeway_wire::{CapabilityFlags, Chunk, ErrPacket, OkPacket, StatusFlags};
use tracing::{debug, info, warn};

use crate::backend::connect::{self, Login};
use crate::backend::pool::{Conn, Refused};
use crate::backend::query::simple_query;
use crate::classify::{self, Classified, Kind};
use crate::config::Role;
use crate::error::{Error, Result};
use crate::frontend::auth::{self, Attempt};
use crate::frontend::handshake::{send_err, Established};
use crate::io::PacketIo;
use crate::route::{self, Groups, Held, Steer, Target, Why};
use crate::rules::{Hints, RuleInput};
use crate::runtime::{GroupIdx, Runtime, ServerIdx};
use crate::session::kill::{self, KillTarget};
use crate::{SessionInfo, Shared};

mod causal;
mod prepared;

use causal::Ask;
use prepared::Prepared;

/// What a forwarded command's response was.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    status: Option<StatusFlags>,
    err: bool,
    prepared: Option<(u32, u16)>,
}

/// A client-visible error the router makes itself.
fn router_err(code: u16, msg: impl Into<String>) -> ErrPacket {
    ErrPacket::new(code, *b"HY000", msg.into())
}

/// One session in its command phase.
#[derive(Debug)]
pub struct Session<'a> {
    client: PacketIo,
    caps: CapabilityFlags,
    login: Login,
    user: String,
    peer: SocketAddr,
    id: u32,
    shared: &'a Shared,
    /// Sequence id of the next packet to the client within the current command.
    client_seq: u8,
    rt: Arc<Runtime>,
    conns: Vec<Conn>,
    schema: Option<Bytes>,
    replay: Vec<Bytes>,
    txn: Option<String>,
    last: Option<String>,
    vars: Option<String>,
    locks: Option<String>,
    temp: Option<String>,
    temp_tables: HashSet<String>,
    stmts: HashMap<u32, Prepared>,
    next_stmt: u32,
    turn: u64,
    kill: Arc<tokio::sync::Notify>,
    /// GTIDs of the session's writes, by writer hostgroup name.
    needed: HashMap<String, GtidSet>,
    /// By writer hostgroup name: when the session last wrote there, and
    /// the server that returned the GTIDs.
    wrote_at: HashMap<String, (Instant, String)>,
    /// A causal read sent to the writer: its server, and when the statement
    /// was sent, to measure what such a read costs (see `Views::read_took`).
    writer_read: Option<(String, Option<Instant>)>,
    /// `SET @causeway_min_gtid`: GTIDs every causal read must see.
    token: Option<GtidSet>,
    /// The client's own `session_track_gtids` (OWN_GTID, ALL_GTIDS), when
    /// it set one: it then gets GTIDs in OK packets as MySQL sends them.
    client_track: Option<String>,
    /// Status flags of the last response (for OKs the router makes).
    status: StatusFlags,
    /// The command's packet has chunks (over 16 MiB) not read yet: nothing
    /// forwarded them. They are skipped before the router answers, and in
    /// any case before the next command.
    unread: bool,
    /// The command allows no reply (COM_STMT_SEND_LONG_DATA): an ERR the
    /// router would send is kept in `withheld` instead.
    silent: bool,
    withheld: Option<ErrPacket>,
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
        client.set_write_timeout(Some(shared.config.frontend.net_write_timeout));
        Self {
            client,
            caps: est.caps,
            schema: est.login.database.clone(),
            login: est.login,
            user: est.user,
            peer,
            id,
            shared,
            client_seq: est.seq,
            rt: shared.runtime(),
            conns: Vec::new(),
            replay: Vec::new(),
            txn: None,
            last: None,
            vars: None,
            locks: None,
            temp: None,
            temp_tables: HashSet::new(),
            stmts: HashMap::new(),
            next_stmt: 1,
            turn: u64::from(id),
            kill,
            needed: HashMap::new(),
            wrote_at: HashMap::new(),
            writer_read: None,
            token: None,
            client_track: None,
            status: StatusFlags::AUTOCOMMIT,
            unread: false,
            silent: false,
            withheld: None,
        }
    }

    /// Opens the first backend connection (in the user's default hostgroup)
    /// and answers the client's login with OK, or with the backend's ERR
    /// (then the session is over: returns false).
    pub async fn start(&mut self) -> Result<bool> {
        let group = match self.rt.users.get(&self.user) {
            Some(u) => u.default_group,
            None => return Err(Error::Internal("user vanished".into())),
        };
        match self.in_group(group, false).await {
            Ok(i) => {
                if let Err(err) = self.sync(i).await {
                    self.send_client_err(&err).await?;
                    self.close().await;
                    return Ok(false);
                }
                self.last = Some(self.conns[i].server.clone());
                let mut ok = BytesMut::new();
                OkPacket {
                    status: StatusFlags::AUTOCOMMIT,
                    ..OkPacket::default()
                }
                .encode(self.caps, &mut ok);
                let seq = self.client_seq;
                self.client.write_packet(seq, &ok).await?;
                self.publish();
                Ok(true)
            }
            Err(Failure::Client(err)) => {
                self.send_client_err(&err).await?;
                self.close().await;
                Ok(false)
            }
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    /// Relays commands until the client quits or something fails.
    pub async fn run(&mut self) -> Result<()> {
        loop {
            self.client.expect_sequence(Some(0));
            self.client_seq = 1;
            let idle = self.shared.config.frontend.idle_timeout;
            let next = tokio::select! {
                r = tokio::time::timeout(idle, self.client.next_chunk()) => r,
                _ = self.kill.notified() => {
                    info!("killed");
                    let err = router_err(1317, "Query execution was interrupted");
                    let _ = self.send_client_err(&err).await;
                    self.close().await;
                    return Ok(());
                }
            };
            let first = match next {
                Err(_) => {
                    info!(timeout = ?idle, "idle timeout; closing");
                    let err = ErrPacket::new(
                        4031,
                        *b"HY000",
                        "The client was disconnected by the server because of inactivity.",
                    );
                    let _ = self.send_client_err(&err).await;
                    self.close().await;
                    return Ok(());
                }
                Ok(chunk) => match chunk? {
                    Some(c) => c,
                    None => {
                        debug!("client closed the connection");
                        self.close().await;
                        return Ok(());
                    }
                },
            };
            // The configuration in force when the command arrived (a reload
            // applies from the next command on).
            self.rt = self.shared.runtime();
            self.shared.metrics.commands.inc();
            let Some(&command) = first.payload.first() else {
                return Err(Error::ClientUnexpected("empty command packet"));
            };
            let started = Instant::now();
            self.writer_read = None;
            let whole = !first.more;
            self.unread = first.more;
            match Command::from_u8(command) {
                Some(Command::Quit) => {
                    self.close().await;
                    return Ok(());
                }
                Some(Command::ProcessKill) if whole => {
                    let id = causeway_wire::buf::Reader::new(&first.payload[1..])
                        .u32("connection id")
                        .ok();
                    match id {
                        Some(id) => {
                            if !self.kill(KillTarget::Connection(id)).await? {
                                return Ok(());
                            }
                        }
                        // Like MySQL: an ERR, and the session goes on.
                        None => {
                            let err =
                                ErrPacket::new(1835, *b"HY000", "Malformed communication packet.");
                            self.send_client_err(&err).await?;
                        }
                    }
                }
                Some(Command::Query) => {
                    let query = whole
                        .then(|| ComQuery::decode(&first.payload, self.caps).ok())
                        .flatten();
                    let sql = query.as_ref().map_or(&first.payload[1..], |q| &q.query[..]);
                    match kill::parse(sql) {
                        Some(target) if whole => {
                            if !self.kill(target).await? {
                                return Ok(());
                            }
                        }
                        _ if kill::mentions_kill(sql) => self.refuse_kill().await?,
                        _ => {
                            let sql = Bytes::copy_from_slice(sql);
                            self.query(first, &sql).await?;
                            self.shared
                                .metrics
                                .query_seconds
                                .observe(started.elapsed().as_secs_f64());
                        }
                    }
                }
                Some(Command::StmtPrepare) if whole => {
                    if kill::mentions_kill(&first.payload[1..]) {
                        self.refuse_kill().await?;
                    } else {
                        self.prepare(first).await?;
                    }
                }
                Some(
                    Command::StmtExecute
                    | Command::StmtSendLongData
                    | Command::StmtFetch
                    | Command::StmtReset
                    | Command::StmtClose,
                ) if first.payload.len() >= 5 => {
                    self.statement(first).await?;
                    if command == Command::StmtExecute as u8 {
                        self.shared
                            .metrics
                            .query_seconds
                            .observe(started.elapsed().as_secs_f64());
                    }
                }
                Some(Command::ChangeUser) if whole => {
                    if !self.change_user(first).await? {
                        return Ok(());
                    }
                }
                Some(Command::InitDb) if whole => {
                    let db = Bytes::copy_from_slice(&first.payload[1..]);
                    if let Some((i, out)) = self.on_home(first).await? {
                        if !out.err {
                            self.schema = Some(db.clone());
                            self.conns[i].schema = Some(db);
                        }
                    }
                }
                Some(Command::ResetConnection) if whole => {
                    if let Some((_, out)) = self.on_home(first).await? {
                        if !out.err {
                            self.forget_state().await;
                        }
                    }
                }
                _ => {
                    self.on_home(first).await?;
                }
            }
            self.skip_rest().await?;
        }
    }

    /// Reads and drops the rest of a command over 16 MiB that was not
    /// forwarded (refused, or without a target), so that its chunks are not
    /// taken for commands; a reply then follows its last chunk's sequence.
    async fn skip_rest(&mut self) -> Result<()> {
        let limit = self.shared.config.frontend.handshake_timeout;
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
        self.conns.clear();
    }

    /// Ends the session: connections outside a transaction are reset and
    /// kept in the pool, the rest closed.
    async fn close(&mut self) {
        let max_idle = self.rt.config.backend.pool_max_idle;
        let limit = self.rt.config.backend.connect_timeout;
        for mut c in std::mem::take(&mut self.conns) {
            let reusable = max_idle > 0
                && self.txn.as_deref() != Some(c.server.as_str())
                && self.rt.server(&c.server).is_some();
            if reusable && c.reset(limit).await {
                c.schema = None;
                c.applied = 0;
                self.shared.pools.give_back(c, max_idle);
            } else {
                c.quit().await;
            }
        }
        self.client.shutdown().await;
    }

    async fn send_client_err(&mut self, err: &ErrPacket) -> Result<()> {
        self.skip_rest().await?;
        if self.silent {
            self.withheld = Some(err.clone());
            return Ok(());
        }
        let mut buf = BytesMut::new();
        err.encode(self.caps, &mut buf);
        self.client.write_packet(self.client_seq, &buf).await
    }

    /// Sends a router-made ERR for a command and counts it.
    async fn refuse(&mut self, kind: &'static str, err: &ErrPacket) -> Result<()> {
        self.shared.metrics.error(kind);
        debug!(
            kind,
            code = err.code,
            "refused: {}",
            String::from_utf8_lossy(&err.message)
        );
        self.send_client_err(err).await
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

    // ---------------------------------------------------------------- routing

    fn groups(&self) -> Groups {
        let (writer, default) = self
            .rt
            .users
            .get(&self.user)
            .map_or((0, 0), |u| (u.writer, u.default_group));
        let reads = match self.rt.groups.get(default).map(|g| g.role) {
            Some(Role::Reader) => Some(default),
            _ => self.rt.groups.get(writer).and_then(|g| g.reads_to),
        };
        Groups { writer, reads }
    }

    fn held(&self) -> Held<'_> {
        Held {
            txn: self.txn.as_deref(),
            last: self.last.as_deref(),
            vars: self.vars.as_deref(),
            locks: self.locks.as_deref(),
            temp: self.temp.as_deref(),
        }
    }

    /// Hints and rules for `sql`; an ERR when a hint is malformed or names
    /// no hostgroup.
    fn steer(&self, sql: &str, class: &Classified) -> std::result::Result<(Steer, Ask), ErrPacket> {
        let hints = Hints::parse(sql);
        if let Some(e) = hints.errors.first() {
            return Err(router_err(9003, format!("Causeway: bad hint: {e}")));
        }
        let token = match &hints.min_gtid {
            None => None,
            Some(text) => Some(GtidSet::parse(text).map_err(|e| {
                router_err(
                    9003,
                    format!("Causeway: bad hint: min_gtid is not a GTID set: {e}"),
                )
            })?),
        };
        let groups = self.groups();
        let find = |name: &str| self.rt.groups.iter().position(|g| g.name == name);
        let hint = match (&hints.hostgroup, hints.primary) {
            (_, true) => Some(groups.writer),
            (Some(name), false) => Some(find(name).ok_or_else(|| {
                router_err(9003, format!("Causeway: hint names no hostgroup {name:?}"))
            })?),
            (None, false) => None,
        };
        let (rule, rule_scope) = if self.rt.rules.is_empty() {
            (None, None)
        } else {
            let schema = self
                .schema
                .as_deref()
                .and_then(|s| std::str::from_utf8(s).ok());
            let out = self.rt.rules.evaluate(&RuleInput {
                sql,
                digest: None,
                user: &self.user,
                schema,
                client_ip: self.peer.ip(),
            });
            (out.destination.and_then(find), out.consistency)
        };
        let temp_table = !self.temp_tables.is_empty()
            && class.tables.iter().any(|t| self.temp_tables.contains(t));
        let steer = Steer {
            hint,
            rule,
            temp_table,
        };
        let ask = Ask {
            scope: hints.consistency.or(rule_scope),
            token,
        };
        Ok((steer, ask))
    }

    /// Classifies `sql`, parsing fully when the session has temporary
    /// tables (the fast path does not list tables).
    fn classify(&self, sql: &str) -> Classified {
        if self.temp_tables.is_empty() {
            classify::classify(sql)
        } else {
            classify::classify_parsed(sql)
        }
    }

    /// Routes a statement to a connection index.
    async fn route(
        &mut self,
        sql: &str,
        class: &Classified,
    ) -> std::result::Result<(usize, Why), Failure> {
        let (steer, ask) = self.steer(sql, class).map_err(Failure::Client)?;
        let target = route::decide(class, &self.held(), &steer, &self.groups());
        match target {
            Target::Conn(name, why) => {
                let name = name.to_string();
                match self.conns.iter().position(|c| c.server == name) {
                    Some(i) => {
                        self.count(why, i);
                        Ok((i, why))
                    }
                    // Its server left the configuration: the state is gone.
                    None => {
                        let g = self.groups().writer;
                        let i = self.in_group(g, true).await?;
                        self.count(Why::Write, i);
                        Ok((i, Why::Write))
                    }
                }
            }
            Target::Group(g, why) if self.rt.groups[g].pair.is_some() => {
                let i = self.causal_read(g, &ask).await?;
                self.count(why, i);
                Ok((i, why))
            }
            Target::Group(g, why) => {
                let writes = self.rt.groups[g].role == Role::Writer;
                let i = match self.in_group(g, writes).await {
                    Ok(i) => i,
                    Err(Failure::Client(_))
                        if why == Why::Read && self.rt.config.routing.reads_fall_back_to_writer =>
                    {
                        self.in_group(self.groups().writer, true).await?
                    }
                    Err(e) => return Err(e),
                };
                self.count(why, i);
                Ok((i, why))
            }
        }
    }

    fn count(&self, why: Why, conn: usize) {
        let Some(s) = self.rt.server(&self.conns[conn].server) else {
            return;
        };
        let g = &self.rt.groups[self.rt.servers[s].group];
        self.shared.metrics.routed(why.label(), &g.name);
    }

    /// A connection to a usable server of group `g` (one the session has,
    /// else a new one), trying the others when one cannot be reached.
    async fn in_group(&mut self, g: GroupIdx, writes: bool) -> std::result::Result<usize, Failure> {
        let health = self.shared.monitor.snapshot();
        let members = self.rt.members(&health);
        let name = self.rt.groups[g].name.clone();
        if writes && members.split[g] {
            return Err(Failure::Client(router_err(
                9002,
                format!(
                    "Causeway: hostgroup '{name}' has more than one writable server (split brain); \
                     refusing until one is read-only"
                ),
            )));
        }
        let mut candidates = members.members[g].clone();
        let mut last_err = None;
        while !candidates.is_empty() {
            self.turn = self.turn.wrapping_add(1);
            let pick = {
                let rt = &self.rt;
                let pools = &self.shared.pools;
                let conns = &self.conns;
                route::pick(
                    &candidates,
                    |m| conns.iter().any(|c| c.server == rt.servers[m].name),
                    |m| pools.in_use(&rt.servers[m].name),
                    |m| rt.servers[m].weight,
                    self.turn,
                )
            };
            let Some(m) = pick else { break };
            match self.open(m).await {
                Ok(i) => return Ok(i),
                Err(Failure::Fatal(e)) => return Err(Failure::Fatal(e)),
                Err(Failure::Client(err)) => {
                    last_err = Some(err);
                    candidates.retain(|&c| c != m);
                }
            }
        }
        Err(Failure::Client(last_err.unwrap_or_else(|| {
            router_err(
                9001,
                format!("Causeway: no usable server in hostgroup '{name}' (all down, shunned or without weight)"),
            )
        })))
    }

    /// The session's connection to server `m`, opened if needed.
    async fn open(&mut self, m: ServerIdx) -> std::result::Result<usize, Failure> {
        let server = self.rt.servers[m].clone();
        if let Some(i) = self.conns.iter().position(|c| c.server == server.name) {
            return Ok(i);
        }
        let Some(user) = self.rt.users.get(&self.user).cloned() else {
            return Err(Failure::Fatal(Error::Internal("user vanished".into())));
        };
        let pools = &self.shared.pools;
        let caps = self.backend_caps(&server);
        if let Some(mut c) = pools.take(&server.name, &user.backend_user, caps, self.login.charset)
        {
            // COM_RESET_CONNECTION gave it the server's default character
            // set; the handshake's collation is put back (ids are accepted
            // for these variables), and GTID tracking when it is wanted.
            let cs = self.login.charset;
            let track = self.track_setting(&server);
            let sql = format!(
                "SET character_set_client = {cs}, character_set_results = {cs}, \
                 collation_connection = {cs}{}",
                track
                    .as_ref()
                    .map(|t| format!(", session_track_gtids = {t}"))
                    .unwrap_or_default()
            );
            let limit = self.rt.config.backend.connect_timeout;
            if simple_query(&mut c.io, c.caps, &sql, limit).await.is_ok() {
                c.tracking = track.is_some();
                self.conns.push(c);
                self.publish();
                return Ok(self.conns.len() - 1);
            }
        }
        let lease = pools
            .reserve(&server.name, server.max_connections)
            .map_err(|r| {
                self.shared.metrics.error("no_backend");
                Failure::Client(match r {
                    Refused::Full(max) => router_err(
                        1040,
                        format!(
                            "Causeway: server '{}' has {max} connections open (max_connections)",
                            server.name
                        ),
                    ),
                    Refused::Backoff(wait) => router_err(
                        9001,
                        format!(
                            "Causeway: server '{}' is unreachable (retrying in {} ms)",
                            server.name,
                            wait.as_millis()
                        ),
                    ),
                })
            })?;
        let ep = &server.endpoint;
        let login = Login {
            user: Bytes::copy_from_slice(user.backend_user.as_bytes()),
            database: self.schema.clone(),
            capabilities: caps,
            ..self.login.clone()
        };
        let attempt = async {
            let mut g = connect::connect(ep).await?;
            connect::login(&mut g, &login, &user.backend_password, ep.tls.as_ref()).await?;
            Ok::<_, Error>(g)
        };
        let res = tokio::time::timeout(ep.connect_timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(Error::backend_timeout("connect", ep.connect_timeout)));
        match res {
            Ok(g) => {
                pools.connected(&server.name);
                let mut io = g.io;
                io.set_write_timeout(Some(self.shared.config.frontend.net_write_timeout));
                self.conns.push(Conn {
                    io,
                    server: server.name.clone(),
                    thread_id: g.greeting.connection_id,
                    nonce: g.greeting.auth_plugin_data,
                    user: user.backend_user.clone(),
                    caps,
                    charset: self.login.charset,
                    schema: self.schema.clone(),
                    applied: 0,
                    tracking: false,
                    lease,
                });
                self.publish();
                Ok(self.conns.len() - 1)
            }
            // The server answered and said no (unknown database, access
            // denied): the client sees that ERR as it is.
            Err(Error::BackendRefused(err)) => Err(Failure::Client(err)),
            Err(e) => {
                pools.failed(&server.name, self.rt.config.backend.connect_backoff);
                self.shared.metrics.backend_connect_errors.inc();
                warn!(server = %server.name, error = %e.report(), "backend connect failed");
                // TLS and protocol failures keep their MySQL codes (2026,
                // ...); the server's address stays in the log.
                let err = match &e {
                    Error::BackendConnect { .. } | Error::BackendIo(_) => None,
                    _ => e.client_err(&self.peer.ip().to_string()),
                };
                Err(Failure::Client(err.unwrap_or_else(|| {
                    router_err(
                        9001,
                        format!("Causeway: cannot reach server '{}'", server.name),
                    )
                })))
            }
        }
    }

    /// Brings connection `i` to the session's state: schema, then the SET
    /// statements it has not run. A refusal is the client's ERR.
    async fn sync(&mut self, i: usize) -> std::result::Result<(), ErrPacket> {
        let limit = self.rt.config.backend.connect_timeout;
        let c = &mut self.conns[i];
        if self.schema.is_some() && c.schema != self.schema {
            let db = self.schema.clone().unwrap_or_default();
            let mut p = BytesMut::with_capacity(db.len() + 1);
            p.put_u8(Command::InitDb as u8);
            p.put_slice(&db);
            let res = async {
                c.io.write_packet(0, &p).await?;
                c.io.read_packet(64 * 1024).await
            };
            match tokio::time::timeout(limit, res).await {
                Ok(Ok(r)) if r.payload.first() == Some(&0x00) => c.schema = Some(db),
                Ok(Ok(r)) => {
                    return Err(ErrPacket::decode(&r.payload)
                        .unwrap_or_else(|_| router_err(1105, "Causeway: COM_INIT_DB failed")))
                }
                _ => {
                    return Err(router_err(
                        9001,
                        format!("Causeway: server '{}' did not answer", c.server),
                    ))
                }
            }
        }
        while c.applied < self.replay.len() {
            let sql = String::from_utf8_lossy(&self.replay[c.applied]).into_owned();
            if causal::mentions_tracking(sql.as_bytes()) {
                c.tracking = false;
            }
            match simple_query(&mut c.io, c.caps, &sql, limit).await {
                Ok(_) => c.applied += 1,
                Err(Error::BackendRefused(err)) => return Err(err),
                Err(e) => {
                    return Err(router_err(
                        9001,
                        format!(
                            "Causeway: replaying session state on '{}': {}",
                            c.server,
                            e.report()
                        ),
                    ))
                }
            }
        }
        self.ensure_tracking(i).await
    }

    /// Routes, opens and syncs: the connection index, or the ERR already
    /// sent to the client (`None`).
    async fn prepare_target(
        &mut self,
        sql: &str,
        class: &Classified,
    ) -> Result<Option<(usize, Why)>> {
        match self.route(sql, class).await {
            Ok((i, why)) => match self.sync(i).await {
                Ok(()) => Ok(Some((i, why))),
                Err(err) => {
                    self.refuse("backend_failed", &err).await?;
                    Ok(None)
                }
            },
            Err(Failure::Client(err)) => {
                let kind = match err.code {
                    9002 => "split_brain",
                    9003 => "hint",
                    _ => "no_backend",
                };
                self.refuse(kind, &err).await?;
                Ok(None)
            }
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    /// The connection of commands that are not statements (PING,
    /// STATISTICS, FIELD_LIST, INIT_DB, ...): the transaction's, the last
    /// one used, or a new one in the default group.
    async fn home(&mut self) -> Result<Option<usize>> {
        let name = self.txn.clone().or_else(|| self.last.clone());
        if let Some(i) = name.and_then(|n| self.conns.iter().position(|c| c.server == n)) {
            return Ok(Some(i));
        }
        if !self.conns.is_empty() {
            return Ok(Some(0));
        }
        let g = self.groups().writer;
        match self.in_group(g, false).await {
            Ok(i) => match self.sync(i).await {
                Ok(()) => Ok(Some(i)),
                Err(err) => self.refuse("backend_failed", &err).await.map(|()| None),
            },
            Err(Failure::Client(err)) => self.refuse("no_backend", &err).await.map(|()| None),
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    async fn on_home(&mut self, first: Chunk) -> Result<Option<(usize, Outcome)>> {
        let Some(i) = self.home().await? else {
            return Ok(None);
        };
        let out = self.forward(first, i, None).await?;
        self.after(i, &out);
        Ok(Some((i, out)))
    }

    /// Runs one COM_QUERY.
    async fn query(&mut self, first: Chunk, raw: &Bytes) -> Result<()> {
        if !first.more {
            if let Some(res) = causal::token_statement(raw) {
                return self.set_token(res).await;
            }
        }
        let sql = String::from_utf8_lossy(raw);
        let class = if first.more {
            // Over 16 MiB: not worth parsing; the writer takes it.
            Classified::unparsed()
        } else {
            self.classify(&sql)
        };
        let Some((i, _)) = self.prepare_target(&sql, &class).await? else {
            return Ok(());
        };
        let out = self.forward(first, i, None).await?;
        self.after(i, &out);
        if !out.err {
            self.effects(i, &class, raw);
            if causal::mentions_tracking(raw) {
                self.tracking_changed(i).await?;
            }
        }
        Ok(())
    }

    /// Transaction state from the response's status flags.
    fn after(&mut self, i: usize, out: &Outcome) {
        let server = self.conns[i].server.clone();
        if let Some(st) = out.status {
            self.status = st;
            let open = st.contains(StatusFlags::IN_TRANS) || !st.contains(StatusFlags::AUTOCOMMIT);
            if open {
                self.txn = Some(server.clone());
            } else if self.txn.as_deref() == Some(server.as_str()) {
                self.txn = None;
            }
        }
        if self.last.as_deref() != Some(server.as_str()) {
            self.last = Some(server);
            self.publish();
        }
    }

    /// What a successful statement leaves in the session.
    fn effects(&mut self, i: usize, class: &Classified, raw: &Bytes) {
        let server = self.conns[i].server.clone();
        match &class.kind {
            Kind::Use(db) => {
                let db = Bytes::copy_from_slice(db.as_bytes());
                self.conns[i].schema = Some(db.clone());
                self.schema = Some(db);
            }
            Kind::SetSession if !class.multi => {
                self.replay.push(raw.clone());
                self.conns[i].applied = self.replay.len();
            }
            _ => {}
        }
        let s = &class.session;
        if s.sets_user_vars {
            self.vars = Some(server.clone());
        }
        if s.named_locks {
            self.locks = Some(server.clone());
        }
        if s.temp_tables {
            self.temp = Some(server);
            for t in &class.tables {
                self.temp_tables.insert(t.clone());
            }
        }
    }

    /// COM_RESET_CONNECTION succeeded on one connection: reset the others
    /// too, and forget the session state.
    async fn forget_state(&mut self) {
        let limit = self.rt.config.backend.connect_timeout;
        let home = self.last.clone();
        let mut broken = Vec::new();
        for (k, c) in self.conns.iter_mut().enumerate() {
            c.applied = 0;
            if Some(&c.server) == home.as_ref() {
                // The client's COM_RESET_CONNECTION reset this one.
                c.tracking = false;
                continue;
            }
            if !c.reset(limit).await {
                broken.push(k);
            }
        }
        for k in broken.into_iter().rev() {
            self.conns.remove(k);
        }
        self.clear_session_state();
        self.publish();
    }

    /// What COM_RESET_CONNECTION and COM_CHANGE_USER both end: replayed
    /// settings, the transaction, session and user variables, locks,
    /// temporary tables, prepared statements, the token and the client's
    /// GTID tracking. The GTIDs the session wrote stay needed (its reads
    /// must still see them).
    fn clear_session_state(&mut self) {
        self.replay.clear();
        self.txn = None;
        self.vars = None;
        self.locks = None;
        self.temp = None;
        self.temp_tables.clear();
        self.stmts.clear();
        self.token = None;
        self.client_track = None;
    }

    /// Tells KILL where this session's backend threads are.
    fn publish(&self) {
        if let Ok(mut s) = self.shared.sessions.lock() {
            s.insert(
                self.id,
                SessionInfo {
                    user: self.user.clone(),
                    threads: self
                        .conns
                        .iter()
                        .map(|c| (c.server.clone(), c.thread_id))
                        .collect(),
                    active: self.last.clone(),
                    kill: self.kill.clone(),
                },
            );
        }
    }

    // ------------------------------------------------------------ forwarding

    /// Forwards a command to connection `i` and streams its response. With
    /// `prepare_id`, a COM_STMT_PREPARE_OK is rewritten to carry that id.
    async fn forward(
        &mut self,
        first: Chunk,
        i: usize,
        prepare_id: Option<u32>,
    ) -> Result<Outcome> {
        let caps = self.conns[i].caps;
        let mut tracker = ResponseTracker::for_command(&first.payload, caps);
        let backend = &mut self.conns[i].io;
        backend.queue_chunk(&first);
        let mut more = first.more;
        let limit = self.shared.config.frontend.handshake_timeout;
        self.unread = false;
        while more {
            let c = next_chunk_of_command(&mut self.client, limit).await?;
            backend.queue_chunk(&c);
            if backend.should_flush() {
                backend.flush().await?;
            }
            more = c.more;
        }
        backend.flush().await?;
        self.writer_read_sent(i);
        let mut out = Outcome::default();
        if tracker.is_done() {
            return Ok(out);
        }
        self.stream_response(i, &mut tracker, prepare_id, &mut out)
            .await?;
        out.status = tracker.status();
        Ok(out)
    }

    /// Streams the backend's response to the client until it is complete.
    async fn stream_response(
        &mut self,
        i: usize,
        tracker: &mut ResponseTracker,
        prepare_id: Option<u32>,
        out: &mut Outcome,
    ) -> Result<()> {
        let mut done = false;
        loop {
            let backend = &mut self.conns[i].io;
            let mut c = backend.next_chunk().await?.ok_or_else(|| {
                Error::BackendIo(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
            })?;
            self.writer_read_answered();
            if c.first {
                let step = tracker.feed(&c.payload).map_err(Error::BackendProtocol)?;
                done = step.done;
                match step.role {
                    PacketRole::Err => out.err = true,
                    PacketRole::Ok | PacketRole::ResultSetEnd if self.reads_oks(i) => {
                        if let Some(p) = self.on_ok(i, &c.payload) {
                            c.payload = p;
                        }
                    }
                    PacketRole::PrepareOk(ok) => {
                        out.prepared = Some((ok.statement_id, ok.num_params));
                        if let Some(id) = prepare_id {
                            let mut p = BytesMut::from(&c.payload[..]);
                            p[1..5].copy_from_slice(&id.to_le_bytes());
                            c.payload = p.freeze();
                        }
                    }
                    _ => {}
                }
            }
            let buffered = self.conns[i].io.has_buffered_chunk();
            self.client.queue_chunk(&c);
            self.client_seq = c.seq.wrapping_add(1);
            if !c.more {
                if done {
                    return self.client.flush().await;
                }
                if tracker.awaiting_client_data() {
                    self.client.flush().await?;
                    self.local_infile(i).await?;
                    continue;
                }
            }
            if self.client.should_flush() || !buffered {
                self.client.flush().await?;
            }
        }
    }

    /// LOAD DATA LOCAL: the client's file, up to its empty packet, to the backend.
    async fn local_infile(&mut self, i: usize) -> Result<()> {
        self.client.expect_sequence(None);
        let backend = &mut self.conns[i].io;
        loop {
            let c = self
                .client
                .next_chunk()
                .await?
                .ok_or(Error::ClientUnexpected(
                    "connection closed inside a LOCAL INFILE",
                ))?;
            backend.queue_chunk(&c);
            if c.first && c.payload.is_empty() {
                return backend.flush().await;
            }
            if backend.should_flush() {
                backend.flush().await?;
            }
        }
    }

    // ----------------------------------------------------- KILL, CHANGE_USER

    /// KILL from the client, addressed by router connection id. Returns
    /// false when the session must end (it killed its own connection).
    async fn kill(&mut self, target: KillTarget) -> Result<bool> {
        let own = target.id() == self.id;
        if own && matches!(target, KillTarget::Connection(_)) {
            let err = ErrPacket::new(1317, *b"70100", "Query execution was interrupted");
            let _ = self.send_client_err(&err).await;
            self.conns.clear();
            self.client.shutdown().await;
            return Ok(false);
        }
        match kill::execute(self.shared, &self.user, target).await {
            Ok(()) => {
                let mut buf = BytesMut::new();
                OkPacket::default().encode(self.caps, &mut buf);
                self.client.write_packet(1, &buf).await?;
                Ok(true)
            }
            Err(Error::BackendRefused(err)) => {
                self.send_client_err(&err).await?;
                Ok(true)
            }
            Err(e) => {
                info!(error = %e.report(), "kill failed");
                let err = e
                    .client_err(&self.peer.ip().to_string())
                    .unwrap_or_else(|| {
                        ErrPacket::new(1105, *b"HY000", "KILL failed in the router")
                    });
                self.send_client_err(&err).await?;
                Ok(true)
            }
        }
    }

    /// COM_CHANGE_USER: the client re-authenticates against the router's
    /// users; the session's connections are closed and a fresh one is
    /// opened as the new user, as MySQL resets the session. Returns false
    /// when it failed and the session was closed (as MySQL does).
    async fn change_user(&mut self, first: Chunk) -> Result<bool> {
        let cu = ComChangeUser::decode(&first.payload, self.caps).map_err(Error::ClientProtocol)?;
        self.client.expect_sequence(None);
        let mut seq = 1u8;
        let attempt = Attempt {
            user: cu.username.clone(),
            plugin: cu.auth_plugin_name.clone(),
            response: cu.auth_response.clone(),
            nonce: Vec::new(),
            can_switch: self.caps.contains(CapabilityFlags::PLUGIN_AUTH),
            always_switch: true,
        };
        let limit = self.shared.config.frontend.handshake_timeout;
        let authed = match tokio::time::timeout(
            limit,
            auth::authenticate(&mut self.client, &mut seq, attempt, self.shared),
        )
        .await
        .unwrap_or(Err(Error::ClientTimeout("change user")))
        {
            Ok(a) => a,
            Err(e) => {
                self.client_seq = seq;
                if let Error::AccessDenied { user, reason, .. } = &e {
                    self.shared.metrics.auth_failures.inc();
                    info!(user = %user, reason, "change user: access denied");
                }
                send_err(&mut self.client, seq, &e, self.peer).await;
                self.conns.clear();
                return Ok(false);
            }
        };
        // The backend connections belong to the old user's session: close
        // them (not pooled: they may hold its transaction).
        for c in std::mem::take(&mut self.conns) {
            c.quit().await;
        }
        info!(from = %self.user, to = %authed.user, "user changed");
        self.user = authed.user;
        self.login.user = cu.username;
        if let Some(cs) = cu.charset {
            self.login.charset = cs as u8;
        }
        self.schema = Some(cu.database).filter(|d| !d.is_empty());
        self.login.database = self.schema.clone();
        self.clear_session_state();
        self.last = None;
        self.client_seq = seq;
        self.start().await
    }
}

/// Why no connection could be had.
#[derive(Debug)]
enum Failure {
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

/// The next chunk of a client command over 16 MiB, within `limit`.
async fn next_chunk_of_command(client: &mut PacketIo, limit: std::time::Duration) -> Result<Chunk> {
    tokio::time::timeout(limit, client.next_chunk())
        .await
        .map_err(|_| Error::ClientReadTimeout("the rest of a command"))??
        .ok_or(Error::ClientUnexpected(
            "connection closed inside a command",
        ))
}
