//! What each server has applied, as far as the router knows: one view per
//! server, fed by the `causeway-reader` beside it (native protocol) and by
//! the GTIDs a server returned itself in OK packets.
//!
//! A view is a *lower bound* of the server's executed set. The reader only
//! announces a GTID once the transaction is visible on its server, and a
//! server never forgets a GTID it applied (short of a reset, which the
//! reader reports), so whatever the view holds, the server has. A reader
//! that goes silent or down leaves its view as it was: still true, only
//! older, so fewer reads qualify for that server, none wrongly.
//!
//! ```text
//! per server with a reader address, one task:
//!   connect --Auth(token)--> Hello --> Snapshot (replaces the view)
//!     --> Delta (added) | Heartbeat (freshness) ... | Reset (view emptied, Hello + Snapshot follow)
//!   EOF, error, or nothing for `SILENCE` --> disconnected (view kept) --> backoff --> connect
//! ```
//! Every change of any view bumps one `watch` counter, so sessions waiting
//! for a replica to catch up wake up as soon as a delta arrives, without
//! polling.
//!
//! Views are found by [`ViewId`], a slot resolved from the server's name
//! when a configuration is built (`shared::Current::views`): the statement
//! path never looks a view up by name. Slots are never reused, so a session
//! still holding an older configuration reads the right server's view (or
//! the empty view of a server a reload removed).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use causeway_gtid::delta::binary::{encode_auth, Decoder, Message};
use causeway_gtid::GtidSet;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use crate::config::BackendTls;

/// A reader to subscribe to.
#[derive(Clone)]
pub struct ViewTarget {
    /// The server the reader runs beside.
    pub server: String,
    /// The reader's native address, `host:port`.
    pub addr: String,
    /// Its token (empty when it needs none).
    pub token: Vec<u8>,
    /// TLS towards it (`None`: plain TCP).
    pub tls: Option<Arc<ReaderTls>>,
}

impl ViewTarget {
    /// The reader of `server` at `addr`, over TLS with `tls` unless it is
    /// unset or `disabled`. The name `verify_identity` checks defaults to
    /// the host of `addr`.
    pub fn new(
        server: String,
        addr: String,
        token: Vec<u8>,
        tls: Option<&BackendTls>,
    ) -> anyhow::Result<ViewTarget> {
        let tls = match tls {
            None => None,
            Some(settings) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                crate::tls::backend_connector(settings, host)
                    .with_context(|| format!("reader_tls of server {server}"))?
                    .map(|(connector, name)| {
                        Arc::new(ReaderTls {
                            settings: settings.clone(),
                            connector,
                            name,
                        })
                    })
            }
        };
        Ok(ViewTarget {
            server,
            addr,
            token,
            tls,
        })
    }
}

/// Two targets are the same stream when address, token and TLS settings
/// are (a reload re-reading an unchanged CA file keeps the stream).
impl PartialEq for ViewTarget {
    fn eq(&self, other: &Self) -> bool {
        self.server == other.server
            && self.addr == other.addr
            && self.token == other.token
            && self.tls.as_ref().map(|t| &t.settings) == other.tls.as_ref().map(|t| &t.settings)
    }
}

impl std::fmt::Debug for ViewTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewTarget")
            .field("server", &self.server)
            .field("addr", &self.addr)
            .field("tls", &self.tls.as_ref().map(|t| t.settings.mode))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ReaderTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderTls")
            .field("settings", &self.settings)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// TLS towards a reader.
pub struct ReaderTls {
    /// What the configuration said.
    pub settings: BackendTls,
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// A view's slot: stable for the router's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewId(pub usize);

/// Every view, by slot; the names resolve to slots.
#[derive(Debug, Default)]
pub struct Table {
    slots: HashMap<String, usize>,
    views: Vec<ServerView>,
}

impl Table {
    /// The view at `id`.
    pub fn at(&self, id: ViewId) -> Option<&ServerView> {
        self.views.get(id.0)
    }

    /// The view of the server called `name` (scrapes, tests; never per
    /// statement).
    pub fn get(&self, name: &str) -> Option<&ServerView> {
        self.views.get(*self.slots.get(name)?)
    }

    /// Every configured server's view, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ServerView)> {
        self.slots
            .iter()
            .map(|(n, &i)| (n.as_str(), &self.views[i]))
    }

    /// Whether a server called `name` has a view.
    pub fn contains_key(&self, name: &str) -> bool {
        self.slots.contains_key(name)
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.slots.get(name) {
            return i;
        }
        self.views.push(ServerView::default());
        let i = self.views.len() - 1;
        self.slots.insert(name.to_string(), i);
        i
    }
}

/// The view of the server called `name` (panics when there is none: for
/// tests and scrapes that name configured servers).
impl std::ops::Index<&str> for Table {
    type Output = ServerView;
    fn index(&self, name: &str) -> &ServerView {
        self.get(name).expect("a configured server")
    }
}

/// One server's view.
#[derive(Debug, Clone, Default)]
pub struct ServerView {
    /// GTIDs the server is known to have applied (a lower bound).
    pub set: GtidSet,
    /// The reader stream is up (Hello and Snapshot received).
    pub connected: bool,
    /// When the reader last said anything (a delta, snapshot or heartbeat).
    pub heard: Option<Instant>,
    /// How old the reader said its own view was, at `heard`.
    pub reader_age: Duration,
    /// Resets the reader reported, and reconnections.
    pub resets: u64,
    /// How long GTIDs other servers returned in OK packets took to reach
    /// this view (moving average; `None` until measured). See [`Views::lag`].
    pub catch_up: Option<Duration>,
    /// How long causal reads sent to this server took (moving average,
    /// measured on the writer when reads fall back to it).
    pub read_cost: Option<Duration>,
    /// Per source server: the first probe this view does not hold yet.
    probe_cursor: HashMap<ViewId, u64>,
}

impl ServerView {
    /// How old the view may be now: the reader's own age plus the time
    /// since it last spoke (`None`: never heard from).
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.heard
            .map(|h| now.saturating_duration_since(h) + self.reader_age)
    }
}

/// Every view, with the tasks that keep them.
pub struct Views {
    inner: Arc<Inner>,
    tasks: Mutex<HashMap<String, (ViewTarget, AbortHandle)>>,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").finish_non_exhaustive()
    }
}

struct Inner {
    views: RwLock<Table>,
    changed: watch::Sender<u64>,
    probes: Mutex<Probes>,
}

/// Timing probes: a sample of the GTIDs each server returned in OK packets,
/// with when, so that the time until another server's view holds them can
/// be measured (from the router's side: apply delay, reader delay and
/// network together, which is what a waiting read experiences).
#[derive(Default)]
struct Probes {
    by_source: HashMap<ViewId, Ring>,
    next: u64,
}

/// One source's probes, oldest first.
#[derive(Default)]
struct Ring {
    probes: VecDeque<Probe>,
    /// The newest probe dropped to make room (0: none yet).
    evicted: u64,
}

struct Probe {
    seq: u64,
    set: GtidSet,
    at: Instant,
    /// Servers whose view held it already when it was taken: no sample.
    held: Vec<ViewId>,
}

/// At most one probe per source this often, and this many kept per source
/// (about 0.25 s of a busy primary's writes; longer when writes are rare).
const PROBE_EVERY: Duration = Duration::from_millis(1);
const PROBE_KEEP: usize = 256;

impl Probes {
    /// Whether `source` is due a new probe at `now`.
    fn due(&self, source: ViewId, now: Instant) -> bool {
        self.by_source
            .get(&source)
            .and_then(|ring| ring.probes.back())
            .is_none_or(|p| now.saturating_duration_since(p.at) >= PROBE_EVERY)
    }

    fn add(&mut self, source: ViewId, set: &GtidSet, now: Instant, held: Vec<ViewId>) {
        let ring = self.by_source.entry(source).or_default();
        if ring.probes.len() == PROBE_KEEP {
            if let Some(old) = ring.probes.pop_front() {
                ring.evicted = old.seq;
            }
        }
        self.next += 1;
        ring.probes.push_back(Probe {
            seq: self.next,
            set: set.clone(),
            at: now,
            held,
        });
    }

    /// Moves `server`'s cursors past the probes its view now holds; with
    /// `sample`, each one's delay feeds the view's `catch_up`. Not sampled:
    /// probes held at a snapshot (a reconnect's gap is not a catch-up
    /// delay), probes the view held when they were taken, and a scan whose
    /// cursor fell behind the kept probes (it may have held them long ago).
    fn seen(&self, server: ViewId, v: &mut ServerView, now: Instant, sample: bool) {
        for (&source, ring) in &self.by_source {
            if source == server {
                continue;
            }
            let before = v.probe_cursor.get(&source).copied().unwrap_or(0);
            // Probes dropped unseen: the ones after them may have been
            // held for long.
            let fell_behind = ring.evicted != 0 && ring.evicted >= before;
            let sample = sample && !fell_behind;
            let mut cursor = before;
            let probes = &ring.probes;
            for p in probes.range(probes.partition_point(|p| p.seq < before)..) {
                if !p.set.is_subset(&v.set) {
                    break;
                }
                cursor = p.seq + 1;
                if sample && !p.held.contains(&server) {
                    v.catch_up = Some(average(v.catch_up, now.saturating_duration_since(p.at)));
                }
            }
            if cursor != before {
                v.probe_cursor.insert(source, cursor);
            }
        }
    }

    /// How long the oldest probe of `source` that `v` lacks has waited.
    fn pending(&self, source: ViewId, v: &ServerView, now: Instant) -> Option<Duration> {
        let cursor = v.probe_cursor.get(&source).copied().unwrap_or(0);
        let probes = &self.by_source.get(&source)?.probes;
        probes
            .range(probes.partition_point(|p| p.seq < cursor)..)
            .find(|p| !p.set.is_subset(&v.set))
            .map(|p| now.saturating_duration_since(p.at))
    }
}

/// A moving average giving the newest sample 1/8 of the weight.
fn average(old: Option<Duration>, sample: Duration) -> Duration {
    match old {
        None => sample,
        Some(old) => (old * 7 + sample) / 8,
    }
}

impl Inner {
    fn write(&self, server: ViewId, f: impl FnOnce(&mut ServerView) -> bool) {
        let changed = {
            let mut views = self.views.write().unwrap_or_else(PoisonError::into_inner);
            match views.views.get_mut(server.0) {
                Some(v) => f(v),
                None => false,
            }
        };
        if changed {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Longest silence from a reader before its connection is dropped (it
/// sends heartbeats several times a second).
const SILENCE: Duration = Duration::from_secs(3);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Default for Views {
    fn default() -> Self {
        Views::new()
    }
}

impl Views {
    /// No views yet.
    pub fn new() -> Views {
        let (changed, _) = watch::channel(0);
        Views {
            inner: Arc::new(Inner {
                views: RwLock::new(Table::default()),
                changed,
                probes: Mutex::new(Probes::default()),
            }),
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps a view for each of `servers` and subscribes to the readers of
    /// `targets` (a reload calls it again: unchanged targets keep their
    /// stream and view; servers no longer listed have their view emptied,
    /// their slot kept). Needs a Tokio runtime when `targets` is not empty.
    pub fn retarget(&self, servers: &[String], targets: Vec<ViewTarget>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut views = self
                .inner
                .views
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let gone: Vec<usize> = views
                .slots
                .iter()
                .filter(|(name, _)| !servers.contains(name))
                .map(|(_, &i)| i)
                .collect();
            for &i in &gone {
                views.views[i] = ServerView::default();
            }
            views.slots.retain(|name, _| servers.contains(name));
            self.inner
                .probes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_source
                .retain(|id, _| !gone.contains(&id.0));
            for s in servers {
                views.slot(s);
            }
        }
        let mut old = std::mem::take(&mut *tasks);
        for t in targets {
            let id = self.id(&t.server).unwrap_or(ViewId(usize::MAX));
            if let Some((prev, handle)) = old.remove(&t.server) {
                if prev == t {
                    tasks.insert(t.server.clone(), (prev, handle));
                    continue;
                }
                handle.abort();
                // Another reader (or token): its view starts over.
                self.inner.write(id, |v| {
                    *v = ServerView::default();
                    true
                });
            }
            let handle = tokio::spawn(follow(self.inner.clone(), t.clone(), id)).abort_handle();
            tasks.insert(t.server.clone(), (t, handle));
        }
        for (_, (_, handle)) in old {
            handle.abort();
        }
    }

    /// The slot of the server called `name`, when it has one (resolved
    /// once per configuration).
    pub fn id(&self, name: &str) -> Option<ViewId> {
        self.read().slots.get(name).copied().map(ViewId)
    }

    /// Every view, read-locked: hold it only for a decision.
    pub fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.inner
            .views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds GTIDs `server` itself reported (in an OK packet, or its
    /// `gtid_executed`): it has them.
    pub fn learn(&self, server: ViewId, gtids: &GtidSet) {
        {
            let views = self.read();
            if views.at(server).is_none_or(|v| gtids.is_subset(&v.set)) {
                return;
            }
        }
        self.inner.write(server, |v| {
            v.set.union_with(gtids);
            true
        });
    }

    /// `server` returned `gtids` in an OK packet: learns them, and keeps
    /// them (a sample, at most one per millisecond) as a probe to time how
    /// long they take to reach the other servers' views.
    pub fn wrote(&self, server: ViewId, gtids: &GtidSet) {
        self.learn(server, gtids);
        let now = Instant::now();
        // Lock order: the views, then the probes.
        let views = self.read();
        let mut probes = self
            .inner
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !probes.due(server, now) {
            return;
        }
        // A view may hold them already (its delta overtook this OK packet).
        let held = views
            .views
            .iter()
            .enumerate()
            .filter(|&(i, v)| i != server.0 && gtids.is_subset(&v.set))
            .map(|(i, _)| ViewId(i))
            .collect();
        probes.add(server, gtids, now, held);
    }

    /// How far behind `server` is on what `source` returned in OK packets,
    /// as the router sees it: the larger of the moving average of the
    /// measured delays and how long the oldest probe it lacks has waited (a
    /// stalled server grows at once). `None` while neither is known.
    pub fn lag(&self, server: ViewId, source: ViewId, now: Instant) -> Option<Duration> {
        let views = self.read();
        let v = views.at(server)?;
        let pending = self
            .inner
            .probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending(source, v, now);
        match (v.catch_up, pending) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// A causal read on `server` took `took` (see [`ServerView::read_cost`]).
    pub fn read_took(&self, server: ViewId, took: Duration) {
        self.inner.write(server, |v| {
            v.read_cost = Some(average(v.read_cost, took));
            false
        });
    }

    /// A receiver that sees every change of any view.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}

impl Drop for Views {
    fn drop(&mut self) {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, handle) in tasks.values() {
            handle.abort();
        }
    }
}

/// Follows one reader forever, reconnecting with backoff.
async fn follow(inner: Arc<Inner>, target: ViewTarget, id: ViewId) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let res = stream(&inner, &target, id).await;
        inner.write(id, |v| {
            let was = v.connected;
            v.connected = false;
            was
        });
        match res {
            Ok(()) => {
                info!(server = %target.server, reader = %target.addr, "reader closed the stream")
            }
            Err(e) => {
                warn!(server = %target.server, reader = %target.addr, error = %e, "reader stream failed; the view stays as it was")
            }
        }
        if started.elapsed() > BACKOFF_MAX * 2 {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection to a reader: applies its messages until it ends.
async fn stream(inner: &Inner, target: &ViewTarget, id: ViewId) -> Result<(), String> {
    let sock = tokio::time::timeout(SILENCE, TcpStream::connect(&target.addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = sock.set_nodelay(true);
    match &target.tls {
        None => apply(inner, target, id, sock).await,
        Some(tls) => {
            let sock = tokio::time::timeout(SILENCE, tls.connector.connect(tls.name.clone(), sock))
                .await
                .map_err(|_| "tls handshake timed out".to_string())?
                .map_err(|e| format!("tls handshake: {e}"))?;
            apply(inner, target, id, sock).await
        }
    }
}

/// Sends the token, then applies the reader's messages until the stream ends.
async fn apply<S: AsyncRead + AsyncWrite + Unpin>(
    inner: &Inner,
    target: &ViewTarget,
    id: ViewId,
    mut sock: S,
) -> Result<(), String> {
    let mut auth = Vec::new();
    encode_auth(&target.token, &mut auth);
    sock.write_all(&auth)
        .await
        .map_err(|e| format!("sending the token: {e}"))?;
    sock.flush()
        .await
        .map_err(|e| format!("sending the token: {e}"))?;
    let mut dec = Decoder::new();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut snapshot_seen = false;
    loop {
        let n = tokio::time::timeout(SILENCE, sock.read(&mut chunk))
            .await
            .map_err(|_| format!("nothing from the reader for {SILENCE:?}"))?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(())
            } else {
                Err("closed mid-frame".into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut msgs = Vec::new();
        let mut used = 0;
        while let Some((msg, k)) = dec
            .decode(&buf[used..])
            .map_err(|e| format!("bad frame: {e}"))?
        {
            used += k;
            msgs.push(msg);
        }
        buf.drain(..used);
        if msgs.is_empty() {
            continue;
        }
        let now = Instant::now();
        let mut refused = None;
        inner.write(id, |v| {
            // Lock order: the views, then the probes.
            let probes = inner.probes.lock().unwrap_or_else(PoisonError::into_inner);
            let mut grew = false;
            for msg in &msgs {
                match msg {
                    Message::Hello(h) => {
                        debug!(server = %target.server, epoch = h.epoch, "reader hello");
                    }
                    Message::Snapshot(set) => {
                        // Replaces: after a reconnect or reset the reader's
                        // snapshot is the truth (it may be smaller).
                        v.set = set.clone();
                        // It may be smaller (a reset, a re-clone): probes
                        // are matched against it from the oldest again.
                        v.probe_cursor.clear();
                        probes.seen(id, v, now, false);
                        v.connected = true;
                        v.heard = Some(now);
                        v.reader_age = Duration::ZERO;
                        if snapshot_seen {
                            v.resets += 1;
                        }
                        snapshot_seen = true;
                        grew = true;
                    }
                    Message::Delta(set) => {
                        v.set.union_with(set);
                        probes.seen(id, v, now, true);
                        v.heard = Some(now);
                        v.reader_age = Duration::ZERO;
                        grew = true;
                    }
                    Message::Heartbeat(hb) => {
                        v.heard = Some(now);
                        v.reader_age = hb.view_age;
                    }
                    Message::Reset(r) if !snapshot_seen => refused = Some(r.clone()),
                    Message::Reset(r) => {
                        // The server's set may have shrunk: nothing is
                        // known until the next snapshot.
                        info!(server = %target.server, reason = ?r.reason, detail = %r.detail, "reader reset; view emptied");
                        v.set.clear();
                        v.connected = false;
                        v.resets += 1;
                        grew = true;
                    }
                }
            }
            grew
        });
        if let Some(r) = refused {
            return Err(format!(
                "refused by the reader: {:?} {}",
                r.reason, r.detail
            ));
        }
    }
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
