//! Forwarding a command to a held connection and streaming the response
//! back chunk by chunk while a [`ResponseTracker`] says when it is complete.
//! Every OK packet's trackers are read on the way ([`Tracked`]) and the
//! packet is rebuilt for the client when what the client tracks differs
//! ([`track::client_ok`]); GTIDs become the session's needed set.
//!
//! ```text
//! command chunks ──> backend ──> response chunks ──> client
//!                                  ├─ OK / result end: Tracked, GTIDs, client's view of the OK
//!                                  ├─ PREPARE_OK: the router's statement id
//!                                  └─ LOCAL INFILE request: the client's file ──> backend
//! ```

use bytes::{Bytes, BytesMut};
use causeway_wire::response::{PacketRole, ResponseTracker};
use causeway_wire::{CapabilityFlags, Chunk, OkPacket, StatusFlags};
use tracing::warn;

use std::time::Duration;

use super::driver::{next_chunk_of_command, Replied, Session};
use super::track::{self, Tracked};
use crate::error::{Error, Result};
use crate::health::{ShunReason, Status};

/// What a forwarded command's response was.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Status flags of its last OK / EOF.
    pub status: Option<StatusFlags>,
    /// It ended with an ERR.
    pub err: bool,
    /// A COM_STMT_PREPARE_OK: the server's statement id and parameters.
    pub prepared: Option<(u32, u16)>,
    /// Its trackers, folded over its OK packets.
    pub tracked: Tracked,
    /// `last_insert_id` of its last OK packet.
    pub insert_id: u64,
    /// The server refused it because it is read-only, and the ERR was
    /// held back from the client (see [`read_only_refusal`]): it was not
    /// executed, and may run on the new writer.
    pub read_only_refused: bool,
}

/// Whether an ERR payload says the server refused the statement because it
/// is read-only: 1290 naming `--read-only` or `--super-read-only`
/// (ER_OPTION_PREVENTS_STATEMENT also serves other options), or 1836
/// (ER_READ_ONLY_MODE). Such a statement was not executed.
pub fn read_only_refusal(payload: &Bytes) -> bool {
    match causeway_wire::ErrPacket::decode(payload) {
        Ok(e) if e.code == 1836 => true,
        Ok(e) if e.code == 1290 => e
            .message
            .windows(b"read-only".len())
            .any(|w| w.eq_ignore_ascii_case(b"read-only")),
        _ => false,
    }
}

impl Session<'_> {
    /// Forwards a command to held connection `i` and streams its response.
    /// With `prepare_id`, a COM_STMT_PREPARE_OK is rewritten to carry that id.
    /// With `hold_read_only`, a response that is only a read-only refusal
    /// is not sent to the client ([`Outcome::read_only_refused`]).
    pub(super) async fn forward(
        &mut self,
        first: Chunk,
        i: usize,
        prepare_id: Option<u32>,
        hold_read_only: bool,
    ) -> Result<Outcome> {
        let caps = self.held[i].conn.key.caps;
        let mut tracker = ResponseTracker::for_command(&first.payload, caps);
        self.active.store(
            self.held[i].conn.thread_id,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.replied = Replied::Nothing;
        let backend = &mut self.held[i].conn.io;
        backend.queue_chunk(&first);
        let mut more = first.more;
        let limit = self.shared.config.frontend.net_read_timeout;
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
        self.stream_response(i, &mut tracker, prepare_id, hold_read_only, &mut out)
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
        hold_read_only: bool,
        out: &mut Outcome,
    ) -> Result<()> {
        let mut done = false;
        let mut first_packet = true;
        let mut started = false;
        let mut timeout = self
            .backend_timeout
            .take()
            .map(|t| (Box::pin(tokio::time::sleep(t)), t));
        loop {
            let mut c = self
                .backend_chunk(i, started, &mut timeout)
                .await?
                .ok_or_else(|| {
                    Error::BackendIo(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
                })?;
            started = true;
            self.writer_read_answered();
            if c.first {
                let step = tracker.feed(&c.payload).map_err(Error::BackendProtocol)?;
                done = step.done;
                if matches!(step.role, PacketRole::Row) {
                    self.obs.rows += 1;
                }
                match step.role {
                    PacketRole::Err
                        if first_packet
                            && hold_read_only
                            && done
                            && !c.more
                            && read_only_refusal(&c.payload) =>
                    {
                        out.err = true;
                        out.read_only_refused = true;
                        return Ok(());
                    }
                    PacketRole::Err => {
                        out.err = true;
                        self.observe_backend_err(&c.payload);
                    }
                    PacketRole::Ok | PacketRole::ResultSetEnd => {
                        if let Some(p) = self.on_ok(i, &c.payload, out) {
                            c.payload = p;
                        }
                    }
                    PacketRole::Row if self.own_row && !c.more => {
                        let backend = self.held[i].conn.thread_id;
                        if let Some(p) = super::connid::own_row(&c.payload, backend, self.id) {
                            c.payload = p.into();
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
                first_packet = false;
            }
            let buffered = self.held[i].conn.io.has_buffered_chunk();
            self.client.queue_chunk(&c);
            self.replied = if c.more {
                Replied::Tangled
            } else {
                Replied::Packets
            };
            self.client_seq = c.seq.wrapping_add(1);
            if !c.more {
                if done {
                    return self.client.flush().await;
                }
                if tracker.awaiting_client_data() {
                    self.replied = Replied::Tangled;
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

    /// The next chunk of held connection `i`'s answer. Until the first
    /// one came (`started`), the wait also ends when the monitor finds the
    /// server unreachable (a stalled or dead server releases the sessions
    /// waiting on it); at any point, when `timeout` (the statement's
    /// backend timeout, one timer per answer) fires, and the statement is
    /// then killed on the server. Either ends with an error: the
    /// connection is then broken.
    async fn backend_chunk(
        &mut self,
        i: usize,
        started: bool,
        timeout: &mut Option<(std::pin::Pin<Box<tokio::time::Sleep>>, Duration)>,
    ) -> Result<Option<Chunk>> {
        if started && timeout.is_none() {
            return self.held[i].conn.io.next_chunk().await;
        }
        enum Woke {
            Chunk(Result<Option<Chunk>>),
            Timeout(Duration),
            Unreachable,
        }
        let server = self.held[i].conn.server.clone();
        let mut health = (!started).then(|| self.shared.monitor.subscribe());
        if let Some(h) = &mut health {
            // Only a change seen after the statement was sent counts.
            h.borrow_and_update();
        }
        let io = &mut self.held[i].conn.io;
        let woke = loop {
            tokio::select! {
                biased;
                c = io.next_chunk() => break Woke::Chunk(c),
                _ = async {
                    match timeout.as_mut() {
                        Some((sleep, _)) => sleep.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => break Woke::Timeout(timeout.as_ref().map(|(_, t)| *t).unwrap_or_default()),
                r = async {
                    match &mut health {
                        Some(h) => h.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(h) = &mut health else { continue };
                    if r.is_err() {
                        health = None;
                        continue;
                    }
                    let gone = h.borrow_and_update().get(&*server).is_some_and(|h| {
                        matches!(h.status, Status::Shunned { reason: ShunReason::Unreachable })
                    });
                    if gone {
                        break Woke::Unreachable;
                    }
                }
            }
        };
        match woke {
            Woke::Chunk(c) => c,
            Woke::Timeout(t) => {
                // To end the statement on the server.
                self.kill_abandoned(i);
                Err(Error::backend_timeout("the statement (backend_timeout)", t))
            }
            Woke::Unreachable => Err(Error::BackendIo(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the monitor found server '{server}' unreachable while it ran the statement"
                ),
            ))),
        }
    }

    /// An OK packet (or the OK that ends a result) from held connection
    /// `i`: its trackers into `out`, its GTIDs needed by the session's
    /// reads; the payload the client gets instead, when it differs.
    fn on_ok(&mut self, i: usize, payload: &Bytes, out: &mut Outcome) -> Option<Bytes> {
        let caps = self.held[i].conn.key.caps;
        if payload.first() == Some(&0xFE)
            && (!caps.contains(CapabilityFlags::DEPRECATE_EOF) || payload.len() < 7)
        {
            return None; // a classic EOF
        }
        let ok = match OkPacket::decode(payload, caps) {
            Ok(ok) => ok,
            Err(e) => {
                warn!(error = %e, "an OK packet the router cannot read; forwarded as it is");
                return None;
            }
        };
        out.insert_id = ok.last_insert_id;
        match Tracked::read(&ok) {
            Ok(t) => {
                if let Some(g) = &t.gtids {
                    self.wrote(i, g);
                }
                out.tracked.fold(t);
            }
            Err(e) => {
                warn!(error = %e, "unreadable session state in an OK packet");
                // Whatever it said is unknown: the connection's state too.
                out.tracked.state_changed = true;
            }
        }
        match track::client_ok(&ok, payload, caps, self.caps, &self.state.client) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "could not rebuild an OK packet for the client");
                None
            }
        }
    }

    /// LOAD DATA LOCAL: the client's file, up to its empty packet, to the backend.
    async fn local_infile(&mut self, i: usize) -> Result<()> {
        self.client.expect_sequence(None);
        let backend = &mut self.held[i].conn.io;
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
}

#[cfg(test)]
mod tests {
    use super::read_only_refusal;
    use bytes::{Bytes, BytesMut};
    use causeway_wire::{CapabilityFlags, ErrPacket};

    fn err(code: u16, msg: &str) -> Bytes {
        let mut b = BytesMut::new();
        ErrPacket::new(code, *b"HY000", msg.to_string())
            .encode(CapabilityFlags::PROTOCOL_41, &mut b);
        b.freeze()
    }

    #[test]
    fn only_read_only_refusals_are_held_back() {
        let ro = "The MySQL server is running with the --read-only option so it cannot \
                  execute this statement";
        let sro = "The MySQL server is running with the --super-read-only option so it \
                   cannot execute this statement";
        assert!(read_only_refusal(&err(1290, ro)));
        assert!(read_only_refusal(&err(1290, sro)));
        assert!(read_only_refusal(&err(1836, "Running in read-only mode")));
        // 1290 for other options ran nothing either, but a new writer
        // would refuse it the same way: the client gets it.
        let secure = "The MySQL server is running with the --secure-file-priv option so \
                      it cannot execute this statement";
        assert!(!read_only_refusal(&err(1290, secure)));
        assert!(!read_only_refusal(&err(1062, "Duplicate entry")));
        assert!(!read_only_refusal(&Bytes::from_static(b"\x00\x00\x00")));
    }
}
