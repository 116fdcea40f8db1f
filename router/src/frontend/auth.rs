//! Authenticating clients against the router's users, as MySQL does.
//!
//! ```text
//! client plugin != user's plugin --> AuthSwitchRequest (fresh nonce) <-- response
//! mysql_native_password : verify SHA1 scramble                      --> OK | ERR 1045
//! caching_sha2_password : fast path: verify SHA256 scramble --> 01 03 --> OK
//!                         full auth (first login / always / the scramble
//!                         did not match, as in MySQL): 01 04
//!                           <-- TLS: password NUL
//!                           <-- plain: 02 --> 01 public key PEM <-- RSA(password ^ nonce)
//! ```
//! The final OK is the caller's (it comes from the backend login).

use bytes::{Bytes, BytesMut};
use causeway_wire::auth::{
    caching_sha2_digest, caching_sha2_verify, constant_time_eq, generate_nonce,
    native_password_hash, native_password_verify, parse_cleartext_password, MYSQL_NATIVE_PASSWORD,
};
use causeway_wire::handshake::{AuthMoreData, AuthSwitchRequest, CACHING_SHA2_REQUEST_PUBLIC_KEY};
use causeway_wire::CodecError;

pub use crate::config::Door;
use crate::config::{AuthPlugin, FullAuth};
use crate::error::{Error, Result};
use crate::io::PacketIo;
use crate::shared::Shared;

/// Largest packet accepted during authentication.
pub const MAX_AUTH_PACKET: usize = 64 * 1024;

/// The client's first auth attempt (from the handshake response or COM_CHANGE_USER).
#[derive(Clone)]
pub struct Attempt {
    /// User name.
    pub user: Bytes,
    /// Plugin the response was computed with (`None`: the client has no
    /// pluggable auth, so mysql_native_password).
    pub plugin: Option<Bytes>,
    /// The response.
    pub response: Bytes,
    /// The nonce it was computed with.
    pub nonce: Vec<u8>,
    /// Whether the client understands AuthSwitchRequest.
    pub can_switch: bool,
    /// Force a switch even when the plugin matches (COM_CHANGE_USER, whose
    /// response was computed over the old nonce).
    pub always_switch: bool,
}

/// A client that authenticated.
#[derive(Clone)]
pub struct Authenticated {
    /// The user name.
    pub user: String,
    /// The user's password (for the backend login).
    pub password: Vec<u8>,
}

/// Stands in for a secret in Debug output.
const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("user", &self.user)
            .field("plugin", &self.plugin)
            .field("response", &REDACTED)
            .field("nonce", &REDACTED)
            .field("can_switch", &self.can_switch)
            .field("always_switch", &self.always_switch)
            .finish()
    }
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("user", &self.user)
            .field("password", &REDACTED)
            .finish()
    }
}

fn denied(user: &str, reason: &'static str, using_password: bool) -> Error {
    Error::AccessDenied {
        user: user.to_string(),
        reason,
        using_password,
    }
}

/// Reads the client's next auth packet, checking its sequence id.
pub(crate) async fn read(client: &mut PacketIo, seq: &mut u8) -> Result<Bytes> {
    let p = match client.read_packet(MAX_AUTH_PACKET).await {
        Ok(p) => p,
        Err(e) => {
            // A packet too large was still sent: the ERR that answers it
            // follows it in sequence.
            if matches!(e, Error::ClientProtocol(CodecError::TooLarge { .. })) {
                *seq = seq.wrapping_add(1);
            }
            return Err(e);
        }
    };
    if p.seq != *seq {
        return Err(Error::ClientProtocol(CodecError::OutOfSequence {
            expected: *seq,
            got: p.seq,
        }));
    }
    *seq = seq.wrapping_add(1);
    Ok(p.payload)
}

async fn write(client: &mut PacketIo, seq: &mut u8, payload: &[u8]) -> Result<()> {
    client.write_packet(*seq, payload).await?;
    *seq = seq.wrapping_add(1);
    Ok(())
}

/// Authenticates `attempt` against the users of `door`; `seq` is the
/// sequence id of the server's next packet, kept current so the caller can
/// send the final OK or an ERR.
pub async fn authenticate(
    client: &mut PacketIo,
    seq: &mut u8,
    attempt: Attempt,
    shared: &Shared,
    door: Door,
) -> Result<Authenticated> {
    let name = String::from_utf8_lossy(&attempt.user).into_owned();
    let rt = shared.runtime();
    let found = match door {
        Door::App => rt.users.get(&name).map(|u| (u.plugin, &u.password[..])),
        Door::Admin => rt.admin_users.get(&name).map(|(p, pw)| (*p, &pw[..])),
    };
    let Some((plugin, password)) = found else {
        return Err(denied(&name, "unknown user", !attempt.response.is_empty()));
    };
    let user = Credentials {
        plugin,
        password,
        door,
    };
    let wanted = user.plugin.name().as_bytes();
    let used = attempt
        .plugin
        .as_deref()
        .unwrap_or(MYSQL_NATIVE_PASSWORD.as_bytes());
    let mut nonce = attempt.nonce;
    let mut response = attempt.response;
    if used != wanted || attempt.always_switch {
        if !attempt.can_switch {
            return Err(Error::ClientAuthUnsupported(user.plugin.name()));
        }
        let fresh = generate_nonce();
        let mut data = fresh.to_vec();
        data.push(0);
        let mut buf = BytesMut::new();
        AuthSwitchRequest {
            plugin_name: Bytes::from_static(wanted),
            plugin_data: data.into(),
        }
        .encode(&mut buf);
        write(client, seq, &buf).await?;
        response = read(client, seq).await?;
        nonce = fresh.to_vec();
    }
    let using_password = !response.is_empty();
    let ok = match user.plugin {
        AuthPlugin::MysqlNativePassword => {
            if user.password.is_empty() {
                response.is_empty()
            } else {
                let stored = native_password_hash(user.password);
                native_password_verify(&response, &nonce, &stored)
            }
        }
        AuthPlugin::CachingSha2Password => {
            caching_sha2(client, seq, &name, &user, &response, &nonce, shared).await?
        }
    };
    if !ok {
        return Err(denied(&name, "wrong password", using_password));
    }
    Ok(Authenticated {
        user: name,
        password: user.password.to_vec(),
    })
}

/// What a user is checked against.
struct Credentials<'a> {
    plugin: AuthPlugin,
    password: &'a [u8],
    door: Door,
}

/// The caching_sha2_password exchange after the client's scramble.
async fn caching_sha2(
    client: &mut PacketIo,
    seq: &mut u8,
    name: &str,
    user: &Credentials<'_>,
    response: &[u8],
    nonce: &[u8],
    shared: &Shared,
) -> Result<bool> {
    if user.password.is_empty() || response.is_empty() {
        // An empty password is sent as an empty response; no exchange follows.
        return Ok(user.password.is_empty() && response.is_empty());
    }
    let full = match shared.config.frontend.caching_sha2_full_auth {
        FullAuth::Always => true,
        FullAuth::Never => false,
        FullAuth::FirstLogin => !shared
            .full_auth_done
            .lock()
            .map(|done| done.contains(&(user.door, name.to_string())))
            .unwrap_or(false),
    };
    // A fast scramble that does not match is not a refusal: MySQL answers
    // it as it answers a cache miss, by asking for the password (over TLS
    // or RSA), and some clients rely on that after an auth switch.
    if !full && caching_sha2_verify(response, nonce, &caching_sha2_digest(user.password)) {
        let mut buf = BytesMut::new();
        AuthMoreData::fast_auth_success().encode(&mut buf);
        // Queued: it leaves with the OK (or ERR) that follows, in one write.
        client.queue_packet(*seq, &buf);
        *seq = seq.wrapping_add(1);
        return Ok(true);
    }
    let mut buf = BytesMut::new();
    AuthMoreData::perform_full_auth().encode(&mut buf);
    write(client, seq, &buf).await?;
    let mut packet = read(client, seq).await?;
    let password = if client.tls {
        parse_cleartext_password(&packet).to_vec()
    } else {
        let key = shared.rsa_key().await?;
        if packet[..] == [CACHING_SHA2_REQUEST_PUBLIC_KEY] {
            let mut buf = BytesMut::new();
            AuthMoreData {
                data: Bytes::copy_from_slice(key.public_key_pem().as_bytes()),
            }
            .encode(&mut buf);
            write(client, seq, &buf).await?;
            packet = read(client, seq).await?;
        }
        match key.decrypt_password(&packet, nonce) {
            Ok(p) => p,
            // A cleartext password over plain TCP, or garbage: refused, as MySQL does.
            Err(_) => return Ok(false),
        }
    };
    let ok = constant_time_eq(&password, user.password);
    if ok {
        if let Ok(mut done) = shared.full_auth_done.lock() {
            done.insert((user.door, name.to_string()));
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secrets() {
        let a = Authenticated {
            user: "app".into(),
            password: b"hunter2".to_vec(),
        };
        let shown = format!("{a:?}");
        assert!(
            shown.contains("app") && !shown.contains("hunter2"),
            "{shown}"
        );
        let attempt = Attempt {
            user: Bytes::from_static(b"app"),
            plugin: None,
            response: Bytes::from_static(b"scramble-bytes"),
            nonce: b"nonce-bytes".to_vec(),
            can_switch: true,
            always_switch: false,
        };
        let shown = format!("{attempt:?}");
        assert!(
            !shown.contains("scramble") && !shown.contains("nonce-bytes"),
            "{shown}"
        );
    }
}
