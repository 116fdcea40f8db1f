//! Backend connections per server: limits (per server and per backend
//! user), a bounded first-come queue when every connection is busy,
//! backoff after failed connects, and idle connections lent to whichever
//! session needs one next.
//!
//! ```text
//! session needs server S ──> idle connection of its key (its own last one first) ──> lent
//!                       ├──> room under the limits ─────> Lease ──> connect + login + trackers
//!                       ├──> full, an idle one of another key ──> that one closed, Lease
//!                       └──> full ──> queue (at most queue_max) ──> a released connection of
//!                                     its key, or the room a closed one left ──> lent / Lease
//!                                     └── queue_timeout ──> refused (the client gets an ERR)
//! session done with it ──> the first waiter of its key ──> lent
//!                     ├──> waiters of other keys: closed, so one of them can open its own
//!                     └──> idle (at most pool_max_idle), until pool_idle_timeout
//! a connect refused with ERR 1040 ──> the server's real limit is learned: the
//!                                     statement waits in the queue instead of failing
//! ```
//!
//! Every connection holds a [`Lease`] on its server's counts, released when
//! the connection is dropped, wherever that happens, so the counts cannot
//! drift; a released lease hands its room to the first waiter that may
//! open a connection.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway_wire::{CapabilityFlags, Command};
use tokio::sync::oneshot;

use crate::backend::stmts::StmtCache;
use crate::io::PacketIo;
use crate::session::replay::ConnState;
use crate::session::state::ConnId;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id.
pub fn next_conn_id() -> ConnId {
    NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed)
}

/// What makes two connections to one server interchangeable: the backend
/// user, the capabilities (packets are forwarded as they are, so they must
/// be the client's) and the login collation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The backend user.
    pub user: Arc<str>,
    /// Capabilities in force.
    pub caps: CapabilityFlags,
    /// Collation id at login.
    pub charset: u8,
}

/// One logged-in backend connection.
#[derive(Debug)]
pub struct Conn {
    /// Its identity.
    pub id: ConnId,
    /// The framed connection.
    pub io: PacketIo,
    /// The server's name (logs).
    pub server: Arc<str>,
    /// The server's thread id for this connection.
    pub thread_id: u32,
    /// The nonce of the server's greeting.
    pub nonce: Bytes,
    /// What it is interchangeable by.
    pub key: PoolKey,
    /// Its session state (schema, variables, ...), carried through the pool.
    pub state: ConnState,
    /// The router's session trackers are on.
    pub trackers: bool,
    /// Prepared statements on it.
    pub stmts: StmtCache,
    /// Its count on the server.
    pub lease: Lease,
}

impl Conn {
    /// COM_RESET_CONNECTION within `limit`: true when the server answered
    /// OK (session state gone, transaction rolled back, locks released,
    /// statements closed). The router's trackers are off after it.
    pub async fn reset(&mut self, limit: Duration) -> bool {
        let io = &mut self.io;
        let reset = async {
            io.write_packet(0, &[Command::ResetConnection as u8])
                .await?;
            io.read_packet(64 * 1024).await
        };
        let ok = matches!(
            tokio::time::timeout(limit, reset).await,
            Ok(Ok(p)) if p.payload.first() == Some(&0x00)
        );
        self.state = self.state.after_reset(self.key.caps);
        self.stmts.clear();
        self.trackers = false;
        ok
    }

    /// COM_QUIT, then close.
    pub async fn quit(mut self) {
        // Boxed: the shutdown's timers make it large, and sessions await it
        // on paths that are otherwise small.
        Box::pin(async move {
            let _ = self.io.write_packet(0, &[Command::Quit as u8]).await;
            self.io.shutdown().await;
        })
        .await
    }
}

/// A connection's place in its server's counts.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<ServerPool>,
    user: Arc<str>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let grant = {
            let mut p = self.pool.lock();
            p.open = p.open.saturating_sub(1);
            if let Some(n) = p.per_user.get_mut(&self.user) {
                *n = n.saturating_sub(1);
            }
            p.grant_room()
        };
        if let Some((tx, user)) = grant {
            let lease = Lease {
                pool: self.pool.clone(),
                user,
            };
            // A waiter that gave up drops the lease again: the room goes on.
            let _ = tx.send(Grant::Open(lease));
        }
    }
}

/// Why a connection cannot be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Recent connects failed; the next try is allowed after this long.
    Backoff(Duration),
    /// The queue for this server is full.
    QueueFull(usize),
    /// No connection became free within the queue timeout.
    Timeout(Duration),
}

/// What a session is given.
#[derive(Debug)]
pub enum Grant {
    /// A logged-in connection.
    Conn(Box<Conn>),
    /// Room for a new connection: connect and log in with this lease.
    Open(Lease),
}

/// The limits that apply to one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections to the server, all users.
    pub max: usize,
    /// Connections of this backend user to the server (0: no limit).
    pub user_max: usize,
    /// Waiters at most.
    pub queue_max: usize,
}

/// What a request wants.
#[derive(Debug, Clone)]
pub struct Want {
    /// Its key.
    pub key: PoolKey,
    /// The connection it had last, if it can have it back.
    pub prefer: Option<ConnId>,
    /// The session has no schema: a connection with one would show it.
    pub no_schema: bool,
    /// Its limits.
    pub limits: Limits,
}

impl Want {
    fn fits(&self, c: &Conn) -> bool {
        c.key == self.key && !(self.no_schema && c.state.schema.is_some())
    }
}

#[derive(Debug)]
struct Waiter {
    want: Want,
    tx: oneshot::Sender<Grant>,
}

/// Counters of one pool, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Server name.
    pub server: String,
    /// Connections open (lent + idle).
    pub open: usize,
    /// Idle connections.
    pub idle: usize,
    /// Requests waiting now.
    pub waiting: usize,
    /// Consecutive failed connects.
    pub failures: u32,
    /// Connections opened since start.
    pub opened: u64,
    /// Requests that had to wait, since start.
    pub waits: u64,
    /// Requests that waited in vain, since start.
    pub timeouts: u64,
    /// Connects that failed (or that the server refused as too many), since
    /// start.
    pub connect_failures: u64,
}

#[derive(Debug, Default)]
struct Inner {
    idle: VecDeque<(Conn, Instant)>,
    open: usize,
    per_user: HashMap<Arc<str>, usize>,
    waiters: VecDeque<Waiter>,
    failures: u32,
    retry_at: Option<Instant>,
    /// A connect was refused with ERR 1040 at this many connections: the
    /// server's real limit, until this instant.
    full: Option<(usize, Instant)>,
    opened: u64,
    waits: u64,
    timeouts: u64,
    connect_failures: u64,
}

impl Inner {
    fn limit(&self, l: &Limits, now: Instant) -> usize {
        match self.full {
            Some((at, until)) if until > now => l.max.min(at.max(1)),
            _ => l.max,
        }
    }

    fn room(&self, want: &Want, now: Instant) -> bool {
        self.open < self.limit(&want.limits, now)
            && (want.limits.user_max == 0
                || self.per_user.get(&want.key.user).copied().unwrap_or(0) < want.limits.user_max)
    }

    /// Whether `want` would have room with one connection of `user` closed.
    fn room_without(&self, want: &Want, user: &Arc<str>, now: Instant) -> bool {
        let mine = self.per_user.get(&want.key.user).copied().unwrap_or(0);
        let mine = mine.saturating_sub(usize::from(want.key.user == *user));
        self.open.saturating_sub(1) < self.limit(&want.limits, now)
            && (want.limits.user_max == 0 || mine < want.limits.user_max)
    }

    fn take_room(&mut self, user: &Arc<str>) {
        self.open += 1;
        *self.per_user.entry(user.clone()).or_default() += 1;
    }

    /// The first waiter that may open a connection now, with room taken
    /// for it.
    fn grant_room(&mut self) -> Option<(oneshot::Sender<Grant>, Arc<str>)> {
        let now = Instant::now();
        self.waiters.retain(|w| !w.tx.is_closed());
        let i = self.waiters.iter().position(|w| self.room(&w.want, now))?;
        let w = self.waiters.remove(i)?;
        self.take_room(&w.want.key.user);
        Some((w.tx, w.want.key.user))
    }
}

/// The pool of one server.
#[derive(Debug)]
pub struct ServerPool {
    /// The server's name.
    pub name: Arc<str>,
    inner: Mutex<Inner>,
    /// A reload removed the server: connections given back are closed
    /// (kept idle, each would hold the pool through its lease, forever).
    retired: std::sync::atomic::AtomicBool,
    /// An operator took the server offline: idle connections closed, none
    /// taken back, until it is online again.
    offline: std::sync::atomic::AtomicBool,
}

impl ServerPool {
    /// An empty pool for server `name`.
    pub fn new(name: &str) -> Arc<ServerPool> {
        Arc::new(ServerPool {
            name: Arc::from(name),
            inner: Mutex::new(Inner::default()),
            retired: std::sync::atomic::AtomicBool::new(false),
            offline: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Room that appeared without an event (a server's learned limit
    /// expired) goes to the waiters that can use it, first come first.
    fn grant_waiters(self: &Arc<Self>) {
        loop {
            let Some((tx, user)) = self.lock().grant_room() else {
                return;
            };
            let lease = Lease {
                pool: self.clone(),
                user,
            };
            // Outside the lock: a waiter that gave up drops the lease,
            // which takes the lock.
            let _ = tx.send(Grant::Open(lease));
        }
    }

    /// A connection or room for one now, or `Ok(None)` when the request
    /// must wait; `evicted` gets an idle connection closed to make room
    /// (the caller quits it).
    pub fn try_acquire(
        self: &Arc<Self>,
        want: &Want,
        evicted: &mut Option<Conn>,
    ) -> Result<Option<Grant>, Refused> {
        self.grant_waiters();
        let mut p = self.lock();
        self.try_locked(&mut p, want, evicted)
    }

    fn try_locked(
        self: &Arc<Self>,
        p: &mut Inner,
        want: &Want,
        evicted: &mut Option<Conn>,
    ) -> Result<Option<Grant>, Refused> {
        let now = Instant::now();
        if let Some(id) = want.prefer {
            if let Some(i) = p.idle.iter().position(|(c, _)| c.id == id && want.fits(c)) {
                return Ok(p.idle.remove(i).map(|(c, _)| Grant::Conn(Box::new(c))));
            }
        }
        if let Some(i) = p.idle.iter().rposition(|(c, _)| want.fits(c)) {
            return Ok(p.idle.remove(i).map(|(c, _)| Grant::Conn(Box::new(c))));
        }
        if let Some(at) = p.retry_at {
            if at > now {
                return Err(Refused::Backoff(at - now));
            }
        }
        // Waiters that could use room were given it (grant_waiters, and
        // whenever a lease ends): those left wait for what this request
        // does not take (their key's connection, their user's limit).
        if !p.room(want, now) {
            let user_ok = want.limits.user_max == 0
                || p.per_user.get(&want.key.user).copied().unwrap_or(0) < want.limits.user_max;
            // An idle connection nobody of this key can use makes room.
            if user_ok && !p.idle.is_empty() && p.open >= p.limit(&want.limits, now) {
                *evicted = p.idle.pop_front().map(|(c, _)| c);
                // Its lease still counts until the caller drops it: count
                // the new one past it.
                p.take_room(&want.key.user);
                return Ok(Some(Grant::Open(Lease {
                    pool: self.clone(),
                    user: want.key.user.clone(),
                })));
            }
            return Ok(None);
        }
        p.take_room(&want.key.user);
        Ok(Some(Grant::Open(Lease {
            pool: self.clone(),
            user: want.key.user.clone(),
        })))
    }

    /// Joins the queue: the receiver gets a connection or room for one.
    pub fn enqueue(&self, want: Want) -> Result<oneshot::Receiver<Grant>, Refused> {
        Self::enqueue_locked(&mut self.lock(), want)
    }

    fn enqueue_locked(p: &mut Inner, want: Want) -> Result<oneshot::Receiver<Grant>, Refused> {
        p.waiters.retain(|w| !w.tx.is_closed());
        if p.waiters.len() >= want.limits.queue_max.max(1) {
            return Err(Refused::QueueFull(p.waiters.len()));
        }
        let (tx, rx) = oneshot::channel();
        p.waiters.push_back(Waiter { want, tx });
        p.waits += 1;
        Ok(rx)
    }

    /// A connection or room for one, waiting in the queue at most
    /// `timeout`; `evicted` as in [`ServerPool::try_acquire`].
    pub async fn acquire(
        self: &Arc<Self>,
        want: &Want,
        timeout: Duration,
        evicted: &mut Option<Conn>,
    ) -> Result<(Grant, Option<Duration>), Refused> {
        self.grant_waiters();
        // Trying and queueing under one lock: a connection given back in
        // between would find no waiter and go idle, unseen.
        let rx = {
            let mut p = self.lock();
            if let Some(g) = self.try_locked(&mut p, want, evicted)? {
                return Ok((g, None));
            }
            Self::enqueue_locked(&mut p, want.clone())?
        };
        let started = Instant::now();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(g)) => Ok((g, Some(started.elapsed()))),
            _ => {
                self.lock().timeouts += 1;
                Err(Refused::Timeout(timeout))
            }
        }
    }

    /// Whether requests are waiting for a connection.
    pub fn has_waiters(&self) -> bool {
        let p = self.lock();
        p.waiters.iter().any(|w| !w.tx.is_closed())
    }

    /// Takes back a connection its session is done with: lent to the first
    /// waiter of its key, or kept idle (at most `max_idle`). Returns it
    /// when it must be closed instead (the caller quits it): more than
    /// `max_idle`, or waiters of other keys need its room.
    pub fn give_back(&self, mut conn: Conn, max_idle: usize) -> Option<Conn> {
        loop {
            let waiter = {
                let mut p = self.lock();
                if self.retired.load(Ordering::Relaxed) || self.offline.load(Ordering::Relaxed) {
                    return Some(conn);
                }
                p.waiters.retain(|w| !w.tx.is_closed());
                let now = Instant::now();
                match p.waiters.iter().position(|w| w.want.fits(&conn)) {
                    Some(i) => p.waiters.remove(i),
                    // Closed, its room goes to a waiter of another key
                    // (when the room is what that one lacks).
                    None if p
                        .waiters
                        .iter()
                        .any(|w| p.room_without(&w.want, &conn.key.user, now)) =>
                    {
                        return Some(conn)
                    }
                    None if p.idle.len() < max_idle => {
                        p.idle.push_back((conn, Instant::now()));
                        return None;
                    }
                    None => return Some(conn),
                }
            };
            let Some(w) = waiter else {
                return Some(conn);
            };
            match w.tx.send(Grant::Conn(Box::new(conn))) {
                Ok(()) => return None,
                Err(Grant::Conn(c)) => conn = *c,
                Err(Grant::Open(_)) => return None,
            }
        }
    }

    /// A connect succeeded: backoff ends.
    pub fn connected(&self) {
        let mut p = self.lock();
        p.failures = 0;
        p.retry_at = None;
        p.opened += 1;
    }

    /// A connect failed: the next waits `base`, doubling per consecutive
    /// failure up to 16 × `base`.
    pub fn failed(&self, base: Duration) {
        let mut p = self.lock();
        p.failures = p.failures.saturating_add(1);
        p.connect_failures += 1;
        let factor = 1u32 << (p.failures - 1).min(4);
        p.retry_at = Some(Instant::now() + base * factor);
    }

    /// A connect was refused with ERR 1040 (too many connections): the
    /// server holds at most what is open now, for `hold`.
    pub fn server_full(&self, hold: Duration) {
        let mut p = self.lock();
        p.connect_failures += 1;
        let at = p.open.saturating_sub(1);
        p.full = Some((at, Instant::now() + hold));
    }

    /// The server left the configuration: its idle connections are
    /// returned (the caller closes them), and every one given back later
    /// is refused. Under the lock, so none slips in between.
    pub fn retire(&self) -> Vec<Conn> {
        let mut p = self.lock();
        self.retired.store(true, Ordering::Relaxed);
        p.idle.drain(..).map(|(c, _)| c).collect()
    }

    /// Takes the server offline (`true`: its idle connections are returned
    /// for the caller to close, and connections given back are refused)
    /// or back online.
    pub fn set_offline(&self, offline: bool) -> Vec<Conn> {
        let mut p = self.lock();
        self.offline.store(offline, Ordering::Relaxed);
        if offline {
            p.idle.drain(..).map(|(c, _)| c).collect()
        } else {
            Vec::new()
        }
    }

    /// Removes idle connections unused for `max_age` (all of them with
    /// `Duration::ZERO`); the caller closes them.
    pub fn reap(&self, max_age: Duration) -> Vec<Conn> {
        let mut p = self.lock();
        let mut out = Vec::new();
        while let Some((_, since)) = p.idle.front() {
            if !max_age.is_zero() && since.elapsed() < max_age {
                break;
            }
            if let Some((c, _)) = p.idle.pop_front() {
                out.push(c);
            }
        }
        out
    }

    /// Connections lent to sessions now: the server's load.
    pub fn in_use(&self) -> usize {
        let p = self.lock();
        p.open.saturating_sub(p.idle.len())
    }

    /// Counters for metrics.
    pub fn stats(&self) -> PoolStats {
        let p = self.lock();
        PoolStats {
            server: self.name.to_string(),
            open: p.open,
            idle: p.idle.len(),
            waiting: p.waiters.iter().filter(|w| !w.tx.is_closed()).count(),
            failures: p.failures,
            opened: p.opened,
            waits: p.waits,
            timeouts: p.timeouts,
            connect_failures: p.connect_failures,
        }
    }
}

/// Every server's pool, by name, across reloads: a reload keeps the pools
/// (and their idle connections) of the servers it keeps.
#[derive(Debug, Default)]
pub struct Pools {
    servers: Mutex<HashMap<String, Arc<ServerPool>>>,
}

impl Pools {
    /// Empty.
    pub fn new() -> Pools {
        Pools::default()
    }

    /// The pool of each of `names`, in order (created when new); pools of
    /// servers not named are dropped from the registry and their idle
    /// connections returned, for the caller to close.
    pub fn for_servers<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
    ) -> (Vec<Arc<ServerPool>>, Vec<Conn>) {
        let mut map = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        let pools: Vec<Arc<ServerPool>> = names
            .map(|n| {
                map.entry(n.to_string())
                    .or_insert_with(|| ServerPool::new(n))
                    .clone()
            })
            .collect();
        let mut gone = Vec::new();
        map.retain(|_, p| {
            let keep = pools.iter().any(|q| Arc::ptr_eq(p, q));
            if !keep {
                gone.extend(p.retire());
            }
            keep
        });
        (pools, gone)
    }

    /// Every pool's counters, by server name.
    pub fn stats(&self) -> Vec<PoolStats> {
        let pools: Vec<Arc<ServerPool>> = self
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut v: Vec<PoolStats> = pools.iter().map(|p| p.stats()).collect();
        v.sort_by(|a, b| a.server.cmp(&b.server));
        v
    }

    /// Every pool.
    pub fn all(&self) -> Vec<Arc<ServerPool>> {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
