//! Query digests: every statement counted by (digest, schema, user,
//! hostgroup it ran in), as ProxySQL's `stats_mysql_query_digest`: count,
//! time (total, min, max, p50, p99 from a [`Histogram`]), rows sent,
//! errors, and for reads whether a replica or the writer served them.
//!
//! ```text
//! statement end ──Sample──> hash(digest, schema, user, hostgroup) ──> shard (1 of 16, a Mutex)
//!    key there: counts added (no allocation)
//!    new key:   inserted while fewer than max_digests keys exist,
//!               else counted in the one `(other)` row
//! snapshot() ──> Vec<DigestRow> (percentiles computed then)     reset() ──> empty
//! ```
//!
//! The hash is std's SipHash with a random key per router, so statement
//! texts chosen by a client cannot make keys collide on purpose; a key
//! found by its hash is compared whole before it is counted into.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::histogram::Histogram;

/// The digest of the row counting statements past `max_digests`.
pub const OTHER: &str = "(other)";

/// Digests are kept to this many bytes (cut at a character boundary), as
/// ProxySQL's `query_digests_max_digest_length` does: statements that
/// differ only further on share a row.
pub const MAX_DIGEST_LEN: usize = 2048;

const SHARDS: usize = 16;

/// Where a read was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// A server serving a reader hostgroup.
    Replica,
    /// A server serving a writer hostgroup.
    Writer,
}

/// One statement, as the session saw it end.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Its digest ([`crate::rules::digest`]).
    pub digest: &'a str,
    /// The session's default schema when it began.
    pub schema: Option<&'a [u8]>,
    /// The session's user.
    pub user: &'a str,
    /// The hostgroup it ran in ("" when it ran nowhere: refused, or
    /// answered by the router).
    pub hostgroup: &'a str,
    /// From its arrival to the end of its response.
    pub took: Duration,
    /// Result-set rows sent to the client.
    pub rows: u64,
    /// It ended with an ERR.
    pub error: bool,
    /// For a read: where it was served.
    pub read: Option<Served>,
    /// When it ended.
    pub at: Instant,
}

/// One row of the digest table (what the admin interface's
/// `query_digests` shows).
#[derive(Debug, Clone, PartialEq)]
pub struct DigestRow {
    /// The normalized statement (literals as `?`, at most
    /// [`MAX_DIGEST_LEN`] bytes), or [`OTHER`].
    pub digest: String,
    /// The default schema the statements ran with ("" for none).
    pub schema: String,
    /// The user ("" in the `(other)` row).
    pub user: String,
    /// The hostgroup they ran in ("" when the router refused or answered
    /// them, and in the `(other)` row).
    pub hostgroup: String,
    /// Statements counted.
    pub count: u64,
    /// Their total time, in milliseconds (microsecond precision).
    pub sum_ms: f64,
    /// The shortest.
    pub min_ms: f64,
    /// The longest.
    pub max_ms: f64,
    /// The median (within 25 %, see [`Histogram::quantile`]).
    pub p50_ms: f64,
    /// The 99th percentile (within 25 %).
    pub p99_ms: f64,
    /// Result-set rows sent to clients.
    pub rows_sent: u64,
    /// Statements that ended with an ERR (the server's or the router's).
    pub errors: u64,
    /// Reads a replica served.
    pub replica_reads: u64,
    /// Reads the writer served.
    pub writer_reads: u64,
    /// When the first was counted (since the start or the last reset).
    pub first_seen: SystemTime,
    /// When the last was counted.
    pub last_seen: SystemTime,
}

/// The counts of one row.
#[derive(Debug, Clone)]
struct Counts {
    count: u64,
    sum_us: u64,
    min_us: u64,
    max_us: u64,
    rows: u64,
    errors: u64,
    replica: u64,
    writer: u64,
    first: Instant,
    last: Instant,
    hist: Histogram,
}

impl Counts {
    fn new(at: Instant) -> Counts {
        Counts {
            count: 0,
            sum_us: 0,
            min_us: u64::MAX,
            max_us: 0,
            rows: 0,
            errors: 0,
            replica: 0,
            writer: 0,
            first: at,
            last: at,
            hist: Histogram::default(),
        }
    }

    fn add(&mut self, s: &Sample<'_>) {
        let us = u64::try_from(s.took.as_micros()).unwrap_or(u64::MAX);
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
        self.rows += s.rows;
        self.errors += u64::from(s.error);
        match s.read {
            Some(Served::Replica) => self.replica += 1,
            Some(Served::Writer) => self.writer += 1,
            None => {}
        }
        self.last = self.last.max(s.at);
        self.hist.record(us);
    }

    fn row(&self, key: [String; 4], clock: &Clock) -> DigestRow {
        let ms = |us: u64| us as f64 / 1000.0;
        let min = if self.count == 0 { 0 } else { self.min_us };
        let [digest, schema, user, hostgroup] = key;
        DigestRow {
            digest,
            schema,
            user,
            hostgroup,
            count: self.count,
            sum_ms: ms(self.sum_us),
            min_ms: ms(min),
            max_ms: ms(self.max_us),
            p50_ms: ms(self.hist.quantile(0.5, min, self.max_us)),
            p99_ms: ms(self.hist.quantile(0.99, min, self.max_us)),
            rows_sent: self.rows,
            errors: self.errors,
            replica_reads: self.replica,
            writer_reads: self.writer,
            first_seen: clock.wall(self.first),
            last_seen: clock.wall(self.last),
        }
    }
}

/// An [`Instant`] and the wall clock at the same moment, to turn the one
/// into the other.
struct Clock {
    now: Instant,
    wall: SystemTime,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            now: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.wall - self.now.saturating_duration_since(at)
    }
}

/// What identifies a row.
#[derive(Debug)]
struct Key {
    digest: Box<str>,
    schema: Option<Box<[u8]>>,
    user: Box<str>,
    hostgroup: Box<str>,
}

impl Key {
    fn is(&self, s: &Sample<'_>, digest: &str) -> bool {
        *self.digest == *digest
            && self.schema.as_deref() == s.schema
            && *self.user == *s.user
            && *self.hostgroup == *s.hostgroup
    }

    fn strings(&self) -> [String; 4] {
        [
            self.digest.to_string(),
            self.schema
                .as_deref()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default(),
            self.user.to_string(),
            self.hostgroup.to_string(),
        ]
    }
}

#[derive(Debug)]
struct Entry {
    /// The next entry with the same hash (`u32::MAX`: none).
    next: u32,
    key: Key,
    counts: Counts,
}

/// A hasher for keys that are hashes already.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One shard: entries by hash (the first of a chain of equal hashes).
#[derive(Debug, Default)]
struct Shard {
    heads: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    entries: Vec<Entry>,
}

impl Shard {
    fn find(&mut self, hash: u64, s: &Sample<'_>, digest: &str) -> Option<&mut Counts> {
        let mut at = *self.heads.get(&hash)?;
        while at != u32::MAX {
            let e = &self.entries[at as usize];
            if e.key.is(s, digest) {
                return Some(&mut self.entries[at as usize].counts);
            }
            at = e.next;
        }
        None
    }

    fn insert(&mut self, hash: u64, key: Key, counts: Counts) {
        let at = self.entries.len() as u32;
        let next = self.heads.insert(hash, at).unwrap_or(u32::MAX);
        self.entries.push(Entry { next, key, counts });
    }
}

/// The digest table, shared by every session.
#[derive(Debug)]
pub struct Digests {
    hasher: foldhash::quality::RandomState,
    shards: Vec<Mutex<Shard>>,
    /// Keys in all shards.
    len: AtomicUsize,
    max: AtomicUsize,
    other: Mutex<Option<Counts>>,
    folded: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Digests {
    /// An empty table keeping at most `max` keys.
    pub fn new(max: usize) -> Digests {
        Digests {
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
            max: AtomicUsize::new(max),
            other: Mutex::new(None),
            folded: AtomicU64::new(0),
        }
    }

    /// Keeps at most `max` keys from now on (keys past it stay).
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Counts one statement. When its key is there: one hash, one short
    /// lock, no allocation. Returns false when it was counted in the
    /// `(other)` row.
    pub fn record(&self, s: &Sample<'_>) -> bool {
        let digest = truncated(s.digest, MAX_DIGEST_LEN);
        let hash = self
            .hasher
            .hash_one((digest, s.schema, s.user, s.hostgroup));
        // Bits the shard's own table does not use to place keys.
        let shard = &self.shards[((hash >> 32) as usize) % SHARDS];
        let mut g = lock(shard);
        if let Some(c) = g.find(hash, s, digest) {
            c.add(s);
            return true;
        }
        let max = self.max.load(Ordering::Relaxed);
        let room = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !room {
            drop(g);
            self.folded.fetch_add(1, Ordering::Relaxed);
            lock(&self.other)
                .get_or_insert_with(|| Counts::new(s.at))
                .add(s);
            return false;
        }
        let key = Key {
            digest: digest.into(),
            schema: s.schema.map(Into::into),
            user: s.user.into(),
            hostgroup: s.hostgroup.into(),
        };
        let mut counts = Counts::new(s.at);
        counts.add(s);
        g.insert(hash, key, counts);
        true
    }

    /// Keys kept (the `(other)` row aside).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Statements counted in the `(other)` row since the last reset.
    pub fn folded(&self) -> u64 {
        self.folded.load(Ordering::Relaxed)
    }

    /// Every row, the `(other)` row last (when there is one).
    pub fn snapshot(&self) -> Vec<DigestRow> {
        let clock = Clock::now();
        let mut rows = Vec::with_capacity(self.len() + 1);
        for shard in &self.shards {
            let g = lock(shard);
            rows.extend(
                g.entries
                    .iter()
                    .map(|e| e.counts.row(e.key.strings(), &clock)),
            );
        }
        if let Some(c) = lock(&self.other).as_ref() {
            let key = [
                OTHER.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ];
            rows.push(c.row(key, &clock));
        }
        rows
    }

    /// The `n` rows with the most total time, most first; only those are
    /// formatted (the dashboard asks every second).
    pub fn top(&self, n: usize) -> Vec<DigestRow> {
        let clock = Clock::now();
        let mut rows: Vec<DigestRow> = Vec::with_capacity(n * 2);
        for shard in &self.shards {
            let g = lock(shard);
            let mut best: Vec<&Entry> = g.entries.iter().collect();
            best.sort_unstable_by_key(|e| std::cmp::Reverse(e.counts.sum_us));
            rows.extend(
                best.into_iter()
                    .take(n)
                    .map(|e| e.counts.row(e.key.strings(), &clock)),
            );
        }
        rows.sort_by(|a, b| b.sum_ms.total_cmp(&a.sum_ms));
        rows.truncate(n);
        rows
    }

    /// Forgets every row (`RESET query_digests`).
    pub fn reset(&self) {
        for shard in &self.shards {
            let mut g = lock(shard);
            let n = g.entries.len();
            g.entries.clear();
            g.heads.clear();
            self.len.fetch_sub(n, Ordering::Relaxed);
        }
        *lock(&self.other) = None;
        self.folded.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "digests_tests.rs"]
mod tests;
