//! Causeway's binary reader-to-router stream, version 1.
//!
//! # Frames
//! ```text
//! frame   = len:varint  version:u8  kind:u8  payload      len = 2 + |payload|
//! varint  = unsigned LEB128, at most 10 bytes
//! ```
//! `version` is [`VERSION`] in every frame. A decoder refuses frames longer
//! than its limit ([`DEFAULT_MAX_FRAME_LEN`] unless configured) as soon as
//! it has read the length, before buffering them.
//!
//! | kind | message   | payload |
//! |------|-----------|---------|
//! | 1    | Hello     | `protocol_version:u8 server_uuid:[16] reader_instance:varint epoch:varint` |
//! | 2    | Snapshot  | `set` (replaces the view; resets the source table) |
//! | 3    | Delta     | `set` (added to the view) |
//! | 4    | Heartbeat | `view_age_us:varint sequence:varint` |
//! | 5    | Reset     | `reason:u8 detail_len:varint detail:utf8` (≤ 1024 bytes) |
//! | 6    | Auth      | `token` (subscriber to reader, first and only; ≤ [`MAX_AUTH_TOKEN`] bytes) |
//!
//! A subscriber opens the stream by sending one Auth frame ([`encode_auth`];
//! an empty token when the reader needs none). The reader answers with
//! Hello and Snapshot, or, when it refuses the subscriber (wrong token, too
//! many subscribers), with a single Reset whose reason is
//! [`ResetReason::Refused`], and closes.
//!
//! ```text
//! set      = n_sources:varint { source n_intervals:varint interval... }
//! source   = index:varint                 an entry of the stream's source table, or,
//!            when index == table size, a new entry defined inline:
//!            kind:u8 uuid:[16] [tag_len:u8 tag]   kind 0 = uuid, 1 = uuid + tag,
//!                                                 (2.. reserved: MariaDB domains)
//! interval = first: zigzag(start - prev_end):varint  (end - start):varint
//!            next:  (start - prev_end - 2):varint    (end - start):varint
//! ```
//! Both sides keep a *source table* (index → source, and the end of the last
//! interval sent for it, `prev_end`). A Snapshot or Reset empties it; sources
//! are defined inline the first time they appear. The first interval of a
//! source in a message is coded relative to that source's `prev_end` (0
//! after a snapshot), signed so a filled hole works; the next ones relative
//! to the previous interval's end, unsigned since sets are canonical.
//! Within a set, sources appear in [`SourceId`] order, each at most once,
//! each with at least one interval.
//!
//! So the common delta — the next transaction of a known source — takes
//! 8 bytes: `07 01 03 01 <idx> 01 02 00`.
//!
//! # States (enforced by [`Decoder`])
//! ```text
//! AwaitHello --Hello--> AwaitSnapshot --Snapshot--> Streaming
//! AwaitHello --Reset(Refused)--> Failed (the reader refused this subscriber)
//! Streaming --Delta|Heartbeat|Snapshot--> Streaming
//! AwaitSnapshot|Streaming --Reset--> AwaitHello;   AwaitSnapshot --Heartbeat--> AwaitSnapshot
//! any --error--> Failed (every later call fails: drop the connection)
//! ```
//! A Heartbeat's `sequence` is the number of Deltas since the last
//! Snapshot; the decoder checks it, so a lost or duplicated delta is caught.
//! After a Reset the reader sends a new Hello (the epoch changed, and the
//! server UUID may have) and a new Snapshot, in the same write.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use crate::set::GtidSet;
use crate::source::SourceId;

use super::varint::{self, zigzag};

mod decode;

pub use decode::Decoder;

/// Stream format version written in every frame.
pub const VERSION: u8 = 1;
/// Default limit on one frame's length.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 << 20;
/// Most sources one stream may define between two snapshots.
pub const MAX_SOURCES: usize = 1 << 16;
/// Longest Reset detail, in bytes.
pub const MAX_RESET_DETAIL: usize = 1024;

const KIND_HELLO: u8 = 1;
const KIND_SNAPSHOT: u8 = 2;
const KIND_DELTA: u8 = 3;
const KIND_HEARTBEAT: u8 = 4;
const KIND_RESET: u8 = 5;
const KIND_AUTH: u8 = 6;
/// Longest token an Auth frame may carry.
pub const MAX_AUTH_TOKEN: usize = 1024;

const SOURCE_UUID: u8 = 0;
const SOURCE_TAGGED: u8 = 1;

/// First message of a stream: who is talking about which server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Newest stream version the reader speaks (this crate: [`VERSION`]).
    pub protocol_version: u8,
    /// `@@server_uuid` of the server whose view this stream carries.
    pub server_uuid: Uuid,
    /// Random id of the reader process, new at every start.
    pub reader_instance: u64,
    /// Bumped by the reader each time it starts a new view of the server
    /// (reconnect, reset); a router compares it across reconnects.
    pub epoch: u64,
}

/// "Still alive": sent when nothing else was for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// How old the reader's confirmed view is (time since it last checked
    /// `gtid_executed`). Carried in whole microseconds.
    pub view_age: Duration,
    /// Deltas sent since the last snapshot.
    pub sequence: u64,
}

/// Why a reader dropped its view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// Anything else, including codes this version does not know.
    Other,
    /// The server's UUID changed (re-clone, different server behind the address).
    ServerChanged,
    /// The executed set lost transactions (`RESET BINARY LOGS AND GTIDS`).
    SetShrank,
    /// The reader lost its replication connection and resumed.
    Reconnected,
    /// The reader refuses this subscriber (wrong token, too many
    /// subscribers); the only message that may come before Hello.
    Refused,
}

impl ResetReason {
    fn code(self) -> u8 {
        match self {
            ResetReason::Other => 0,
            ResetReason::ServerChanged => 1,
            ResetReason::SetShrank => 2,
            ResetReason::Reconnected => 3,
            ResetReason::Refused => 4,
        }
    }

    fn from_code(c: u8) -> ResetReason {
        match c {
            1 => ResetReason::ServerChanged,
            2 => ResetReason::SetShrank,
            3 => ResetReason::Reconnected,
            4 => ResetReason::Refused,
            _ => ResetReason::Other,
        }
    }
}

/// The view is void: discard it; a new Hello and Snapshot follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// Why.
    pub reason: ResetReason,
    /// Free text for logs, at most [`MAX_RESET_DETAIL`] bytes (longer text
    /// is cut at a character boundary by the encoder).
    pub detail: String,
}

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// The server's whole executed set; replaces the view.
    Snapshot(GtidSet),
    /// Transactions that became visible since the previous message.
    Delta(GtidSet),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`Reset`].
    Reset(Reset),
}

impl Message {
    /// Applies the message to a router's view of the server: a Snapshot
    /// replaces it, a Delta is added, a Reset empties it.
    pub fn apply_to(&self, view: &mut GtidSet) {
        match self {
            Message::Snapshot(s) => view.clone_from(s),
            Message::Delta(d) => super::apply(view, d),
            Message::Reset(_) => view.clear(),
            Message::Hello(_) | Message::Heartbeat(_) => {}
        }
    }
}

/// Writes frames; remembers the source table and delta count of the stream.
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    index: HashMap<SourceId, usize>,
    prev_end: Vec<u64>,
    deltas: u64,
    scratch: Vec<u8>,
}

impl Encoder {
    /// A fresh stream.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Deltas encoded since the last snapshot (what a Heartbeat carries).
    pub fn sequence(&self) -> u64 {
        self.deltas
    }

    /// Appends one frame for `msg` to `out`.
    pub fn encode(&mut self, msg: &Message, out: &mut Vec<u8>) {
        match msg {
            Message::Snapshot(set) => self.snapshot(set, out),
            Message::Delta(set) => self.delta(set, out),
            Message::Hello(h) => self.frame(out, |_, body| {
                body.push(KIND_HELLO);
                body.push(h.protocol_version);
                body.extend_from_slice(h.server_uuid.as_bytes());
                varint::put(body, h.reader_instance);
                varint::put(body, h.epoch);
            }),
            Message::Heartbeat(hb) => self.frame(out, |_, body| {
                body.push(KIND_HEARTBEAT);
                let micros = u64::try_from(hb.view_age.as_micros()).unwrap_or(u64::MAX);
                varint::put(body, micros);
                varint::put(body, hb.sequence);
            }),
            Message::Reset(r) => self.frame(out, |enc, body| {
                body.push(KIND_RESET);
                enc.reset_table();
                body.push(r.reason.code());
                let detail = truncate_utf8(&r.detail, MAX_RESET_DETAIL);
                varint::put(body, detail.len() as u64);
                body.extend_from_slice(detail.as_bytes());
            }),
        }
    }

    /// Appends a Snapshot frame of `set` (as `encode(&Message::Snapshot)`,
    /// without owning the set: a publisher encodes one shared view for many
    /// subscribers).
    pub fn snapshot(&mut self, set: &GtidSet, out: &mut Vec<u8>) {
        self.frame(out, |enc, body| {
            body.push(KIND_SNAPSHOT);
            enc.reset_table();
            enc.put_set(set, body);
        });
    }

    /// Appends a Delta frame of `set` (as `encode(&Message::Delta)`).
    pub fn delta(&mut self, set: &GtidSet, out: &mut Vec<u8>) {
        self.frame(out, |enc, body| {
            body.push(KIND_DELTA);
            enc.put_set(set, body);
            enc.deltas += 1;
        });
    }

    /// One frame: `len version body`, the body written by `f` into the
    /// reused scratch buffer.
    fn frame(&mut self, out: &mut Vec<u8>, f: impl FnOnce(&mut Self, &mut Vec<u8>)) {
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        body.push(VERSION);
        f(self, &mut body);
        varint::put(out, body.len() as u64);
        out.extend_from_slice(&body);
        self.scratch = body;
    }

    /// Convenience: a Heartbeat carrying this encoder's sequence.
    pub fn heartbeat(&mut self, view_age: Duration, out: &mut Vec<u8>) {
        let sequence = self.deltas;
        self.encode(&Message::Heartbeat(Heartbeat { view_age, sequence }), out);
    }

    fn reset_table(&mut self) {
        self.index.clear();
        self.prev_end.clear();
        self.deltas = 0;
    }

    fn put_set(&mut self, set: &GtidSet, out: &mut Vec<u8>) {
        varint::put(out, set.source_count() as u64);
        for (id, ivs) in set.iter() {
            let idx = match self.index.get(id) {
                Some(&i) => {
                    varint::put(out, i as u64);
                    i
                }
                None => {
                    let i = self.prev_end.len();
                    varint::put(out, i as u64);
                    put_source(id, out);
                    self.index.insert(*id, i);
                    self.prev_end.push(0);
                    i
                }
            };
            varint::put(out, ivs.len() as u64);
            let mut prev = self.prev_end[idx];
            for (k, iv) in ivs.iter().enumerate() {
                if k == 0 {
                    // Both are in 0..=MAX_GNO < 2^63: the difference fits.
                    varint::put(out, zigzag(iv.start() as i64 - prev as i64));
                } else {
                    varint::put(out, iv.start() - prev - 2);
                }
                varint::put(out, iv.end() - iv.start());
                prev = iv.end();
            }
            self.prev_end[idx] = prev;
        }
    }
}

fn put_source(id: &SourceId, out: &mut Vec<u8>) {
    match id.tag() {
        None => {
            out.push(SOURCE_UUID);
            out.extend_from_slice(id.uuid().as_bytes());
        }
        Some(tag) => {
            out.push(SOURCE_TAGGED);
            out.extend_from_slice(id.uuid().as_bytes());
            out.push(tag.as_bytes().len() as u8);
            out.extend_from_slice(tag.as_bytes());
        }
    }
}

/// Appends the Auth frame a subscriber sends first. A token longer than
/// [`MAX_AUTH_TOKEN`] is refused by [`decode_auth`].
pub fn encode_auth(token: &[u8], out: &mut Vec<u8>) {
    varint::put(out, 2 + token.len() as u64);
    out.push(VERSION);
    out.push(KIND_AUTH);
    out.extend_from_slice(token);
}

/// Reads the Auth frame at the front of `src` (the reader's side):
/// `Ok(Some((token, bytes consumed)))`, or `Ok(None)` if the frame is not
/// complete yet. Fails on anything that is not a well-formed Auth frame of
/// this version, as soon as the bytes show it.
pub fn decode_auth(src: &[u8]) -> crate::Result<Option<(Vec<u8>, usize)>> {
    let (len, hdr) = match varint::get(src) {
        Ok(x) => x,
        Err(varint::VarintError::Truncated) => return Ok(None),
        Err(varint::VarintError::Overflow) => {
            return Err(crate::Error::Protocol("auth frame length overflows"))
        }
    };
    if len < 2 || len > (MAX_AUTH_TOKEN + 2) as u64 {
        return Err(crate::Error::Protocol("auth frame length out of range"));
    }
    let len = len as usize;
    if let Some(&v) = src.get(hdr) {
        if v != VERSION {
            return Err(crate::Error::Protocol(
                "auth frame of another protocol version",
            ));
        }
    }
    if let Some(&k) = src.get(hdr + 1) {
        if k != KIND_AUTH {
            return Err(crate::Error::Protocol("first frame is not auth"));
        }
    }
    if src.len() < hdr + len {
        return Ok(None);
    }
    Ok(Some((src[hdr + 2..hdr + len].to_vec(), hdr + len)))
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
