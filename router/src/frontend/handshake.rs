//! The connection phase facing a client, ending with both legs logged in.
//!
//! ```text
//! [first client only: a backend's greeting, to learn its version and
//!  capabilities]                     (unreachable: ERR 2003 in place of our greeting)
//! --> HandshakeV10 (backend's version, our id and nonce, capabilities ∩ backend's)
//! <-- [SSLRequest --> TLS] HandshakeResponse41
//! auth against the router's users     (ERR 1045 like MySQL)
//! ```
//! The session then opens its first backend connection (with the client's
//! capabilities, schema, collation, attributes) and answers the client with
//! OK or the backend's ERR (e.g. 1049 unknown database). Capabilities are
//! the intersection on both legs, so packets in the command phase can be
//! forwarded unchanged. Compression is the exception: each leg negotiates
//! its own (the client's as MySQL does, zlib or zstd when the backends
//! offer them; the backends' by `backend.compression`), and the client's
//! starts after the login's OK.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use causeway_wire::auth::{generate_nonce, CACHING_SHA2_PASSWORD};
use causeway_wire::compress::Algorithm;
use causeway_wire::handshake::{ClientHandshake, HandshakeResponse, HandshakeV10};
use causeway_wire::{CapabilityFlags as C, StatusFlags};
use tokio::net::TcpStream;
use tracing::warn;

use crate::backend::connect::{self, Login, REQUIRED};
use crate::config::Role;
use crate::error::{Error, Result, Side};
use crate::frontend::auth::{self, Attempt};
use crate::frontend::gate::Limits;
use crate::io::PacketIo;
use crate::shared::{Greeting, Shared};

/// Capabilities the router offers clients (before intersecting with the
/// backend's).
pub const OFFERED: C = C::LONG_PASSWORD
    .union(C::FOUND_ROWS)
    .union(C::LONG_FLAG)
    .union(C::CONNECT_WITH_DB)
    .union(C::NO_SCHEMA)
    .union(C::ODBC)
    .union(C::LOCAL_FILES)
    .union(C::IGNORE_SPACE)
    .union(C::PROTOCOL_41)
    .union(C::INTERACTIVE)
    .union(C::IGNORE_SIGPIPE)
    .union(C::TRANSACTIONS)
    .union(C::RESERVED)
    .union(C::SECURE_CONNECTION)
    .union(C::MULTI_STATEMENTS)
    .union(C::MULTI_RESULTS)
    .union(C::PS_MULTI_RESULTS)
    .union(C::PLUGIN_AUTH)
    .union(C::CONNECT_ATTRS)
    .union(C::PLUGIN_AUTH_LENENC_CLIENT_DATA)
    .union(C::CAN_HANDLE_EXPIRED_PASSWORDS)
    .union(C::SESSION_TRACK)
    .union(C::DEPRECATE_EOF)
    .union(C::OPTIONAL_RESULTSET_METADATA)
    .union(C::QUERY_ATTRIBUTES)
    .union(C::COMPRESS)
    .union(C::ZSTD_COMPRESSION_ALGORITHM);

/// Capabilities that belong to one leg only (its framing).
const LEG_ONLY: C = C::SSL
    .union(C::COMPRESS)
    .union(C::ZSTD_COMPRESSION_ALGORITHM);

/// The client authenticated; its first backend connection is next.
#[derive(Debug)]
pub struct Established {
    /// The client leg.
    pub client: PacketIo,
    /// Capabilities in force on the client leg (framing ones aside).
    pub caps: C,
    /// The compressed protocol negotiated, to start after the login's OK.
    pub compression: Option<Algorithm>,
    /// The user logged in.
    pub user: String,
    /// What the backend connections log in with (user and password are the
    /// runtime's backend credentials of `user`).
    pub login: Login,
    /// Sequence id of the next packet to the client (the final OK or ERR).
    pub seq: u8,
}

/// The capabilities offered to a client of a backend that offers `backend`.
pub fn offered(backend: C, tls: bool) -> C {
    let mut caps = (OFFERED & backend) | REQUIRED;
    caps.set(C::SSL, tls);
    caps
}

/// Capabilities the admin interface offers: no compression, no query
/// attributes, no optional metadata (its answers are made by the router).
pub const ADMIN_OFFERED: C = OFFERED
    .difference(C::COMPRESS)
    .difference(C::ZSTD_COMPRESSION_ALGORITHM)
    .difference(C::QUERY_ATTRIBUTES)
    .difference(C::OPTIONAL_RESULTSET_METADATA)
    .difference(C::SESSION_TRACK)
    .difference(C::LOCAL_FILES)
    .union(REQUIRED);

/// What the admin interface greets with (it needs no backend).
pub fn admin_greeting() -> Greeting {
    Greeting {
        server_version: Bytes::from(format!(
            "8.4.0-causeway-admin-{}",
            env!("CARGO_PKG_VERSION")
        )),
        capabilities: ADMIN_OFFERED,
        charset: 255,
    }
}

/// Runs the connection phase within `frontend.handshake_timeout`, against
/// the users of `door`. On failure the client gets an ERR packet where the
/// protocol allows one.
pub async fn establish(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u32,
    shared: &Shared,
    door: auth::Door,
) -> Result<Established> {
    let f = &shared.config.frontend;
    let mut client = PacketIo::new(Box::new(tcp), Side::Client, f.max_packet_size);
    let mut seq = 0u8;
    let steps = steps(&mut client, &mut seq, id, shared, door);
    let res = match tokio::time::timeout(f.handshake_timeout, steps).await {
        Ok(r) => r,
        Err(_) => Err(Error::ClientTimeout("handshake")),
    };
    // Repeated failures of a user from one address slow down the answer to
    // its next attempts, right or wrong (outside the handshake timeout).
    let ip = peer.ip();
    match &res {
        Ok((_, _, user, _)) => {
            pace(shared, user, peer).await;
            shared.gate.succeeded(user.as_bytes(), ip);
        }
        Err(Error::AccessDenied { user, .. }) => {
            pace(shared, user, peer).await;
            shared
                .gate
                .failed(user.as_bytes(), ip, std::time::Instant::now());
        }
        Err(_) => {}
    }
    match res {
        Ok((caps, compression, user, login)) => Ok(Established {
            client,
            caps,
            compression,
            user,
            login,
            seq,
        }),
        Err(e) => {
            send_err(&mut client, seq, &e, peer).await;
            Err(e)
        }
    }
}

/// Waits as long as `user`'s failed logins from `peer` call for.
async fn pace(shared: &Shared, user: &str, peer: SocketAddr) {
    let limits = Limits::of(&shared.config.frontend);
    let (failures, delay) = shared.gate.delay(user.as_bytes(), peer.ip(), &limits);
    if delay.is_zero() {
        return;
    }
    shared.metrics.login_delays.inc();
    warn!(user, failures, delay = ?delay, "failed logins in a row from this address; the answer is delayed");
    tokio::time::sleep(delay).await;
}

/// What clients are greeted with: learned once from a backend greeting (a
/// server of the first writer hostgroup that answers; then the others). The
/// router learns it at start ([`learn_greeting`]),
/// so clients need no backend to log in.
pub async fn greeting(shared: &Shared) -> Result<Greeting> {
    if let Some(g) = shared.greeting.lock().ok().and_then(|g| g.clone()) {
        return Ok(g);
    }
    let rt = shared.runtime();
    let mut order: Vec<&crate::runtime::Server> = rt.servers.iter().collect();
    order.sort_by_key(|s| rt.groups[s.group].role != Role::Writer);
    let mut last = None;
    for s in order {
        match connect::connect(&s.endpoint).await {
            Ok(mut g) => {
                // Only the greeting was wanted: close without answering it.
                g.io.shutdown().await;
                let learned = Greeting {
                    server_version: g.greeting.server_version.clone(),
                    capabilities: g.greeting.capabilities,
                    charset: g.greeting.charset,
                };
                if let Ok(mut slot) = shared.greeting.lock() {
                    *slot = Some(learned.clone());
                }
                return Ok(learned);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(Error::Internal("no servers configured".into())))
}

/// Learns what clients are greeted with, at start and until it is known,
/// so that logins need no backend. Runs until the router stops.
pub async fn learn_greeting(shared: &Shared) {
    loop {
        if greeting(shared).await.is_ok() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sends the ERR for `e` (if any), bounded in time, and closes.
pub async fn send_err(client: &mut PacketIo, seq: u8, e: &Error, peer: SocketAddr) {
    if let Some(err) = e.client_err(&peer.ip().to_string()) {
        let mut buf = BytesMut::new();
        err.encode(C::PROTOCOL_41, &mut buf);
        let _ = tokio::time::timeout(Duration::from_secs(1), client.write_packet(seq, &buf)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), client.shutdown()).await;
}

async fn steps(
    client: &mut PacketIo,
    seq: &mut u8,
    id: u32,
    shared: &Shared,
    door: auth::Door,
) -> Result<(C, Option<Algorithm>, String, Login)> {
    let g = match door {
        auth::Door::App => greeting(shared).await?,
        auth::Door::Admin => admin_greeting(),
    };
    let offered = offered(g.capabilities, shared.tls_acceptor.is_some());
    let nonce = generate_nonce();
    let greeting = HandshakeV10 {
        server_version: g.server_version.clone(),
        connection_id: id,
        auth_plugin_data: Bytes::copy_from_slice(&nonce),
        capabilities: offered,
        charset: g.charset,
        status: StatusFlags::AUTOCOMMIT,
        auth_plugin_name: Bytes::from_static(CACHING_SHA2_PASSWORD.as_bytes()),
    };
    let mut buf = BytesMut::new();
    greeting.encode(&mut buf);
    client.write_packet(0, &buf).await?;
    *seq = 1;
    let payload = auth::read(client, seq).await?;
    let resp = match ClientHandshake::decode(&payload).map_err(Error::BadHandshake)? {
        ClientHandshake::Response(r) => r,
        ClientHandshake::SslRequest(_) => {
            let Some(acceptor) = &shared.tls_acceptor else {
                return Err(Error::ClientUnexpected(
                    "SSLRequest, but TLS was not offered",
                ));
            };
            client.accept_tls(acceptor).await?;
            let payload = auth::read(client, seq).await?;
            HandshakeResponse::decode(&payload).map_err(Error::BadHandshake)?
        }
    };
    if shared.config.frontend.tls.required && !client.tls {
        return Err(Error::InsecureTransport);
    }
    let compression = Algorithm::negotiate(offered, resp.capabilities, resp.zstd_level);
    if let Some(Algorithm::Zstd(level)) = compression {
        if !(1..=22).contains(&level) {
            return Err(Error::BadCompressionLevel(level));
        }
    }
    let caps = resp.capabilities & offered & !LEG_ONLY;
    let attempt = Attempt {
        user: resp.username.clone(),
        plugin: if caps.contains(C::PLUGIN_AUTH) {
            resp.auth_plugin_name.clone()
        } else {
            None
        },
        response: resp.auth_response.clone(),
        nonce: nonce.to_vec(),
        can_switch: caps.contains(C::PLUGIN_AUTH),
        always_switch: false,
    };
    let authed = auth::authenticate(client, seq, attempt, shared, door).await?;
    let login = Login {
        user: resp.username,
        database: resp.database.filter(|d| !d.is_empty()),
        charset: resp.charset,
        capabilities: caps,
        max_packet_size: resp.max_packet_size,
        connect_attrs: resp.connect_attrs,
    };
    Ok((caps, compression, authed.user, login))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_capabilities_follow_the_backend_and_tls() {
        let backend = C::from_bits_retain(0xdfff_ffff) - C::QUERY_ATTRIBUTES;
        let caps = offered(backend, false);
        assert!(caps.contains(C::DEPRECATE_EOF | C::PROTOCOL_41 | C::MULTI_RESULTS));
        assert!(!caps.contains(C::QUERY_ATTRIBUTES), "backend lacks it");
        assert!(!caps.contains(C::SSL));
        assert!(caps.contains(C::COMPRESS | C::ZSTD_COMPRESSION_ALGORITHM));
        assert!(offered(backend, true).contains(C::SSL));
        let old = backend - C::ZSTD_COMPRESSION_ALGORITHM;
        assert!(!offered(old, false).contains(C::ZSTD_COMPRESSION_ALGORITHM));
    }
}
