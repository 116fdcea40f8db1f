//! Decoding untrusted frames: bounded, never panics.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::{
    Heartbeat, Hello, Message, Reset, ResetReason, DEFAULT_MAX_FRAME_LEN, KIND_DELTA,
    KIND_HEARTBEAT, KIND_HELLO, KIND_RESET, KIND_SNAPSHOT, MAX_RESET_DETAIL, MAX_SOURCES,
    SOURCE_TAGGED, SOURCE_UUID, VERSION,
};
use crate::delta::varint::{self, unzigzag, VarintError};
use crate::error::{Error, Result};
use crate::interval::Interval;
use crate::set::GtidSet;
use crate::source::{SourceId, Tag};
use crate::MAX_GNO;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    AwaitSnapshot,
    Streaming,
    Failed,
}

/// Reads frames from untrusted bytes, enforcing the message order drawn in
/// the [module doc](super). Any error is final for the stream.
#[derive(Debug, Clone)]
pub struct Decoder {
    phase: Phase,
    ids: Vec<SourceId>,
    index: HashMap<SourceId, usize>,
    prev_end: Vec<u64>,
    deltas: u64,
    max_frame_len: usize,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    /// Expects a Hello first; frames up to [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new() -> Decoder {
        Decoder::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// Refuses frames longer than `max` bytes.
    pub fn with_max_frame_len(max: usize) -> Decoder {
        Decoder {
            phase: Phase::AwaitHello,
            ids: Vec::new(),
            index: HashMap::new(),
            prev_end: Vec::new(),
            deltas: 0,
            max_frame_len: max,
        }
    }

    /// Deltas received since the last snapshot.
    pub fn sequence(&self) -> u64 {
        self.deltas
    }

    /// Decodes the frame at the front of `src`: `Ok(Some((message, bytes
    /// consumed)))`, or `Ok(None)` if `src` does not hold a whole frame yet.
    pub fn decode(&mut self, src: &[u8]) -> Result<Option<(Message, usize)>> {
        if self.phase == Phase::Failed {
            return Err(Error::Protocol("stream already failed"));
        }
        let r = self.decode_inner(src);
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    fn decode_inner(&mut self, src: &[u8]) -> Result<Option<(Message, usize)>> {
        let (len, hdr) = match varint::get(src) {
            Ok(v) => v,
            Err(VarintError::Truncated) => return Ok(None),
            Err(VarintError::Overflow) => {
                return Err(Error::Frame {
                    pos: 0,
                    reason: "frame length varint too long",
                })
            }
        };
        if len > self.max_frame_len as u64 {
            return Err(Error::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        let len = len as usize; // <= max_frame_len
        if len < 2 {
            return Err(Error::Frame {
                pos: 0,
                reason: "frame shorter than its header",
            });
        }
        let Some(body) = src.get(hdr..hdr + len) else {
            return Ok(None);
        };
        if body[0] != VERSION {
            return Err(Error::UnsupportedVersion(body[0]));
        }
        let mut r = Reader {
            b: body,
            pos: 2,
            base: hdr,
        };
        let msg = match body[1] {
            KIND_HELLO => self.hello(&mut r)?,
            KIND_SNAPSHOT => {
                if self.phase == Phase::AwaitHello {
                    return Err(Error::Protocol("snapshot before hello"));
                }
                self.clear_table();
                let set = self.set(&mut r)?;
                self.phase = Phase::Streaming;
                Message::Snapshot(set)
            }
            KIND_DELTA => {
                if self.phase != Phase::Streaming {
                    return Err(Error::Protocol("delta before a snapshot"));
                }
                let set = self.set(&mut r)?;
                self.deltas += 1;
                Message::Delta(set)
            }
            KIND_HEARTBEAT => self.heartbeat(&mut r)?,
            KIND_RESET => self.reset(&mut r)?,
            _ => return r.err(1, "unknown message kind"),
        };
        if r.pos != body.len() {
            return r.err(r.pos, "trailing bytes in frame");
        }
        Ok(Some((msg, hdr + len)))
    }

    fn clear_table(&mut self) {
        self.ids.clear();
        self.index.clear();
        self.prev_end.clear();
        self.deltas = 0;
    }

    fn hello(&mut self, r: &mut Reader<'_>) -> Result<Message> {
        if self.phase != Phase::AwaitHello {
            return Err(Error::Protocol("hello after the stream started"));
        }
        let protocol_version = r.u8()?;
        let server_uuid = r.uuid()?;
        let reader_instance = r.varint()?;
        let epoch = r.varint()?;
        self.phase = Phase::AwaitSnapshot;
        Ok(Message::Hello(Hello {
            protocol_version,
            server_uuid,
            reader_instance,
            epoch,
        }))
    }

    fn heartbeat(&mut self, r: &mut Reader<'_>) -> Result<Message> {
        if self.phase == Phase::AwaitHello {
            return Err(Error::Protocol("heartbeat before hello"));
        }
        let micros = r.varint()?;
        let sequence = r.varint()?;
        if self.phase == Phase::Streaming && sequence != self.deltas {
            return Err(Error::SequenceMismatch {
                expected: self.deltas,
                got: sequence,
            });
        }
        Ok(Message::Heartbeat(Heartbeat {
            view_age: Duration::from_micros(micros),
            sequence,
        }))
    }

    fn reset(&mut self, r: &mut Reader<'_>) -> Result<Message> {
        let reason = ResetReason::from_code(r.u8()?);
        if self.phase == Phase::AwaitHello && reason != ResetReason::Refused {
            return Err(Error::Protocol("reset before hello"));
        }
        let at = r.pos;
        let len = r.varint()?;
        if len > MAX_RESET_DETAIL as u64 {
            return r.err(at, "reset detail too long");
        }
        let bytes = r.bytes(len as usize)?;
        let Ok(detail) = std::str::from_utf8(bytes) else {
            return r.err(at, "reset detail is not utf-8");
        };
        self.clear_table();
        // A refusal ends the stream; any other reset starts the stream
        // over: a new Hello (new epoch, maybe a new server) and Snapshot.
        self.phase = if reason == ResetReason::Refused {
            Phase::Failed
        } else {
            Phase::AwaitHello
        };
        Ok(Message::Reset(Reset {
            reason,
            detail: detail.to_owned(),
        }))
    }

    fn set(&mut self, r: &mut Reader<'_>) -> Result<GtidSet> {
        let at = r.pos;
        let n = r.varint()?;
        // A source takes at least 4 bytes (index, count, one interval).
        if n > (r.remaining() / 4) as u64 {
            return r.err(at, "source count exceeds the frame");
        }
        let mut set = GtidSet::new();
        let mut last: Option<SourceId> = None;
        for _ in 0..n {
            let at = r.pos;
            let idx = self.source(r)?;
            let id = self.ids[idx];
            if last.is_some_and(|l| l >= id) {
                return r.err(at, "sources out of order or repeated");
            }
            last = Some(id);
            let at = r.pos;
            let count = r.varint()?;
            if count == 0 {
                return r.err(at, "source without intervals");
            }
            if count > (r.remaining() / 2) as u64 {
                return r.err(at, "interval count exceeds the frame");
            }
            let mut ivs = Vec::with_capacity(count as usize);
            let mut prev = self.prev_end[idx];
            for k in 0..count {
                let at = r.pos;
                let start = if k == 0 {
                    let d = unzigzag(r.varint()?);
                    i128::from(prev) + i128::from(d)
                } else {
                    i128::from(prev) + 2 + i128::from(r.varint()?)
                };
                let end = start + i128::from(r.varint()?);
                if start < 1 || end > i128::from(MAX_GNO) {
                    return r.err(at, "gno out of range");
                }
                // In range, so both fit u64.
                ivs.push(Interval::new_unchecked(start as u64, end as u64));
                prev = end as u64;
            }
            self.prev_end[idx] = prev;
            set.push_source_unchecked(id, ivs);
        }
        Ok(set)
    }

    /// Reads a source reference, defining a new table entry if needed.
    fn source(&mut self, r: &mut Reader<'_>) -> Result<usize> {
        let at = r.pos;
        let idx = r.varint()?;
        let size = self.ids.len() as u64;
        if idx < size {
            return Ok(idx as usize);
        }
        if idx > size {
            return r.err(at, "unknown source index");
        }
        if self.ids.len() >= MAX_SOURCES {
            return r.err(at, "too many sources");
        }
        let kind_at = r.pos;
        let id = match r.u8()? {
            SOURCE_UUID => SourceId::new(r.uuid()?),
            SOURCE_TAGGED => {
                let uuid = r.uuid()?;
                let tag_at = r.pos;
                let len = r.u8()?;
                let text = r.bytes(usize::from(len))?;
                match Tag::from_ascii(text) {
                    Some(tag) => SourceId::tagged(uuid, tag),
                    None => return r.err(tag_at, "invalid tag"),
                }
            }
            _ => return r.err(kind_at, "unknown source kind"),
        };
        if self.index.insert(id, self.ids.len()).is_some() {
            return r.err(at, "source defined twice");
        }
        self.ids.push(id);
        self.prev_end.push(0);
        Ok(self.ids.len() - 1)
    }
}

/// Bounds-checked cursor over one frame body; errors carry the offset from
/// the start of the frame.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, pos: usize, reason: &'static str) -> Result<T> {
        Err(Error::Frame {
            pos: self.base + pos,
            reason,
        })
    }

    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8> {
        match self.b.get(self.pos) {
            Some(&v) => {
                self.pos += 1;
                Ok(v)
            }
            None => self.err(self.pos, "frame ends early"),
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return self.err(self.pos, "frame ends early");
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn uuid(&mut self) -> Result<Uuid> {
        let b = self.bytes(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(Uuid::from_bytes(a))
    }

    fn varint(&mut self) -> Result<u64> {
        match varint::get(&self.b[self.pos..]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(VarintError::Truncated) => self.err(self.pos, "frame ends early"),
            Err(VarintError::Overflow) => self.err(self.pos, "varint too long"),
        }
    }
}
