//! A text statement (COM_QUERY): classified once, its connection found
//! (`routing`), the user variables it uses brought there, the connection
//! brought to the session's settings (`conns`), forwarded (`forward`), and
//! its effects folded into the session's state. A statement the elected
//! writer refuses for `read_only` runs again where the new writer is,
//! within the writer's failover window; a read whose connection broke
//! before the client saw anything runs again on another server.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use causeway_wire::command::ComQuery;
use causeway_wire::{Chunk, ErrPacket};
use tracing::warn;

use super::driver::{Replied, Session};
use super::plan::router_err;
use crate::classify::Classified;
use crate::error::{Error, Result, Side};
use crate::ids::ServerId;
use crate::shared::Current;

impl Session<'_> {
    /// Runs one COM_QUERY.
    pub(super) async fn query(&mut self, first: Chunk, raw: &Bytes) -> Result<()> {
        if !first.more {
            if let Some(res) = super::causal::token_statement(raw) {
                return self.set_token(res).await;
            }
        }
        let sql = String::from_utf8_lossy(raw);
        self.observe_text(&sql);
        let class = if first.more {
            // Over 16 MiB: not worth parsing; the writer takes it.
            Classified::unparsed()
        } else {
            self.classify(&sql)
        };
        // A text EXECUTE assigns what its prepared statement assigns.
        let execute = match class.scan.as_ref().and_then(|s| s.prepare.as_ref()) {
            Some(crate::sqlscan::TextPrepare::Execute(name)) => Some(name.clone()),
            _ => None,
        };
        let exec_assigns: Option<Vec<Bytes>> = execute
            .as_ref()
            .and_then(|n| self.state.prepared_assigns(n))
            .map(|a| [class.assigns(), a].concat());
        let names: Vec<Bytes> = class.user_vars().cloned().collect();
        // A writer that refuses the statement for read_only did not run
        // it: it runs again where the new writer is, until the window of
        // the writer's cluster ends (then the client gets the refusal).
        let mut retried = false;
        let (i, sticky, out) = loop {
            let Some((i, why, sticky)) = self.connection_for(&sql, &class).await? else {
                return Ok(());
            };
            let i = match self.bring(i, &names).await? {
                Some(i) => i,
                None => return Ok(()),
            };
            if !self.sync(i, super::conns::Lid::of(&class)).await? {
                return Ok(());
            }
            // ROW_COUNT() / FOUND_ROWS() of a statement whose connection is
            // gone (or ran the replay since): what was read back, as a literal.
            let mut first = first.clone();
            if class.row_info && !self.state.last_on(self.held[i].conn.id) {
                match super::effects::answer_row_info(&sql, &self.state) {
                    Some(rewritten) => {
                        let mut p = BytesMut::with_capacity(rewritten.len() + 3);
                        ComQuery::new(Bytes::from(rewritten))
                            .encode(self.held[i].conn.key.caps, &mut p)
                            .map_err(Error::BackendProtocol)?;
                        first = Chunk {
                            payload: p.freeze(),
                            ..first
                        };
                    }
                    None => {
                        let err = router_err(
                            9005,
                            "Causeway: ROW_COUNT() and FOUND_ROWS() are answered only right after \
                             their statement while its backend connection stays with the session, \
                             or alone in a SELECT; the connection was released (multiplex_delay)",
                        );
                        return self.refuse("row_info", &err).await;
                    }
                }
            }
            let server = self.held[i].server;
            let window = self.failover_window(server);
            let whole = !first.more;
            // Only the elected writer's refusal of a statement that did
            // nothing before it (not a CALL, nothing pinned there).
            let hold = whole
                && !class.opaque
                && !self.state.pinned(server)
                && self.cur.members.writer.contains(&Some(server))
                && self.wait_until.is_none_or(|u| Instant::now() < u)
                && !window.is_zero();
            let out = match self.forward(first, i, None, hold).await {
                Ok(out) => out,
                Err(e) if e.side() == Side::Backend && !matches!(e, Error::SessionLost(_)) => {
                    let read = why == crate::route::Why::Read && !retried && whole;
                    if self.broke(i, e, read, whole).await? {
                        retried = true;
                        self.avoid(server);
                        continue;
                    }
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if !out.read_only_refused {
                break (i, sticky, out);
            }
            let name = self.cur.rt.servers[server].name.clone();
            self.shared.monitor.saw_read_only(&name);
            self.shared.metrics.read_only_retries.inc();
            let until = *self
                .wait_until
                .get_or_insert_with(|| Instant::now() + window);
            self.wait_for_writer(until).await?;
        };
        let mut effects = super::effects::effects(&class, &sql, sticky);
        if let Some(a) = &exec_assigns {
            effects.assigns = a;
        }
        self.after_statement(i, &effects, &out).await?;
        if execute.is_some() && exec_assigns.is_none() && !out.err {
            // Its statement was given in a variable: what it assigns is unknown.
            let server = self.held[i].server;
            self.state
                .pin_unknown(server, "EXECUTE of a statement prepared from a variable");
        }
        Ok(())
    }

    /// Plans the rest of this command without `server` (its connection
    /// just broke; the membership may not say so yet).
    pub(super) fn avoid(&mut self, server: ServerId) {
        let cur = &self.cur;
        let mut members = cur.members.clone();
        for m in members.members.iter_mut() {
            m.retain(|&s| s != server);
        }
        self.cur = Arc::new(Current {
            rt: cur.rt.clone(),
            pools: cur.pools.clone(),
            members,
            views: cur.views.clone(),
            routed: cur.routed.clone(),
        });
    }

    /// Held connection `i` broke while it ran a statement (`e`): it is
    /// dropped, and when session state lived there the session ends (the
    /// error), as it does when the client's side is tangled (part of a
    /// packet sent, a LOCAL INFILE file or a command over 16 MiB not read
    /// to its end: `whole` false). A read (`read`) that sent the client
    /// nothing may run again elsewhere (true). Otherwise the client gets
    /// ERR 2013 saying whether the statement took effect is unknown, and
    /// the session goes on.
    pub(super) async fn broke(
        &mut self,
        i: usize,
        e: Error,
        read: bool,
        whole: bool,
    ) -> Result<bool> {
        let server = self.held[i].conn.server.clone();
        let replied = self.replied;
        let why = e.report();
        warn!(server = %server, error = %why, "a backend connection broke during a statement");
        self.shared.monitor.hurry();
        self.lose(i, &why).await?;
        match replied {
            _ if !whole => return Err(e),
            Replied::Tangled => return Err(e),
            Replied::Nothing if read => {
                self.shared.metrics.read_retries.inc();
                return Ok(true);
            }
            _ => {}
        }
        let err = ErrPacket::new(
            2013,
            *b"HY000",
            format!(
                "Lost connection to MySQL server during query (Causeway: the connection to \
                 server '{server}' broke while the statement ran ({why}); whether it took \
                 effect is unknown, and it was not run again)"
            ),
        );
        self.refuse("backend_lost", &err).await?;
        Ok(false)
    }

    /// Before a statement on held connection `i`: the user variables it
    /// uses, read back from where they were assigned. The connection's
    /// index again (reading back may close a broken one), or `None` when
    /// an ERR was sent.
    pub(super) async fn bring(&mut self, i: usize, names: &[Bytes]) -> Result<Option<usize>> {
        if names.is_empty() {
            return Ok(Some(i));
        }
        let id = self.held[i].conn.id;
        let server = self.held[i].server;
        if !self.bring_vars(server, names).await? {
            let err = router_err(
                9005,
                "Causeway: a user variable this statement uses holds a value the router cannot \
                 move to the connection the statement needs",
            );
            self.refuse("user_variable", &err).await?;
            return Ok(None);
        }
        Ok(self.held.iter().position(|h| h.conn.id == id))
    }
}
