//! The command phase: each client command is forwarded to the backend chunk
//! by chunk, and the backend's response is streamed back chunk by chunk
//! while a [`ResponseTracker`] says when it is complete. Memory per session
//! is bounded by one 16 MiB chunk plus the socket buffers, whatever the
//! result size.
//!
//! ```text
//! Idle --command--> Forwarding --response complete--> Idle
//!                   Forwarding --LOCAL INFILE request--> client file --> Forwarding
//! Idle --COM_QUIT | EOF | idle_timeout--> closed
//! Idle --KILL n / COM_PROCESS_KILL--> kill via a separate backend connection --> Idle
//! Idle --other KILL (multi-statement, prepared)--> ERR 1235 --> Idle
//! Forwarding --client not reading for net_write_timeout--> closed
//! Idle --COM_CHANGE_USER--> re-authenticate (router users), switch the backend --> Idle
//! ```

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use causeway_wire::command::{ComChangeUser, ComQuery};
use causeway_wire::flags::Command;
use causeway_wire::response::ResponseTracker;
use causeway_wire::{CapabilityFlags, Chunk, ErrPacket, OkPacket};
use tracing::{debug, info};

use crate::backend::connect::{finish_auth, scramble, REQUIRED};
use crate::error::{Error, Result};
use crate::frontend::auth::{self, Attempt};
use crate::frontend::handshake::{send_err, Established};
use crate::io::PacketIo;
use crate::session::kill::{self, KillTarget};
use crate::Shared;

/// One session in its command phase.
#[derive(Debug)]
pub struct Relay<'a> {
    client: PacketIo,
    backend: PacketIo,
    backend_nonce: Bytes,
    caps: CapabilityFlags,
    user: String,
    peer: SocketAddr,
    id: u32,
    shared: &'a Shared,
    /// Sequence id of the next packet to the client within the current command.
    client_seq: u8,
}

impl<'a> Relay<'a> {
    /// Takes over an established session.
    pub fn new(est: Established, peer: SocketAddr, id: u32, shared: &'a Shared) -> Self {
        let (mut client, mut backend) = (est.client, est.backend.io);
        let write_timeout = Some(shared.config.frontend.net_write_timeout);
        client.set_write_timeout(write_timeout);
        backend.set_write_timeout(write_timeout);
        Self {
            client,
            backend,
            backend_nonce: est.backend.greeting.auth_plugin_data,
            caps: est.caps,
            user: est.user,
            peer,
            id,
            shared,
            client_seq: 1,
        }
    }

    /// Relays commands until the client quits or something fails.
    pub async fn run(&mut self) -> Result<()> {
        let idle = self.shared.config.frontend.idle_timeout;
        loop {
            self.client.expect_sequence(Some(0));
            self.client_seq = 1;
            let first = match tokio::time::timeout(idle, self.client.next_chunk()).await {
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
            self.shared.metrics.commands.inc();
            let Some(&command) = first.payload.first() else {
                return Err(Error::ClientUnexpected("empty command packet"));
            };
            match Command::from_u8(command) {
                Some(Command::Quit) => {
                    self.backend.queue_chunk(&first);
                    self.close().await;
                    return Ok(());
                }
                Some(Command::ProcessKill) if !first.more => {
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
                Some(Command::Query) if !first.more => {
                    // A malformed query is the backend's to refuse, not ours;
                    // but it must not carry a KILL.
                    let query = ComQuery::decode(&first.payload, self.caps).ok();
                    let sql = query.as_ref().map_or(&first.payload[1..], |q| &q.query[..]);
                    match kill::parse(sql) {
                        Some(target) => {
                            if !self.kill(target).await? {
                                return Ok(());
                            }
                        }
                        None if kill::mentions_kill(sql) => self.refuse_kill().await?,
                        None => self.forward(first).await?,
                    }
                }
                Some(Command::StmtPrepare)
                    if !first.more && kill::mentions_kill(&first.payload[1..]) =>
                {
                    self.refuse_kill().await?;
                }
                Some(Command::ChangeUser) if !first.more => {
                    if !self.change_user(first).await? {
                        return Ok(());
                    }
                }
                _ => self.forward(first).await?,
            }
        }
    }

    /// After a failure: an ERR to the client unless its own connection
    /// broke, then close both legs.
    pub async fn fail(&mut self, e: &Error) {
        send_err(&mut self.client, self.client_seq, e, self.peer).await;
        self.close().await;
    }

    async fn close(&mut self) {
        self.backend.shutdown().await;
        self.client.shutdown().await;
    }

    async fn send_client_err(&mut self, err: &ErrPacket) -> Result<()> {
        let mut buf = BytesMut::new();
        err.encode(self.caps, &mut buf);
        self.client.write_packet(self.client_seq, &buf).await
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

    /// Forwards a command and streams its response.
    async fn forward(&mut self, first: Chunk) -> Result<()> {
        let mut tracker = ResponseTracker::for_command(&first.payload, self.caps);
        self.backend.queue_chunk(&first);
        let mut more = first.more;
        let limit = self.shared.config.frontend.handshake_timeout;
        while more {
            let c = tokio::time::timeout(limit, self.client.next_chunk())
                .await
                .map_err(|_| Error::ClientReadTimeout("the rest of a command"))??
                .ok_or(Error::ClientUnexpected(
                    "connection closed inside a command",
                ))?;
            self.backend.queue_chunk(&c);
            if self.backend.should_flush() {
                self.backend.flush().await?;
            }
            more = c.more;
        }
        self.backend.flush().await?;
        if tracker.is_done() {
            return Ok(());
        }
        self.stream_response(&mut tracker).await
    }

    /// Streams the backend's response to the client until it is complete.
    async fn stream_response(&mut self, tracker: &mut ResponseTracker) -> Result<()> {
        let mut done = false;
        loop {
            let c = self.backend.next_chunk().await?.ok_or_else(|| {
                Error::BackendIo(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
            })?;
            if c.first {
                done = tracker
                    .feed(&c.payload)
                    .map_err(Error::BackendProtocol)?
                    .done;
            }
            self.client.queue_chunk(&c);
            self.client_seq = c.seq.wrapping_add(1);
            if !c.more {
                if done {
                    return self.client.flush().await;
                }
                if tracker.awaiting_client_data() {
                    self.client.flush().await?;
                    self.local_infile().await?;
                    continue;
                }
            }
            if self.client.should_flush() || !self.backend.has_buffered_chunk() {
                self.client.flush().await?;
            }
        }
    }

    /// LOAD DATA LOCAL: the client's file, up to its empty packet, to the backend.
    async fn local_infile(&mut self) -> Result<()> {
        self.client.expect_sequence(None);
        loop {
            let c = self
                .client
                .next_chunk()
                .await?
                .ok_or(Error::ClientUnexpected(
                    "connection closed inside a LOCAL INFILE",
                ))?;
            self.backend.queue_chunk(&c);
            if c.first && c.payload.is_empty() {
                return self.backend.flush().await;
            }
            if self.backend.should_flush() {
                self.backend.flush().await?;
            }
        }
    }

    /// KILL from the client, addressed by router connection id. Returns
    /// false when the session must end (it killed its own connection).
    async fn kill(&mut self, target: KillTarget) -> Result<bool> {
        let own = target.id() == self.id;
        match kill::execute(self.shared, &self.user, target).await {
            Ok(()) if own && matches!(target, KillTarget::Connection(_)) => {
                let err = ErrPacket::new(1317, *b"70100", "Query execution was interrupted");
                let _ = self.send_client_err(&err).await;
                self.close().await;
                Ok(false)
            }
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
    /// users, then the backend connection switches to that user. Returns
    /// false when it failed and the session was closed (as MySQL does).
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
                self.close().await;
                return Ok(false);
            }
        };
        let plugin = causeway_wire::auth::CACHING_SHA2_PASSWORD;
        let cmd = ComChangeUser {
            username: cu.username,
            auth_response: scramble(plugin, &authed.password, &self.backend_nonce).into(),
            database: cu.database,
            charset: Some(cu.charset.unwrap_or(255)),
            auth_plugin_name: Some(Bytes::from_static(plugin.as_bytes())),
            connect_attrs: cu.connect_attrs,
        };
        let mut buf = BytesMut::new();
        cmd.encode(self.caps | REQUIRED, &mut buf)
            .map_err(Error::BackendProtocol)?;
        self.backend.write_packet(0, &buf).await?;
        self.client_seq = seq;
        let nonce = self.backend_nonce.clone();
        let limit = self.shared.config.backend.connect_timeout;
        let ok = match tokio::time::timeout(
            limit,
            finish_auth(&mut self.backend, 1, nonce, &authed.password),
        )
        .await
        .unwrap_or_else(|_| Err(Error::backend_timeout("change user", limit)))
        {
            Ok(ok) => ok,
            Err(Error::BackendRefused(err)) => {
                info!(code = err.code, "change user refused by the backend");
                let _ = self.send_client_err(&err).await;
                self.close().await;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        self.client.write_packet(seq, &ok).await?;
        info!(from = %self.user, to = %authed.user, "user changed");
        self.user = authed.user;
        if let Ok(mut s) = self.shared.sessions.lock() {
            if let Some(info) = s.get_mut(&self.id) {
                info.user.clone_from(&self.user);
            }
        }
        Ok(true)
    }
}
