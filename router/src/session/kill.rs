//! KILL addressed to the router's connection ids. Clients see the router's
//! id (the handshake's connection id); the router maps it to the session's
//! backend thread and issues the KILL on a separate backend connection, as
//! the same user (MySQL lets a user kill its own threads).

use bytes::{Bytes, BytesMut};
use causeway_wire::command::ComQuery;
use causeway_wire::generic::is_err;
use causeway_wire::{CapabilityFlags, ErrPacket};

use crate::backend::connect::{self, Login, REQUIRED};
use crate::error::{Error, Result};
use crate::Shared;

/// What a KILL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillTarget {
    /// `KILL QUERY n`: stop the running statement.
    Query(u32),
    /// `KILL n`, `KILL CONNECTION n`, COM_PROCESS_KILL: end the session.
    Connection(u32),
}

impl KillTarget {
    /// The router connection id addressed.
    pub fn id(self) -> u32 {
        match self {
            Self::Query(id) | Self::Connection(id) => id,
        }
    }
}

/// Recognises `KILL [QUERY | CONNECTION] <id>` (any case, optional `;`).
pub fn parse(sql: &[u8]) -> Option<KillTarget> {
    let text = std::str::from_utf8(sql).ok()?;
    let text = text.trim().trim_end_matches(';').trim_end();
    let mut words = text.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("kill") {
        return None;
    }
    let mut word = words.next()?;
    let query = if word.eq_ignore_ascii_case("query") {
        word = words.next()?;
        true
    } else if word.eq_ignore_ascii_case("connection") {
        word = words.next()?;
        false
    } else {
        false
    };
    let id: u32 = word.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(if query {
        KillTarget::Query(id)
    } else {
        KillTarget::Connection(id)
    })
}

/// Kills `target` for a session logged in as `user`. An ERR to relay to the
/// client is [`Error::BackendRefused`].
pub async fn execute(shared: &Shared, user: &str, target: KillTarget) -> Result<()> {
    let id = target.id();
    let info = shared
        .sessions
        .lock()
        .ok()
        .and_then(|s| s.get(&id).cloned());
    let Some(info) = info else {
        let msg = format!("Unknown thread id: {id}");
        return Err(Error::BackendRefused(ErrPacket::new(1094, *b"HY000", msg)));
    };
    if info.user != user {
        let msg = format!("You are not owner of thread {id}");
        return Err(Error::BackendRefused(ErrPacket::new(1095, *b"HY000", msg)));
    }
    let password = shared
        .users
        .get(user)
        .map(|u| u.password.clone())
        .unwrap_or_default();
    let mut conn = connect::connect(shared).await?;
    let caps = REQUIRED | CapabilityFlags::TRANSACTIONS | CapabilityFlags::DEPRECATE_EOF;
    let login = Login {
        user: Bytes::copy_from_slice(user.as_bytes()),
        database: None,
        charset: 255,
        capabilities: caps,
        max_packet_size: 1 << 24,
        connect_attrs: Vec::new(),
    };
    connect::login(&mut conn, &login, &password, shared).await?;
    let sql = match target {
        KillTarget::Query(_) => format!("KILL QUERY {}", info.backend_thread),
        KillTarget::Connection(_) => format!("KILL CONNECTION {}", info.backend_thread),
    };
    let mut buf = BytesMut::new();
    ComQuery::new(sql)
        .encode(caps, &mut buf)
        .map_err(Error::BackendProtocol)?;
    conn.io.write_packet(0, &buf).await?;
    let reply = conn.io.read_packet(64 * 1024).await?;
    let _ = conn.io.write_packet(0, &[0x01]).await;
    if is_err(&reply.payload) {
        let err = ErrPacket::decode(&reply.payload).map_err(Error::BackendProtocol)?;
        return Err(Error::BackendRefused(err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_of_kill() {
        assert_eq!(parse(b"KILL 12"), Some(KillTarget::Connection(12)));
        assert_eq!(parse(b"kill query 7;"), Some(KillTarget::Query(7)));
        assert_eq!(
            parse(b"  Kill Connection  9 ; "),
            Some(KillTarget::Connection(9))
        );
        assert_eq!(parse(b"KILL"), None);
        assert_eq!(parse(b"KILL QUERY"), None);
        assert_eq!(parse(b"KILL 1 2"), None);
        assert_eq!(parse(b"SELECT 'KILL 1'"), None);
        assert_eq!(parse(b"KILL -1"), None);
    }
}
