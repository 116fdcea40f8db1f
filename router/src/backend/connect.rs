//! Opening a backend connection and logging in, as a MySQL 9.x client does.
//!
//! ```text
//! connect --> HandshakeV10 (or ERR) --> [SSLRequest, TLS] --> HandshakeResponse41
//!   <-- OK | ERR
//!   <-- AuthSwitchRequest --> scramble for the new plugin
//!   <-- AuthMoreData 0x03 (fast auth ok) <-- OK
//!   <-- AuthMoreData 0x04 (full auth) --> TLS: password NUL
//!                                     --> plain: 0x02 <-- public key PEM --> RSA(password ^ nonce)
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use causeway_wire::auth::{
    caching_sha2_scramble, cleartext_password, native_password_scramble, rsa_encrypt_password,
    CACHING_SHA2_PASSWORD, MYSQL_NATIVE_PASSWORD,
};
use causeway_wire::command::ComQuery;
use causeway_wire::compress::{Algorithm, MAX_FRAME};
use causeway_wire::generic::is_err;
use causeway_wire::handshake::{
    AuthMoreData, AuthPacketKind, AuthSwitchRequest, HandshakeResponse, HandshakeV10, SslRequest,
    CACHING_SHA2_FAST_AUTH_SUCCESS, CACHING_SHA2_PERFORM_FULL_AUTH,
    CACHING_SHA2_REQUEST_PUBLIC_KEY,
};
use causeway_wire::{CapabilityFlags, ErrPacket};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::{Error, Result, Side};
use crate::io::PacketIo;

/// Largest packet accepted during the backend's handshake.
const MAX_AUTH_PACKET: usize = 64 * 1024;

/// Capabilities the router itself needs on every backend connection.
pub const REQUIRED: CapabilityFlags = CapabilityFlags::PROTOCOL_41
    .union(CapabilityFlags::SECURE_CONNECTION)
    .union(CapabilityFlags::PLUGIN_AUTH)
    .union(CapabilityFlags::PLUGIN_AUTH_LENENC_CLIENT_DATA);

/// A backend connection before login.
#[derive(Debug)]
pub struct Greeted {
    /// The framed connection.
    pub io: PacketIo,
    /// The server's greeting.
    pub greeting: HandshakeV10,
}

/// TLS towards one backend server: the connector and the name checked
/// against its certificate.
pub type BackendTls = Arc<(TlsConnector, ServerName<'static>)>;

/// Where and how to reach one backend server. The host name is resolved on
/// every connect, so a moved DNS name is followed.
#[derive(Clone)]
pub struct Endpoint {
    /// The server's name in the configuration (for logs and metrics).
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TCP connect plus greeting timeout.
    pub connect_timeout: Duration,
    /// TLS, when the server is reached over TLS.
    pub tls: Option<BackendTls>,
    /// The compressed protocol sessions' connections ask for.
    pub compression: Option<Algorithm>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// Opens a TCP connection to `ep` and reads its greeting.
pub async fn connect(ep: &Endpoint) -> Result<Greeted> {
    let addr = format!("{}:{}", ep.host, ep.port);
    let timeout = ep.connect_timeout;
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(source)) => return Err(Error::BackendConnect { addr, source }),
        Err(_) => {
            let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
            return Err(Error::BackendConnect { addr, source });
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut io = PacketIo::new(Box::new(tcp), Side::Backend, usize::MAX);
    let packet = with_timeout(timeout, io.read_packet(MAX_AUTH_PACKET)).await?;
    if is_err(&packet.payload) {
        let err = ErrPacket::decode(&packet.payload).map_err(Error::BackendProtocol)?;
        return Err(Error::BackendRefused(err));
    }
    let greeting = HandshakeV10::decode(&packet.payload).map_err(Error::BackendProtocol)?;
    if !greeting.capabilities.contains(REQUIRED) {
        return Err(Error::BackendUnsupported(
            "protocol 4.1 with pluggable authentication",
        ));
    }
    Ok(Greeted { io, greeting })
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Error::BackendIo(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "backend handshake timed out",
        ))),
    }
}

/// What the router logs in with.
#[derive(Debug, Clone)]
pub struct Login {
    /// User name.
    pub user: Bytes,
    /// Initial schema.
    pub database: Option<Bytes>,
    /// Collation id (low byte).
    pub charset: u8,
    /// Capabilities for the connection (the client's, restricted).
    pub capabilities: CapabilityFlags,
    /// Max packet size announced.
    pub max_packet_size: u32,
    /// Connection attributes (the client's).
    pub connect_attrs: Vec<(Bytes, Bytes)>,
}

/// Logs in on a greeted connection; returns the server's final OK payload.
/// An ERR from the server is [`Error::BackendRefused`]. With `compression`
/// (and a server that offers it) the connection is compressed after the
/// final OK, as MySQL's client library does.
pub async fn login(
    greeted: &mut Greeted,
    login: &Login,
    password: &[u8],
    tls: Option<&BackendTls>,
    compression: Option<Algorithm>,
) -> Result<Bytes> {
    let io = &mut greeted.io;
    let g = &greeted.greeting;
    let mut caps = (login.capabilities & g.capabilities) | REQUIRED;
    caps.remove(CapabilityFlags::SSL | CapabilityFlags::COMPRESS);
    caps.remove(CapabilityFlags::ZSTD_COMPRESSION_ALGORITHM);
    let compression = compression.filter(|a| g.capabilities.contains(a.flag()));
    if let Some(a) = compression {
        caps.insert(a.flag());
    }
    caps.set(CapabilityFlags::CONNECT_WITH_DB, login.database.is_some());
    let mut seq = 1u8;
    if let Some(tls) = tls {
        let (connector, name) = &**tls;
        if !g.capabilities.contains(CapabilityFlags::SSL) {
            return Err(Error::BackendUnsupported("TLS"));
        }
        caps.insert(CapabilityFlags::SSL);
        let mut buf = BytesMut::new();
        SslRequest {
            capabilities: caps,
            max_packet_size: login.max_packet_size,
            charset: login.charset,
        }
        .encode(&mut buf);
        io.write_packet(seq, &buf).await?;
        seq += 1;
        io.connect_tls(connector, name.clone()).await?;
    }
    let plugin = match &g.auth_plugin_name[..] {
        b if b == MYSQL_NATIVE_PASSWORD.as_bytes() => MYSQL_NATIVE_PASSWORD,
        // Anything else: answer as caching_sha2 and let the server switch.
        _ => CACHING_SHA2_PASSWORD,
    };
    let response = HandshakeResponse {
        capabilities: caps,
        max_packet_size: login.max_packet_size,
        charset: login.charset,
        username: login.user.clone(),
        auth_response: scramble(plugin, password, &g.auth_plugin_data).into(),
        database: login.database.clone(),
        auth_plugin_name: Some(Bytes::from_static(plugin.as_bytes())),
        connect_attrs: if caps.contains(CapabilityFlags::CONNECT_ATTRS) {
            login.connect_attrs.clone()
        } else {
            Vec::new()
        },
        zstd_level: match compression {
            Some(Algorithm::Zstd(level)) => Some(level),
            _ => None,
        },
    };
    let mut buf = BytesMut::new();
    response.encode(&mut buf).map_err(Error::BackendProtocol)?;
    io.write_packet(seq, &buf).await?;
    let nonce = g.auth_plugin_data.clone();
    let ok = finish_auth(io, seq.wrapping_add(1), nonce, password).await?;
    if let Some(a) = compression {
        io.start_compression(a, MAX_FRAME);
    }
    Ok(ok)
}

/// The auth response of `plugin` for `password` and `nonce`.
pub fn scramble(plugin: &str, password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if plugin == MYSQL_NATIVE_PASSWORD {
        native_password_scramble(password, nonce)
    } else {
        caching_sha2_scramble(password, nonce)
    }
}

/// Runs the server's side of authentication after the client's first
/// response (login or COM_CHANGE_USER) until OK (returned) or ERR.
/// `seq` is the sequence id of the server's next packet.
pub async fn finish_auth(
    io: &mut PacketIo,
    mut seq: u8,
    mut nonce: Bytes,
    password: &[u8],
) -> Result<Bytes> {
    loop {
        let packet = io.read_packet(MAX_AUTH_PACKET).await?;
        if packet.seq != seq {
            return Err(Error::BackendProtocol(
                causeway_wire::CodecError::OutOfSequence {
                    expected: seq,
                    got: packet.seq,
                },
            ));
        }
        seq = seq.wrapping_add(1);
        let payload = packet.payload;
        match AuthPacketKind::classify(&payload).map_err(Error::BackendProtocol)? {
            AuthPacketKind::Ok => return Ok(payload),
            AuthPacketKind::Err => {
                let err = ErrPacket::decode(&payload).map_err(Error::BackendProtocol)?;
                return Err(Error::BackendRefused(err));
            }
            AuthPacketKind::Switch => {
                let req = AuthSwitchRequest::decode(&payload).map_err(Error::BackendProtocol)?;
                let plugin = String::from_utf8_lossy(&req.plugin_name).into_owned();
                if plugin != MYSQL_NATIVE_PASSWORD && plugin != CACHING_SHA2_PASSWORD {
                    return Err(Error::BackendUnsupported("the requested auth plugin"));
                }
                nonce = Bytes::copy_from_slice(req.nonce());
                io.write_packet(seq, &scramble(&plugin, password, &nonce))
                    .await?;
                seq = seq.wrapping_add(1);
            }
            AuthPacketKind::MoreData => {
                let more = AuthMoreData::decode(&payload).map_err(Error::BackendProtocol)?;
                match more.caching_sha2_status() {
                    Some(CACHING_SHA2_FAST_AUTH_SUCCESS) => {}
                    Some(CACHING_SHA2_PERFORM_FULL_AUTH) if io.tls => {
                        io.write_packet(seq, &cleartext_password(password)).await?;
                        seq = seq.wrapping_add(1);
                    }
                    Some(CACHING_SHA2_PERFORM_FULL_AUTH) => {
                        io.write_packet(seq, &[CACHING_SHA2_REQUEST_PUBLIC_KEY])
                            .await?;
                        let key = io.read_packet(MAX_AUTH_PACKET).await?;
                        let key =
                            AuthMoreData::decode(&key.payload).map_err(Error::BackendProtocol)?;
                        let encrypted = rsa_encrypt_password(password, &nonce, &key.data)
                            .map_err(Error::BackendProtocol)?;
                        seq = seq.wrapping_add(2);
                        io.write_packet(seq, &encrypted).await?;
                        seq = seq.wrapping_add(1);
                    }
                    _ => {
                        return Err(Error::BackendProtocol(causeway_wire::CodecError::Protocol(
                            "unexpected auth more data",
                        )))
                    }
                }
            }
        }
    }
}

/// A connection of the router's own to a server, for one statement (KILL,
/// fencing), as a user's backend user or the monitor's.
pub struct SideConn {
    conn: Greeted,
    caps: CapabilityFlags,
    limit: std::time::Duration,
}

impl std::fmt::Debug for SideConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SideConn")
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl SideConn {
    /// Connects and logs in (each step bounded by the server's connect
    /// timeout).
    pub async fn open(endpoint: &Endpoint, user: &str, password: &[u8]) -> Result<SideConn> {
        let mut conn = connect(endpoint).await?;
        let caps = REQUIRED | CapabilityFlags::TRANSACTIONS | CapabilityFlags::DEPRECATE_EOF;
        let login = Login {
            user: Bytes::copy_from_slice(user.as_bytes()),
            database: None,
            charset: 255,
            capabilities: caps,
            max_packet_size: 1 << 24,
            connect_attrs: Vec::new(),
        };
        let limit = endpoint.connect_timeout;
        conn.io.set_write_timeout(Some(limit));
        tokio::time::timeout(
            limit,
            self::login(&mut conn, &login, password, endpoint.tls.as_ref(), None),
        )
        .await
        .map_err(|_| Error::backend_timeout("side connection login", limit))??;
        Ok(SideConn { conn, caps, limit })
    }

    /// Runs `sql` (one statement without a result set) and quits; its ERR
    /// is [`Error::BackendRefused`].
    pub async fn run(mut self, sql: &str) -> Result<()> {
        let mut buf = BytesMut::new();
        ComQuery::new(sql.to_string())
            .encode(self.caps, &mut buf)
            .map_err(Error::BackendProtocol)?;
        self.conn.io.write_packet(0, &buf).await?;
        let reply = tokio::time::timeout(self.limit, self.conn.io.read_packet(64 * 1024))
            .await
            .map_err(|_| Error::backend_timeout(sql, self.limit))??;
        self.quit().await;
        if is_err(&reply.payload) {
            let err = ErrPacket::decode(&reply.payload).map_err(Error::BackendProtocol)?;
            return Err(Error::BackendRefused(err));
        }
        Ok(())
    }

    /// COM_QUIT.
    pub async fn quit(mut self) {
        let _ = self.conn.io.write_packet(0, &[0x01]).await;
    }
}
