//! MySQL's textual GTID forms.
//!
//! # Grammar (as `Gtid_set::add_gtid_text` in MySQL 8.4/9.x reads it)
//! ```text
//! set      = ws { "," ws } [ group { "," ws { "," ws } } ]      (empty text = empty set)
//! group    = uuid ws { ":" ws ( tag | interval ) ws }
//! tag      = [A-Za-z_][A-Za-z0-9_]{0,31}         (then ":" or "," or end must follow)
//! interval = gno [ ws "-" ws gno ]
//! uuid     = 8-4-4-4-12 hex digits, any case; or 32 hex digits; or
//!            "{" 8-4-4-4-12 "}"  (the last two as MySQL 9.7 accepts them)
//! ws       = { " " | "\t" | "\n" | "\v" | "\f" | "\r" }
//! ```
//! A tag applies to the intervals after it, up to the next tag or `,`:
//! `uuid:1-5:aa:1-3:bb:7` is untagged 1-5, `aa` 1-3 and `bb` 7. A uuid or
//! tag with no interval adds nothing, as in MySQL. Tags are lowercased.
//!
//! # Stricter than MySQL, on purpose
//! Where MySQL would read a different number than the digits suggest, or
//! silently drop part of the text, this parser refuses with an error
//! naming the byte offset instead:
//! - `5-3`, `5-0` (end before start): MySQL drops the interval silently;
//! - leading zeros: `010` is 10 for MySQL 9.7 but octal 8 for 8.x, whose
//!   parser is `strtoll(.., base 0)` (which also took `0x10` and `+5`;
//!   9.7 and this parser refuse those);
//! - gno 0, or above [`crate::MAX_GNO`] (`2^63 - 2`, MySQL's limit);
//! - `ANONYMOUS` and the leading `+` of `SET gtid_purged = '+...'`.
//!
//! Everything else agrees with MySQL 9.7.4 on 50 captured inputs, accepted
//! and rejected (`tests/mysql_text.rs`).
//!
//! # Output
//! [`GtidSet`]'s `Display` writes what `SELECT @@gtid_executed` shows: the
//! empty set as `""`; sources sorted by uuid, each uuid once, its untagged
//! intervals first, then each tag in order (`uuid:1-5:aa:1-3:bb:7`); an
//! interval as `7` or `1-5`; lowercase; uuids separated by `",\n"`.

use std::fmt::{self, Write as _};

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::interval::{self, Interval};
use crate::set::GtidSet;
use crate::source::{is_tag_char, is_tag_start, Gtid, SourceId, Tag};
use crate::MAX_GNO;

/// Length of a hyphenated uuid.
const UUID_TEXT_LEN: usize = 36;

/// MySQL's `my_isspace` in the C locale.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses a hyphenated uuid from the first 36 bytes of `b`. On failure,
/// returns the offset of the first bad byte.
fn parse_uuid_hyphenated(b: &[u8]) -> std::result::Result<Uuid, usize> {
    let mut out = [0u8; 16];
    let mut i = 0; // byte offset in text
    for byte in &mut out {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b.get(i) != Some(&b'-') {
                return Err(i);
            }
            i += 1;
        }
        let hi = b.get(i).copied().and_then(hex_val).ok_or(i)?;
        let lo = b.get(i + 1).copied().and_then(hex_val).ok_or(i + 1)?;
        *byte = (hi << 4) | lo;
        i += 2;
    }
    Ok(Uuid::from_bytes(out))
}

/// Parses 32 hex digits (a uuid without dashes, ProxySQL's form).
fn parse_uuid_simple(b: &[u8]) -> std::result::Result<Uuid, usize> {
    let mut out = [0u8; 16];
    for (k, byte) in out.iter_mut().enumerate() {
        let hi = b.get(2 * k).copied().and_then(hex_val).ok_or(2 * k)?;
        let lo = b
            .get(2 * k + 1)
            .copied()
            .and_then(hex_val)
            .ok_or(2 * k + 1)?;
        *byte = (hi << 4) | lo;
    }
    Ok(Uuid::from_bytes(out))
}

/// A cursor over the input; errors carry absolute byte offsets.
pub(crate) struct Cursor<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Cursor<'a> {
        Cursor { b, pos: 0 }
    }

    pub(crate) fn err<T>(&self, pos: usize, reason: &'static str) -> Result<T> {
        Err(Error::Text { pos, reason })
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    pub(crate) fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    /// A uuid as MySQL 9.7 reads it: hyphenated (36), plain 32 hex digits,
    /// or hyphenated in braces.
    pub(crate) fn uuid(&mut self) -> Result<Uuid> {
        let rest = &self.b[self.pos..];
        let (parsed, len) = match rest.first() {
            Some(b'{') => {
                let inner = parse_uuid_hyphenated(&rest[1..]).map_err(|off| off + 1);
                match inner {
                    Ok(_) if rest.get(UUID_TEXT_LEN + 1) != Some(&b'}') => {
                        (Err(UUID_TEXT_LEN + 1), 0)
                    }
                    r => (r, UUID_TEXT_LEN + 2),
                }
            }
            _ if rest.get(8) == Some(&b'-') => (parse_uuid_hyphenated(rest), UUID_TEXT_LEN),
            _ => (parse_uuid_simple(rest), 32),
        };
        match parsed {
            Ok(u) => {
                self.pos += len;
                Ok(u)
            }
            Err(off) => self.err(self.pos + off, "expected a uuid"),
        }
    }

    /// A decimal gno in `1..=MAX_GNO`, no sign, no leading zero.
    pub(crate) fn gno(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut value: u64 = 0;
        let mut digits = 0usize;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            if digits == 19 {
                return self.err(start, "transaction number out of range");
            }
            value = value * 10 + u64::from(d - b'0');
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            return self.err(start, "expected a transaction number");
        }
        if value == 0 {
            return self.err(start, "transaction number must be positive");
        }
        if self.b[start] == b'0' {
            return self.err(start, "transaction number with a leading zero");
        }
        if value > MAX_GNO {
            return self.err(start, "transaction number out of range");
        }
        Ok(value)
    }

    /// `gno [ws "-" ws gno]`, positioned on the first digit.
    pub(crate) fn interval(&mut self) -> Result<Interval> {
        let start_pos = self.pos;
        let start = self.gno()?;
        self.skip_ws();
        let end = if self.peek() == Some(b'-') {
            self.pos += 1;
            self.skip_ws();
            self.gno()?
        } else {
            start
        };
        if end < start {
            return self.err(start_pos, "interval end before its start");
        }
        Ok(Interval::new_unchecked(start, end))
    }

    /// A tag, positioned on its first character (a letter or '_').
    pub(crate) fn tag(&mut self) -> Result<Tag> {
        let start = self.pos;
        while self.peek().is_some_and(is_tag_char) {
            self.pos += 1;
        }
        if self.pos - start > Tag::MAX_LEN {
            return self.err(start, "tag longer than 32 characters");
        }
        match Tag::from_ascii(&self.b[start..self.pos]) {
            Some(t) => Ok(t),
            None => self.err(start, "invalid tag"),
        }
    }
}

/// Parses a GTID set; see the module doc for the grammar.
pub(crate) fn parse_set(b: &[u8]) -> Result<GtidSet> {
    let mut c = Cursor::new(b);
    let mut set = GtidSet::new();
    c.skip_ws();
    loop {
        while c.peek() == Some(b',') {
            c.pos += 1;
            c.skip_ws();
        }
        let Some(first) = c.peek() else { break };
        if !first.is_ascii_hexdigit() && first != b'{' {
            return c.err(c.pos, "expected a uuid or ','");
        }
        let uuid = c.uuid()?;
        c.skip_ws();
        let mut source = SourceId::new(uuid);
        let mut ivs = set.entry_mut(source);
        while c.peek() == Some(b':') {
            c.pos += 1;
            c.skip_ws();
            match c.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let iv = c.interval()?;
                    interval::insert(ivs, iv);
                }
                Some(t) if is_tag_start(t) => {
                    source = SourceId::tagged(uuid, c.tag()?);
                    c.skip_ws();
                    if !matches!(c.peek(), None | Some(b':' | b',')) {
                        return c.err(c.pos, "expected ':' or ',' after a tag");
                    }
                    ivs = set.entry_mut(source);
                }
                _ => return c.err(c.pos, "expected a transaction number or a tag after ':'"),
            }
            c.skip_ws();
        }
        match c.peek() {
            None | Some(b',') => {}
            Some(_) => return c.err(c.pos, "expected ':', ',' or end of text"),
        }
    }
    set.prune();
    Ok(set)
}

/// Parses one GTID, `uuid[:tag]:gno`, with optional surrounding whitespace.
pub(crate) fn parse_gtid(b: &[u8]) -> Result<Gtid> {
    let mut c = Cursor::new(b);
    c.skip_ws();
    let uuid = c.uuid()?;
    let mut source = SourceId::new(uuid);
    c.skip_ws();
    if c.peek() != Some(b':') {
        return c.err(c.pos, "expected ':' after the uuid");
    }
    c.pos += 1;
    c.skip_ws();
    if c.peek().is_some_and(is_tag_start) {
        source = SourceId::tagged(uuid, c.tag()?);
        c.skip_ws();
        if c.peek() != Some(b':') {
            return c.err(c.pos, "expected ':' after the tag");
        }
        c.pos += 1;
        c.skip_ws();
    }
    let gno = c.gno()?;
    c.skip_ws();
    if c.pos != b.len() {
        return c.err(c.pos, "unexpected text after the gtid");
    }
    Gtid::new(source, gno)
}

/// Display adapter for [`GtidSet::display_with`].
pub(crate) struct Formatted<'a> {
    pub(crate) set: &'a GtidSet,
    pub(crate) sep: &'a str,
}

impl fmt::Display for Formatted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut prev: Option<Uuid> = None;
        let mut buf = Uuid::encode_buffer();
        for (id, ivs) in self.set.iter() {
            if prev != Some(id.uuid()) {
                if prev.is_some() {
                    f.write_str(self.sep)?;
                }
                f.write_str(id.uuid().hyphenated().encode_lower(&mut buf))?;
                prev = Some(id.uuid());
            }
            if let Some(tag) = id.tag() {
                f.write_char(':')?;
                f.write_str(tag.as_str())?;
            }
            for iv in ivs {
                write!(f, ":{iv}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for GtidSet {
    /// Exactly MySQL's `@@gtid_executed` text (sources joined by `",\n"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.display_with(",\n"), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn parse(s: &str) -> GtidSet {
        GtidSet::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> (usize, &'static str) {
        match GtidSet::parse(s) {
            Err(Error::Text { pos, reason }) => (pos, reason),
            other => panic!("{s:?} gave {other:?}"),
        }
    }

    #[test]
    fn empty_forms() {
        for s in ["", "  ", "\n", ",", " , ,\n,"] {
            assert!(parse(s).is_empty(), "{s:?}");
            assert_eq!(parse(s).to_string(), "");
        }
        assert!(
            parse(U1).is_empty(),
            "a uuid without intervals adds nothing"
        );
        assert!(parse(&format!("{U1}:aa")).is_empty());
    }

    #[test]
    fn mysql_output_form() {
        let s = parse(&format!("{U2}:1-5, {U1}:7-9:1-5:6"));
        assert_eq!(s.to_string(), format!("{U1}:1-9,\n{U2}:1-5"));
        let upper = format!("{U1}:1-5").to_uppercase();
        assert_eq!(parse(&upper).to_string(), format!("{U1}:1-5"));
        assert_eq!(parse(&format!("{U1}:3:1")).to_string(), format!("{U1}:1:3"));
    }

    #[test]
    fn tags_group_under_one_uuid() {
        let s = parse(&format!("{U1}:bb:7,{U1}:AA:1-3,{U1}:1-5"));
        assert_eq!(s.to_string(), format!("{U1}:1-5:aa:1-3:bb:7"));
        assert_eq!(parse(&s.to_string()), s);
        let t = parse(&format!("{U1}:1-5:aa:1-3:bb:7,\n{U2}:x:1"));
        assert_eq!(t.to_string(), format!("{U1}:1-5:aa:1-3:bb:7,\n{U2}:x:1"));
        assert_eq!(t.source_count(), 4);
        // A tag switches the source for the intervals after it only.
        let u = parse(&format!("{U1}:aa:1:bb:2"));
        assert_eq!(u.to_string(), format!("{U1}:aa:1:bb:2"));
    }

    #[test]
    fn whitespace_accepted_where_mysql_accepts_it() {
        let s = parse(&format!(" \n{U1} : 1 - 5 : aa : 3 ,\n\t{U2}:2 \n"));
        assert_eq!(s.to_string(), format!("{U1}:1-5:aa:3,\n{U2}:2"));
    }

    #[test]
    fn errors_name_position_and_reason() {
        let u = U1.len();
        assert_eq!(
            err(&format!("{U1}:5-3")),
            (u + 1, "interval end before its start")
        );
        assert_eq!(
            err(&format!("{U1}:0")),
            (u + 1, "transaction number must be positive")
        );
        assert_eq!(
            err(&format!("{U1}:010")),
            (u + 1, "transaction number with a leading zero")
        );
        assert_eq!(err(&format!("{U1}:+5")).0, u + 1);
        assert_eq!(
            err(&format!("{U1}:9223372036854775807")),
            (u + 1, "transaction number out of range")
        );
        assert_eq!(
            err(&format!("{U1}:99999999999999999999")),
            (u + 1, "transaction number out of range")
        );
        assert!(parse(&format!("{U1}:9223372036854775806")).count() == 1);
        assert_eq!(
            err(&format!("{U1}:1x")),
            (u + 2, "expected ':', ',' or end of text")
        );
        assert_eq!(
            err(&format!("{U1}:tag x:5")),
            (u + 5, "expected ':' or ',' after a tag")
        );
        assert_eq!(
            err(&format!("{U1}:{}:1", "a".repeat(33))),
            (u + 1, "tag longer than 32 characters")
        );
        assert_eq!(err(&format!("{U1}:-5")).0, u + 1);
        assert_eq!(err(&format!("{U1}:")).0, u + 1);
        assert_eq!(err("3e11fa47-71ca-11e1-9e33-c80aa942956z:1").0, 35);
        assert_eq!(err("3e11fa47-71ca11e19e33c80aa9429562:1").0, 13);
        assert_eq!(err("{3e11fa47-71ca-11e1-9e33-c80aa9429562:1").0, 37);
        assert_eq!(
            parse("{3E11FA47-71CA-11E1-9E33-C80AA9429562}:1,3e11fa4771ca11e19e33c80aa9429562:2"),
            parse(&format!("{U1}:1-2"))
        );
        assert_eq!(err("ANONYMOUS:1").0, 1);
        assert_eq!(err(&format!("+{U1}:1")).0, 0);
        assert_eq!(err(&format!("{U1}:1;")).0, u + 2);
        assert_eq!(err("3e11").0, 4);
    }

    #[test]
    fn proxysql_stale_read_case_is_exact() {
        // ProxySQL reads `uuid:tag:5` as gno 0; here it is tag `tag`, gno 5.
        let g = Gtid::parse(&format!("{U1}:tag:5")).unwrap();
        assert_eq!(g.gno(), 5);
        assert_eq!(g.source().tag().map(Tag::as_str), Some("tag"));
        assert_eq!(g.to_string(), format!("{U1}:tag:5"));
        let s = parse(&format!("{U1}:tag:5"));
        assert!(s.contains(&g));
    }

    #[test]
    fn single_gtid_errors() {
        assert!(Gtid::parse(&format!(" {U1}:7 ")).is_ok());
        for bad in [
            U1.to_string(),
            format!("{U1}:1-2"),
            format!("{U1}:a"),
            format!("{U1}:7:8"),
        ] {
            assert!(
                matches!(Gtid::parse(&bad), Err(Error::Text { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn non_ascii_never_panics() {
        for s in ["é", "3e11fa47-71ca-11e1-9e33-c80aa9429562:é", "\u{0}"] {
            assert!(GtidSet::parse(s).is_err());
        }
        assert!(GtidSet::parse_bytes(&[0xff, 0xfe]).is_err());
    }
}
