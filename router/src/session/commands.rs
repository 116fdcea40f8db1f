//! Commands that act on the session rather than run a statement: the
//! commands a server answers wherever the session is (PING, STATISTICS,
//! FIELD_LIST, ...), COM_INIT_DB, COM_SET_OPTION, COM_RESET_CONNECTION,
//! KILL, COM_CHANGE_USER.

use bytes::{Bytes, BytesMut};
use causeway_wire::command::ComChangeUser;
use causeway_wire::flags::Command;
use causeway_wire::{CapabilityFlags, Chunk, ErrPacket, OkPacket};
use tracing::info;

use super::driver::{Failure, Session};
use super::kill::{self, KillTarget};
use crate::error::{Error, Result};
use crate::frontend::auth::{self, Attempt};
use crate::frontend::handshake::send_err;
use crate::ids::ServerId;
use crate::route::Why;

impl Session<'_> {
    /// The connection of commands that are not statements (PING,
    /// STATISTICS, FIELD_LIST, ...): the transaction's, one the session
    /// holds, or one of the writer group.
    async fn home(&mut self) -> Result<Option<usize>> {
        if let Some(s) = self.state.exclusive() {
            if let Some(i) = self.held_index(s) {
                return Ok(Some(i));
            }
        }
        if let Some((s, _)) = self.state.last.on {
            if let Some(i) = self.held_index(s) {
                return Ok(Some(i));
            }
        }
        if !self.held.is_empty() {
            return Ok(Some(0));
        }
        let (writer, _) = self.user_groups();
        match self.in_group(writer, Why::Write).await {
            Ok((i, _)) => Ok(Some(i)),
            Err(Failure::Client(err)) => self.refuse("no_backend", &err).await.map(|()| None),
            Err(Failure::Fatal(e)) => Err(e),
        }
    }

    pub(super) async fn on_home(&mut self, first: Chunk) -> Result<()> {
        // COM_FIELD_LIST names a table: a temporary one lives somewhere.
        let target = if first.payload.first() == Some(&(Command::FieldList as u8)) {
            let name = first.payload[1..]
                .split(|&b| b == 0)
                .next()
                .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase());
            name.and_then(|n| self.state.temp_table_on(&n))
                .and_then(|s| self.held_index(s))
        } else {
            None
        };
        let i = match target {
            Some(i) => i,
            None => match self.home().await? {
                Some(i) => i,
                None => return Ok(()),
            },
        };
        if !self.sync(i, super::conns::Lid::Untouched).await? {
            return Ok(());
        }
        let out = self.forward(first, i, None, false).await?;
        let effects = super::state::Effects::default();
        self.after_statement(i, &effects, &out).await
    }

    /// COM_INIT_DB: run where the session is (or on its writer group), and
    /// the schema becomes the session's.
    pub(super) async fn init_db(&mut self, first: Chunk) -> Result<()> {
        let Some(i) = self.home().await? else {
            return Ok(());
        };
        if !self.sync(i, super::conns::Lid::Untouched).await? {
            return Ok(());
        }
        let db = Bytes::copy_from_slice(&first.payload[1..]);
        let out = self.forward(first, i, None, false).await?;
        if !out.err && out.tracked.schema.is_none() {
            // Servers without the schema tracker still changed it.
            self.state.wanted.schema = Some(db.clone());
            self.held[i].conn.state.schema = Some(db);
        }
        let effects = super::state::Effects::default();
        self.after_statement(i, &effects, &out).await
    }

    /// COM_SET_OPTION: the option becomes the session's (replayed on every
    /// connection it uses), answered by the connection it runs on.
    pub(super) async fn set_option(&mut self, first: Chunk, on: Option<bool>) -> Result<()> {
        let Some(i) = self.home().await? else {
            return Ok(());
        };
        if !self.sync(i, super::conns::Lid::Untouched).await? {
            return Ok(());
        }
        let out = self.forward(first, i, None, false).await?;
        if let (false, Some(on)) = (out.err, on) {
            self.state.wanted.multi_statements = on;
            self.held[i].conn.state.multi_statements = on;
        }
        Ok(())
    }

    /// COM_RESET_CONNECTION: what lives only on a connection ends there
    /// (the server resets it), settings and variables are forgotten, the
    /// schema stays; answered by a held connection when there is one.
    pub(super) async fn reset_connection(&mut self, first: Chunk) -> Result<()> {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(self.reset_connection_unboxed(first)).await
    }

    async fn reset_connection_unboxed(&mut self, first: Chunk) -> Result<()> {
        let pinned: Vec<ServerId> = self
            .held
            .iter()
            .map(|h| h.server)
            .filter(|&s| self.state.pinned(s))
            .collect();
        let answer = match self.state.exclusive().or(pinned.first().copied()) {
            Some(s) => self.held_index(s),
            None if !self.held.is_empty() => Some(0),
            None => None,
        };
        let mut ok = true;
        if let Some(i) = answer {
            let out = self.forward(first, i, None, false).await?;
            ok = !out.err;
            let c = &mut self.held[i].conn;
            c.state = c.state.after_reset(c.key.caps);
            c.stmts.clear();
            c.trackers = false;
        } else {
            self.local_ok().await?;
        }
        if !ok {
            return Ok(());
        }
        let limit = self.cur.rt.config.backend.connect_timeout;
        let answered = answer.map(|i| self.held[i].conn.id);
        let mut broken = Vec::new();
        for (k, h) in self.held.iter_mut().enumerate() {
            if Some(h.conn.id) == answered || !pinned.contains(&h.server) {
                continue;
            }
            if !h.conn.reset(limit).await {
                broken.push(k);
            }
        }
        for k in broken.into_iter().rev() {
            let h = self.held.remove(k);
            h.conn.quit().await;
        }
        let schema = self.state.wanted.schema.clone();
        self.state.reset();
        self.state.wanted.schema = schema;
        self.state.wanted.multi_statements = self.caps.contains(CapabilityFlags::MULTI_STATEMENTS);
        // The server's reset puts the character set variables at its
        // global defaults, not at the login's.
        self.state.wanted.charset = super::replay::CharsetBase::Server;
        self.stmts.clear();
        self.causal.token = None;
        self.publish();
        Ok(())
    }

    /// KILL from the client, addressed by router connection id. Returns
    /// false when the session must end (it killed its own connection).
    pub(super) async fn kill(&mut self, target: KillTarget) -> Result<bool> {
        let own = target.id() == self.id;
        if own && matches!(target, KillTarget::Connection(_)) {
            let err = ErrPacket::new(1317, *b"70100", "Query execution was interrupted");
            let _ = self.send_client_err(&err).await;
            self.held.clear();
            self.count_pins();
            self.client.shutdown().await;
            return Ok(false);
        }
        match kill::execute(self.shared, Some(&self.user), target).await {
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
    /// users; the session's connections go back (or are reset: what lived
    /// on them ends, as MySQL resets the session), its state is forgotten,
    /// and the new user's schema is checked. Returns false when it failed
    /// and the session was closed (as MySQL does).
    pub(super) async fn change_user(&mut self, first: Chunk) -> Result<bool> {
        // Boxed: large and off the per-statement path (see ARCHITECTURE.md,
        // "Future sizes").
        Box::pin(self.change_user_unboxed(first)).await
    }

    async fn change_user_unboxed(&mut self, first: Chunk) -> Result<bool> {
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
            auth::authenticate(
                &mut self.client,
                &mut seq,
                attempt,
                self.shared,
                auth::Door::App,
            ),
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
                self.close_all().await;
                self.count_pins();
                return Ok(false);
            }
        };
        self.close_all().await;
        info!(from = %self.user, to = %authed.user, "user changed");
        self.user = authed.user;
        self.login.user = cu.username;
        if let Some(cs) = cu.charset {
            self.login.charset = cs as u8;
        }
        let schema = Some(cu.database).filter(|d| !d.is_empty());
        self.login.database = schema.clone();
        self.state.reset();
        self.state.wanted.schema = schema;
        self.state.wanted.multi_statements = self.caps.contains(CapabilityFlags::MULTI_STATEMENTS);
        self.stmts.clear();
        self.causal.token = None;
        self.affinity.clear();
        self.client_seq = seq;
        self.start().await
    }
}
