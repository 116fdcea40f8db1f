//! Source ids (server UUID plus optional tag) and single GTIDs.
//!
//! # Room for MariaDB
//! MariaDB GTIDs (`domain-server-seq`) identify a *replication domain*, not a
//! server: the sequence is per domain and the server id is informational. A
//! later issue adds them as another kind of source (e.g. a private
//! `Kind::MariaDbDomain(u32)` behind the same [`SourceId`] type, ordered after
//! all MySQL sources). To keep that addition non-breaking, `SourceId` has no
//! public fields, is built through named constructors
//! ([`SourceId::new`], [`SourceId::tagged`]), and the binary stream format
//! writes a kind byte before every source definition (see
//! [`crate::delta::binary`]).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU8;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::MAX_GNO;

/// A GTID tag (MySQL 8.3+): `[a-z_][a-z0-9_]{0,31}`, stored lowercase.
///
/// MySQL accepts tags in any case and normalizes them to lowercase; so do
/// [`Tag::new`] and the text parser. Stored inline (33 bytes, `Copy`).
///
/// Ordering is byte-wise on the lowercase text, as MySQL's `std::string`
/// comparison of tags; this decides the order of tags in formatted sets.
#[derive(Clone, Copy)]
pub struct Tag {
    len: NonZeroU8,
    /// The tag's bytes, zero-padded. Every valid tag byte is non-zero, so
    /// comparing the padded arrays orders tags like their strings.
    bytes: [u8; Tag::MAX_LEN],
}

impl Tag {
    /// Maximal number of characters in a tag (MySQL's `tag_max_length`).
    pub const MAX_LEN: usize = 32;

    /// Validates and lowercases `text`.
    pub fn new(text: &str) -> Result<Tag> {
        Tag::from_ascii(text.as_bytes()).ok_or_else(|| Error::InvalidTag(text.to_owned()))
    }

    /// Validates and lowercases raw bytes; `None` if they are not a tag.
    pub(crate) fn from_ascii(text: &[u8]) -> Option<Tag> {
        let len = u8::try_from(text.len()).ok().and_then(NonZeroU8::new)?;
        if text.len() > Tag::MAX_LEN || !is_tag_start(text[0]) {
            return None;
        }
        let mut bytes = [0u8; Tag::MAX_LEN];
        for (dst, &b) in bytes.iter_mut().zip(text) {
            if !is_tag_char(b) {
                return None;
            }
            *dst = b.to_ascii_lowercase();
        }
        Some(Tag { len, bytes })
    }

    /// The tag text, lowercase.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters, digits and '_' are ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The tag text as bytes, lowercase.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len.get())]
    }
}

pub(crate) fn is_tag_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

pub(crate) fn is_tag_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl PartialEq for Tag {
    fn eq(&self, other: &Tag) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Tag {}

impl Hash for Tag {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for Tag {
    fn partial_cmp(&self, other: &Tag) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tag {
    fn cmp(&self, other: &Tag) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({:?})", self.as_str())
    }
}

impl std::str::FromStr for Tag {
    type Err = Error;
    fn from_str(s: &str) -> Result<Tag> {
        Tag::new(s)
    }
}

/// Where transactions come from: a server UUID, optionally with a tag
/// (MySQL's TSID).
///
/// Ordered as MySQL orders TSIDs when it prints a set: by UUID bytes
/// (= lowercase text order), then untagged before tagged, then by tag.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId {
    uuid: Uuid,
    tag: Option<Tag>,
}

impl SourceId {
    /// An untagged source.
    pub const fn new(uuid: Uuid) -> SourceId {
        SourceId { uuid, tag: None }
    }

    /// A tagged source (`uuid:tag`).
    pub const fn tagged(uuid: Uuid, tag: Tag) -> SourceId {
        SourceId {
            uuid,
            tag: Some(tag),
        }
    }

    /// The server UUID.
    pub const fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The tag, if any.
    pub const fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }
}

impl PartialOrd for SourceId {
    fn partial_cmp(&self, other: &SourceId) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SourceId {
    fn cmp(&self, other: &SourceId) -> Ordering {
        // Big-endian u128 orders like the bytes, in one compare.
        (self.uuid.as_u128().cmp(&other.uuid.as_u128())).then_with(|| self.tag.cmp(&other.tag))
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.uuid.hyphenated(), f)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceId({self})")
    }
}

impl From<Uuid> for SourceId {
    fn from(uuid: Uuid) -> SourceId {
        SourceId::new(uuid)
    }
}

/// Checks that `gno` is a valid transaction number (`1..=MAX_GNO`).
pub(crate) fn check_gno(gno: u64) -> Result<u64> {
    if (1..=MAX_GNO).contains(&gno) {
        Ok(gno)
    } else {
        Err(Error::GnoOutOfRange(gno))
    }
}

/// One transaction: `uuid[:tag]:gno`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gtid {
    source: SourceId,
    gno: u64,
}

impl Gtid {
    /// Fails if `gno` is outside `1..=MAX_GNO`.
    pub fn new(source: SourceId, gno: u64) -> Result<Gtid> {
        Ok(Gtid {
            source,
            gno: check_gno(gno)?,
        })
    }

    /// Where the transaction came from.
    pub const fn source(&self) -> &SourceId {
        &self.source
    }

    /// Its transaction number, in `1..=MAX_GNO`.
    pub const fn gno(&self) -> u64 {
        self.gno
    }

    /// Parses MySQL's text form `uuid[:tag]:gno` (as in the OK packet's
    /// session tracker with `OWN_GTID`, or `gtid_next`).
    pub fn parse(text: &str) -> Result<Gtid> {
        crate::text::parse_gtid(text.as_bytes())
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.gno)
    }
}

impl fmt::Debug for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gtid({self})")
    }
}

impl std::str::FromStr for Gtid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Gtid> {
        Gtid::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(s: &str) -> Uuid {
        Uuid::parse_str(s).unwrap()
    }

    #[test]
    fn tag_validation_and_lowercase() {
        assert_eq!(Tag::new("Tag_1").unwrap().as_str(), "tag_1");
        assert_eq!(Tag::new("_").unwrap().as_str(), "_");
        assert_eq!(Tag::new(&"a".repeat(32)).unwrap().as_str().len(), 32);
        for bad in ["", "1abc", "a-b", "a b", "é", &"a".repeat(33)] {
            assert_eq!(
                Tag::new(bad),
                Err(Error::InvalidTag(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tag_order_is_string_order() {
        let mut tags: Vec<Tag> = ["b", "a", "ab", "a_", "a0", "z9"]
            .iter()
            .map(|t| Tag::new(t).unwrap())
            .collect();
        tags.sort();
        let text: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        let mut expected = vec!["b", "a", "ab", "a_", "a0", "z9"];
        expected.sort();
        assert_eq!(text, expected);
        assert_eq!(Tag::new("AB").unwrap(), Tag::new("ab").unwrap());
    }

    #[test]
    fn source_order_untagged_first_then_tags() {
        let u1 = uuid("3e11fa47-71ca-11e1-9e33-c80aa9429562");
        let u2 = uuid("4e11fa47-71ca-11e1-9e33-c80aa9429562");
        let mut ids = [
            SourceId::tagged(u1, Tag::new("bb").unwrap()),
            SourceId::new(u2),
            SourceId::tagged(u1, Tag::new("aa").unwrap()),
            SourceId::new(u1),
        ];
        ids.sort();
        let text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "3e11fa47-71ca-11e1-9e33-c80aa9429562",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:aa",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:bb",
                "4e11fa47-71ca-11e1-9e33-c80aa9429562",
            ]
        );
    }

    #[test]
    fn gtid_range_checked() {
        let s = SourceId::new(Uuid::nil());
        assert_eq!(Gtid::new(s, 0), Err(Error::GnoOutOfRange(0)));
        assert_eq!(
            Gtid::new(s, MAX_GNO + 1),
            Err(Error::GnoOutOfRange(MAX_GNO + 1))
        );
        assert_eq!(Gtid::new(s, MAX_GNO).unwrap().gno(), MAX_GNO);
        assert_eq!(
            Gtid::new(s, 7).unwrap().to_string(),
            "00000000-0000-0000-0000-000000000000:7"
        );
    }
}
