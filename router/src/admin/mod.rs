//! The admin interface: a MySQL-protocol listener of its own (default
//! `127.0.0.1:6032`) for operators, with its own users.
//!
//! ```text
//! accept --> [over admin.max_connections: ERR 1040]
//!        --> handshake (TLS as on the frontend, caching_sha2, admin users only) --> OK
//!        --> per COM_QUERY: sql::parse
//!              Query     --> tables::snapshot (only the tables it names)
//!                            --> engine::run (SQLite, read-only, bounded) --> result set
//!              commands  --> ops / KILL / reload / reset --> OK, or rows saying what happened
//!              anything wrong --> ERR, the session goes on
//! ```
//! What the admin changes is operational state only (see [`crate::ops`]):
//! the configuration file stays the one source of configuration, and
//! `RELOAD` reads it as SIGHUP does.

pub mod commands;
pub mod engine;
pub mod sql;
pub mod tables;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use causeway_wire::resultset::{self, Column};
use causeway_wire::{CapabilityFlags as C, ErrPacket, OkPacket, StatusFlags};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, info_span, warn, Instrument};

use crate::admin::engine::{Answer, EngineError, Kind};
use crate::error::{Error, Result, Side};
use crate::frontend::auth::Door;
use crate::frontend::handshake;
use crate::io::PacketIo;
use crate::shared::Shared;

/// Largest admin statement accepted.
const MAX_STATEMENT: usize = 1 << 20;

/// Accepts operators until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(
        shared.config.admin.max_connections,
    ));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let id = shared.next_connection_id();
        let span = info_span!("admin", id, peer = %peer);
        let slot = slots.clone().try_acquire_owned().ok();
        let shared = shared.clone();
        tokio::spawn(
            async move {
                let Some(_slot) = slot else {
                    let mut client = PacketIo::new(Box::new(tcp), Side::Client, 1024);
                    handshake::send_err(&mut client, 0, &Error::TooManyConnections, peer).await;
                    return;
                };
                session(tcp, peer, id, shared).await;
            }
            .instrument(span),
        );
    }
}

/// One admin session.
struct Admin {
    shared: Arc<Shared>,
    client: PacketIo,
    caps: C,
    user: String,
    peer: SocketAddr,
    id: u32,
}

async fn session(tcp: TcpStream, peer: SocketAddr, id: u32, shared: Arc<Shared>) {
    let est = match handshake::establish(tcp, peer, id, &shared, Door::Admin).await {
        Ok(est) => est,
        Err(e) => {
            warn!(error = %e.report(), "admin login failed");
            return;
        }
    };
    let mut client = est.client;
    // A client that stops reading does not hold its slot and its answer.
    client.set_write_timeout(Some(shared.config.frontend.net_write_timeout));
    let mut admin = Admin {
        shared,
        client,
        caps: est.caps,
        user: est.user,
        peer,
        id,
    };
    info!(user = %admin.user, "admin session");
    if admin.ok(est.seq, "").await.is_err() {
        return;
    }
    if let Err(e) = admin.serve().await {
        if let Some(err) = e.client_err(&peer.ip().to_string()) {
            let _ = admin.err(0, &err).await;
        }
        info!(error = %e.report(), "admin session ended");
    }
    admin.client.shutdown().await;
}

impl Admin {
    async fn serve(&mut self) -> Result<()> {
        let idle = self.shared.config.frontend.idle_timeout;
        loop {
            let packet =
                match tokio::time::timeout(idle, self.client.read_packet(MAX_STATEMENT)).await {
                    Ok(p) => p?,
                    Err(_) => return Ok(()),
                };
            let seq = packet.seq.wrapping_add(1);
            let Some((&command, body)) = packet.payload.split_first() else {
                return Err(Error::ClientUnexpected("an empty command"));
            };
            match command {
                0x01 => return Ok(()),
                // COM_PING, COM_INIT_DB, COM_RESET_CONNECTION
                0x0e | 0x02 | 0x1f => self.ok(seq, "").await?,
                0x03 => {
                    let sql = String::from_utf8_lossy(body).into_owned();
                    self.query(seq, &sql).await?;
                }
                _ => {
                    let err = ErrPacket::new(
                        1047,
                        *b"08S01",
                        "Unknown command: the admin interface takes text queries (COM_QUERY) only",
                    );
                    self.err(seq, &err).await?;
                }
            }
        }
    }

    async fn query(&mut self, seq: u8, sql: &str) -> Result<()> {
        match commands::execute(&self.shared, &self.user, self.id, self.peer, sql).await {
            commands::Reply::Ok(info) => self.ok(seq, &info).await,
            commands::Reply::Rows(answer) => self.rows(seq, &answer).await,
            commands::Reply::Err(err) => self.err(seq, &err).await,
        }
    }

    async fn ok(&mut self, seq: u8, info: &str) -> Result<()> {
        let mut buf = BytesMut::new();
        OkPacket {
            info: bytes::Bytes::copy_from_slice(info.as_bytes()),
            ..OkPacket::default()
        }
        .encode(self.caps, &mut buf);
        self.client.write_packet(seq, &buf).await
    }

    async fn err(&mut self, seq: u8, err: &ErrPacket) -> Result<()> {
        let mut buf = BytesMut::new();
        err.encode(self.caps, &mut buf);
        self.client.write_packet(seq, &buf).await
    }

    async fn rows(&mut self, seq: u8, answer: &Answer) -> Result<()> {
        let status = StatusFlags::AUTOCOMMIT;
        let mut seq = seq;
        let mut buf = BytesMut::new();
        causeway_wire::buf::put_lenenc_int(&mut buf, answer.columns.len() as u64);
        seq = self.client.queue_packet(seq, &buf);
        for (name, kind) in &answer.columns {
            let mut c = match kind {
                Kind::Int => Column::integer(name),
                Kind::Real => Column::double(name),
                Kind::Text => Column::text(name),
            };
            c.schema = "main".into();
            buf.clear();
            c.encode(&mut buf);
            seq = self.client.queue_packet(seq, &buf);
        }
        if let Some(eof) = resultset::encode_columns_end(self.caps, status) {
            seq = self.client.queue_packet(seq, &eof);
        }
        for row in &answer.rows {
            buf.clear();
            resultset::encode_row(
                row.iter().map(|v| v.as_deref().map(str::as_bytes)),
                &mut buf,
            );
            seq = self.client.queue_packet(seq, &buf);
            if self.client.should_flush() {
                self.client.flush().await?;
            }
        }
        buf.clear();
        resultset::encode_rows_end(self.caps, status, &mut buf);
        self.client.queue_packet(seq, &buf);
        self.client.flush().await
    }
}

/// The ERR packet for a failed query.
pub fn engine_err(e: &EngineError) -> ErrPacket {
    let msg = e.to_string();
    match e {
        EngineError::Syntax(_) | EngineError::Multiple => ErrPacket::new(
            1064,
            *b"42000",
            format!("You have an error in your SQL syntax: {msg}"),
        ),
        EngineError::NoSuchTable(t) => ErrPacket::new(
            1146,
            *b"42S02",
            format!("Table 'main.{t}' doesn't exist (SHOW TABLES lists the admin tables)"),
        ),
        EngineError::ReadOnly => ErrPacket::new(
            1036,
            *b"HY000",
            "The admin tables are read-only: change the configuration file and RELOAD, or use \
             DRAIN / OFFLINE / ONLINE SERVER, PAUSE / RESUME, KILL",
        ),
        EngineError::Timeout(_) => ErrPacket::new(3024, *b"HY000", msg),
        EngineError::TooLarge(_) => ErrPacket::new(1105, *b"HY000", msg),
        EngineError::Other(_) => ErrPacket::new(1105, *b"HY000", msg),
    }
}
