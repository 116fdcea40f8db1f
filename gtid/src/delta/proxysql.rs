//! ProxySQL's binlog-reader protocol (`proxysql_mysqlbinlog`, port 6020):
//! plain text, one message per `\n`-terminated line.
//!
//! ```text
//! ST=<uuid>:<a>[-<b>][,<uuid>:<a>[-<b>]...]   bootstrap, sent on connect
//! I1=<uuid32>:<gno>                           one trx of a (new) uuid
//! I2=<gno>                                    one trx of the previous uuid
//! I3=<uuid32>:<a>-<b>                         a range of a (new) uuid  (ProxySQL >= 3.0.8)
//! I4=<a>-<b>                                  a range of the previous uuid (ProxySQL >= 3.0.8)
//! ```
//! `uuid32` is 32 hex digits without dashes: ProxySQL keys its sets by that
//! form (it strips dashes from `ST=` and from OK packets, and compares
//! `I1`/`I3` uuids as given). "Previous uuid" is the uuid of the last `I1`,
//! `I3` *or the last one of an `ST=` line*. ProxySQL adds an `ST=` to what it
//! already has (a union), it does not replace.
//!
//! # What the encoder writes, and why
//! - `ST=` lists one `uuid:a-b` per interval, always with `-b`, even for
//!   one transaction: ProxySQL 3.x's bootstrap parser reads strictly
//!   alternating `uuid`/`interval` tokens (a second `:interval` after one
//!   uuid makes it drop the connection), and 2.x reads each with
//!   `sscanf("%lu-%lu")`, which leaves the end unset for a bare `a`.
//! - [`Dialect::Batched`] uses `I3`/`I4` for ranges; [`Dialect::PerTransaction`]
//!   is for ProxySQL before 3.0.8, whose reader ignores `I3`/`I4`: it writes
//!   `I1`/`I2` per transaction, and a range longer than 64 transactions as
//!   an extra `ST=` line instead (safe because `ST=` is a union).
//! - After writing an `ST=` line the encoder forgets its previous uuid, so
//!   the next line names its uuid (`I1`/`I3`).
//! - **Tagged GTIDs are left out** and counted in the return value. The
//!   protocol has no syntax for them: in `ST=` ProxySQL 3.x rejects the whole
//!   bootstrap and disconnects, 2.x reads garbage; an `I` line has nowhere to
//!   put a tag. Leaving them out is safe: a view that lacks transactions is
//!   a lower bound that can only make ProxySQL route a read elsewhere, never
//!   to a server that lacks the write (ProxySQL cannot track tagged GTIDs
//!   from OK packets either).
//!
//! The [`Decoder`] accepts everything the encoder writes and what
//! `proxysql_mysqlbinlog` sends (dashed or plain uuids, several intervals
//! per uuid in `ST=`, `I3`/`I4` with a single gno), and refuses anything
//! else with the line number, byte offset and reason.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::interval::Interval;
use crate::set::GtidSet;
use crate::source::SourceId;
use crate::text::Cursor;

/// Default limit on one line (an `ST=` line holds a whole set).
pub const DEFAULT_MAX_LINE_LEN: usize = 64 << 20;

/// Ranges longer than this go out as `ST=` in [`Dialect::PerTransaction`].
const EXPAND_LIMIT: u64 = 64;

/// Which ProxySQL the encoder writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// ProxySQL >= 3.0.8: ranges as `I3`/`I4`.
    Batched,
    /// Older ProxySQL: only `I1`/`I2` (and `ST=` for long ranges).
    PerTransaction,
}

/// Writes ProxySQL reader lines; remembers the uuid of the last `I` line.
#[derive(Debug, Clone)]
pub struct Encoder {
    dialect: Dialect,
    last_uuid: Option<Uuid>,
}

impl Encoder {
    /// A fresh connection.
    pub fn new(dialect: Dialect) -> Encoder {
        Encoder {
            dialect,
            last_uuid: None,
        }
    }

    /// Writes the bootstrap `ST=` line for `set`. Returns the number of
    /// tagged intervals left out (see the module doc).
    pub fn snapshot(&mut self, set: &GtidSet, out: &mut Vec<u8>) -> usize {
        let mut skipped = 0;
        let items = set.iter().flat_map(|(id, ivs)| {
            if id.tag().is_some() {
                skipped += ivs.len();
                None
            } else {
                Some(ivs.iter().map(move |iv| (id.uuid(), *iv)))
            }
            .into_iter()
            .flatten()
        });
        write_st(items, out);
        self.last_uuid = None;
        skipped
    }

    /// Writes the lines for one delta. Returns the number of tagged
    /// intervals left out.
    pub fn delta(&mut self, delta: &GtidSet, out: &mut Vec<u8>) -> usize {
        let mut skipped = 0;
        if self.dialect == Dialect::PerTransaction {
            let long: Vec<(Uuid, Interval)> = delta
                .iter()
                .filter(|(id, _)| id.tag().is_none())
                .flat_map(|(id, ivs)| {
                    ivs.iter()
                        .filter(|iv| iv.count() > EXPAND_LIMIT)
                        .map(move |iv| (id.uuid(), *iv))
                })
                .collect();
            if !long.is_empty() {
                write_st(long.into_iter(), out);
                self.last_uuid = None;
            }
        }
        for (id, ivs) in delta.iter() {
            if id.tag().is_some() {
                skipped += ivs.len();
                continue;
            }
            let uuid = id.uuid();
            for iv in ivs {
                match self.dialect {
                    Dialect::Batched => self.line(uuid, iv.start(), iv.end(), out),
                    Dialect::PerTransaction if iv.count() <= EXPAND_LIMIT => {
                        for gno in iv.start()..=iv.end() {
                            self.line(uuid, gno, gno, out);
                        }
                    }
                    Dialect::PerTransaction => {} // went out as ST=
                }
            }
        }
        skipped
    }

    fn line(&mut self, uuid: Uuid, a: u64, b: u64, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let same = self.last_uuid == Some(uuid);
        let mut hex = Uuid::encode_buffer();
        let u = uuid.simple().encode_lower(&mut hex);
        // Writing to a Vec cannot fail.
        let _ = match (same, a == b) {
            (false, true) => writeln!(out, "I1={u}:{a}"),
            (true, true) => writeln!(out, "I2={a}"),
            (false, false) => writeln!(out, "I3={u}:{a}-{b}"),
            (true, false) => writeln!(out, "I4={a}-{b}"),
        };
        self.last_uuid = Some(uuid);
    }
}

fn write_st(items: impl Iterator<Item = (Uuid, Interval)>, out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.extend_from_slice(b"ST=");
    let mut buf = Uuid::encode_buffer();
    for (k, (uuid, iv)) in items.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let u = uuid.hyphenated().encode_lower(&mut buf);
        let _ = write!(out, "{u}:{}-{}", iv.start(), iv.end());
    }
    out.push(b'\n');
}

/// Reads ProxySQL reader lines and applies them to a view.
#[derive(Debug, Clone)]
pub struct Decoder {
    last_uuid: Option<Uuid>,
    partial: Vec<u8>,
    line: u64,
    max_line_len: usize,
    failed: bool,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    /// Lines up to [`DEFAULT_MAX_LINE_LEN`] bytes.
    pub fn new() -> Decoder {
        Decoder::with_max_line_len(DEFAULT_MAX_LINE_LEN)
    }

    /// Refuses lines longer than `max` bytes (without the `\n`).
    pub fn with_max_line_len(max: usize) -> Decoder {
        Decoder {
            last_uuid: None,
            partial: Vec::new(),
            line: 0,
            max_line_len: max,
            failed: false,
        }
    }

    /// Feeds received bytes: applies every complete line to `view` and keeps
    /// an incomplete last line for the next call. Returns the number of
    /// lines applied. After an error every call fails: reconnect.
    pub fn feed(&mut self, mut bytes: &[u8], view: &mut GtidSet) -> Result<usize> {
        if self.failed {
            return Err(Error::Protocol("proxysql reader stream already failed"));
        }
        let mut applied = 0;
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let r = if self.partial.is_empty() {
                self.apply_line(&bytes[..nl], view)
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&bytes[..nl]);
                let r = self.apply_line(&line, view);
                line.clear();
                self.partial = line;
                r
            };
            if let Err(e) = r {
                self.failed = true;
                return Err(e);
            }
            applied += 1;
            bytes = &bytes[nl + 1..];
        }
        if self.partial.len() + bytes.len() > self.max_line_len {
            self.failed = true;
            return Err(Error::LineTooLong {
                max: self.max_line_len,
            });
        }
        self.partial.extend_from_slice(bytes);
        Ok(applied)
    }

    /// Applies one line, without its `\n`.
    pub fn apply_line(&mut self, line: &[u8], view: &mut GtidSet) -> Result<()> {
        self.line += 1;
        if line.len() > self.max_line_len {
            return Err(Error::LineTooLong {
                max: self.max_line_len,
            });
        }
        let n = self.line;
        let fail = |pos: usize, reason: &'static str| Error::ProxysqlLine {
            line: n,
            pos,
            reason,
        };
        let lift = |e: Error| match e {
            Error::Text { pos, reason } => fail(pos, reason),
            other => other,
        };
        let prefix = line.get(..3).unwrap_or(line);
        let mut c = Cursor { b: line, pos: 3 };
        match prefix {
            b"ST=" => return self.bootstrap(c, view).map_err(lift),
            b"I1=" | b"I3=" => {
                let uuid = c.uuid().map_err(lift)?;
                if c.peek() != Some(b':') {
                    return Err(fail(c.pos, "expected ':' after the uuid"));
                }
                c.pos += 1;
                self.last_uuid = Some(uuid);
            }
            b"I2=" | b"I4=" => {}
            _ => return Err(fail(0, "unknown message")),
        }
        let Some(uuid) = self.last_uuid else {
            return Err(fail(0, "I2/I4 without a previous uuid"));
        };
        let iv = match prefix {
            b"I1=" | b"I2=" => {
                let g = c.gno().map_err(lift)?;
                Interval::new_unchecked(g, g)
            }
            _ => interval_strict(&mut c).map_err(lift)?,
        };
        if c.pos != line.len() {
            return Err(fail(c.pos, "unexpected text at end of line"));
        }
        view.insert_interval(SourceId::new(uuid), iv);
        Ok(())
    }

    fn bootstrap(&mut self, mut c: Cursor<'_>, view: &mut GtidSet) -> Result<()> {
        // Parse the whole line before touching the view.
        let mut parsed: Vec<(Uuid, Interval)> = Vec::new();
        while c.pos < c.b.len() {
            if c.peek() == Some(b',') {
                c.pos += 1;
                continue;
            }
            let uuid = c.uuid()?;
            if c.peek() != Some(b':') {
                return c.err(c.pos, "expected ':' after the uuid");
            }
            while c.peek() == Some(b':') {
                c.pos += 1;
                if c.peek()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                {
                    return c.err(c.pos, "tagged gtids are not part of the proxysql protocol");
                }
                parsed.push((uuid, interval_strict(&mut c)?));
            }
            if !matches!(c.peek(), None | Some(b',')) {
                return c.err(c.pos, "expected ':', ',' or end of line");
            }
            self.last_uuid = Some(uuid);
        }
        for (uuid, iv) in parsed {
            view.insert_interval(SourceId::new(uuid), iv);
        }
        Ok(())
    }
}

/// `a` or `a-b`, no whitespace.
fn interval_strict(c: &mut Cursor<'_>) -> Result<Interval> {
    let at = c.pos;
    let a = c.gno()?;
    let b = if c.peek() == Some(b'-') {
        c.pos += 1;
        c.gno()?
    } else {
        a
    };
    if b < a {
        return c.err(at, "interval end before its start");
    }
    Ok(Interval::new_unchecked(a, b))
}

#[cfg(test)]
mod tests;
