//! Backend connections per server: limits, backoff after failures, and idle
//! connections kept for the next session.
//!
//! ```text
//! session needs server S --take (idle, same user/caps/charset)--> reused
//!                        --reserve (open < max, not in backoff)--> connect + login
//!                                                                  --fail--> backoff doubles
//! session ends --COM_RESET_CONNECTION ok--> give_back --> idle (until pool_idle_timeout)
//!              --anything else----------> closed
//! ```
//!
//! Every connection holds a [`Lease`] on its server's count, released when
//! the connection is dropped, wherever that happens (session, pool, reaper),
//! so the count cannot drift.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway_wire::{CapabilityFlags, Command};

use crate::io::PacketIo;

/// One logged-in backend connection.
#[derive(Debug)]
pub struct Conn {
    /// The framed connection.
    pub io: PacketIo,
    /// The server's name.
    pub server: String,
    /// The server's thread id for this connection.
    pub thread_id: u32,
    /// The nonce of the server's greeting (COM_CHANGE_USER scrambles with it).
    pub nonce: Bytes,
    /// The backend user it is logged in as.
    pub user: String,
    /// Capabilities in force on it.
    pub caps: CapabilityFlags,
    /// Its collation id at login.
    pub charset: u8,
    /// Its default schema, when known.
    pub schema: Option<Bytes>,
    /// How many of the session's replayed statements it has run.
    pub applied: usize,
    /// It reports the GTIDs of its writes in OK packets
    /// (`session_track_gtids` is not OFF on it).
    pub tracking: bool,
    /// Its count on the server.
    pub lease: Lease,
}

impl Conn {
    /// COM_RESET_CONNECTION within `limit`: true when the server answered
    /// OK (session state gone, transaction rolled back, locks released).
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
        // Session variables are back to the server's defaults.
        self.tracking = false;
        ok
    }

    /// COM_QUIT, then close.
    pub async fn quit(mut self) {
        let _ = self.io.write_packet(0, &[Command::Quit as u8]).await;
        self.io.shutdown().await;
    }
}

/// A connection's place in its server's count.
#[derive(Debug)]
pub struct Lease {
    pools: Arc<Inner>,
    server: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut map) = self.pools.servers.lock() {
            if let Some(p) = map.get_mut(&self.server) {
                p.open = p.open.saturating_sub(1);
            }
        }
    }
}

/// Why no new connection may be opened now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` of the server reached.
    Full(usize),
    /// Recent connects failed; the next try is allowed after this long.
    Backoff(Duration),
}

#[derive(Debug, Default)]
struct ServerPool {
    idle: VecDeque<(Conn, Instant)>,
    open: usize,
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    servers: Mutex<HashMap<String, ServerPool>>,
}

/// Pools of every server, keyed by server name.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    inner: Arc<Inner>,
}

/// Use of one server's pool, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// Server name.
    pub server: String,
    /// Connections open (in use + idle).
    pub open: usize,
    /// Idle connections.
    pub idle: usize,
    /// Consecutive failed connects.
    pub failures: u32,
}

impl Pools {
    /// Empty pools.
    pub fn new() -> Pools {
        Pools::default()
    }

    /// An idle connection to `server` logged in as `user` with the same
    /// capabilities and collation, most recently used first.
    pub fn take(
        &self,
        server: &str,
        user: &str,
        caps: CapabilityFlags,
        charset: u8,
    ) -> Option<Conn> {
        let mut map = self.inner.servers.lock().ok()?;
        let p = map.get_mut(server)?;
        let i = p
            .idle
            .iter()
            .rposition(|(c, _)| c.user == user && c.caps == caps && c.charset == charset)?;
        p.idle.remove(i).map(|(c, _)| c)
    }

    /// Counts a new connection to `server` about to be opened, within
    /// `max` and outside backoff. Closing an idle connection of another
    /// user makes room when the server is full.
    pub fn reserve(&self, server: &str, max: usize) -> Result<Lease, Refused> {
        let mut evicted = None;
        let lease = {
            let mut map = self.inner.servers.lock().map_err(|_| Refused::Full(max))?;
            let p = map.entry(server.to_string()).or_default();
            if let Some(at) = p.retry_at {
                let now = Instant::now();
                if at > now {
                    return Err(Refused::Backoff(at - now));
                }
            }
            if p.open >= max {
                match p.idle.pop_front() {
                    // The evicted connection's lease gives its place back
                    // when it drops, below, outside the lock.
                    Some((c, _)) => evicted = Some(c),
                    None => return Err(Refused::Full(max)),
                }
            }
            p.open += 1;
            Lease {
                pools: self.inner.clone(),
                server: server.to_string(),
            }
        };
        drop(evicted);
        Ok(lease)
    }

    /// A connect to `server` succeeded: backoff ends.
    pub fn connected(&self, server: &str) {
        if let Ok(mut map) = self.inner.servers.lock() {
            if let Some(p) = map.get_mut(server) {
                p.failures = 0;
                p.retry_at = None;
            }
        }
    }

    /// A connect to `server` failed: the next waits `base`, doubling per
    /// consecutive failure up to 16 × `base`.
    pub fn failed(&self, server: &str, base: Duration) {
        if let Ok(mut map) = self.inner.servers.lock() {
            let p = map.entry(server.to_string()).or_default();
            p.failures = p.failures.saturating_add(1);
            let factor = 1u32 << (p.failures - 1).min(4);
            p.retry_at = Some(Instant::now() + base * factor);
        }
    }

    /// Keeps a reset connection for reuse, unless `max_idle` are kept
    /// already (then it is closed by dropping).
    pub fn give_back(&self, conn: Conn, max_idle: usize) {
        let rejected = match self.inner.servers.lock() {
            Ok(mut map) => {
                let p = map.entry(conn.server.clone()).or_default();
                if p.idle.len() < max_idle {
                    p.idle.push_back((conn, Instant::now()));
                    None
                } else {
                    Some(conn)
                }
            }
            Err(_) => Some(conn),
        };
        // Dropped here, outside the lock its lease takes.
        drop(rejected);
    }

    /// Removes idle connections unused for `max_age`, and every idle
    /// connection of servers not in `keep`; the caller closes them.
    pub fn reap(&self, max_age: Duration, keep: &[&str]) -> Vec<Conn> {
        let mut out = Vec::new();
        let Ok(mut map) = self.inner.servers.lock() else {
            return out;
        };
        for (name, p) in map.iter_mut() {
            let known = keep.contains(&name.as_str());
            while let Some((_, since)) = p.idle.front() {
                if known && since.elapsed() < max_age {
                    break;
                }
                if let Some((c, _)) = p.idle.pop_front() {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Connections to `server` in use by sessions now: its load (idle
    /// pooled ones cost the server nothing, and taking one does not change
    /// [`Pools::open`], so that would keep steering to the same server).
    pub fn in_use(&self, server: &str) -> usize {
        self.inner
            .servers
            .lock()
            .ok()
            .and_then(|m| m.get(server).map(|p| p.open.saturating_sub(p.idle.len())))
            .unwrap_or(0)
    }

    /// Connections open to `server` (in use + idle).
    pub fn open(&self, server: &str) -> usize {
        self.inner
            .servers
            .lock()
            .ok()
            .and_then(|m| m.get(server).map(|p| p.open))
            .unwrap_or(0)
    }

    /// Use of every pool.
    pub fn stats(&self) -> Vec<PoolStats> {
        let Ok(map) = self.inner.servers.lock() else {
            return Vec::new();
        };
        let mut v: Vec<_> = map
            .iter()
            .map(|(name, p)| PoolStats {
                server: name.clone(),
                open: p.open,
                idle: p.idle.len(),
                failures: p.failures,
            })
            .collect();
        v.sort_by(|a, b| a.server.cmp(&b.server));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;

    fn conn(pools: &Pools, server: &str, user: &str) -> Conn {
        let lease = pools.reserve(server, 10).unwrap();
        let (a, _b) = tokio::io::duplex(64);
        Conn {
            io: PacketIo::new(Box::new(a), Side::Backend, 1024),
            server: server.into(),
            thread_id: 1,
            nonce: Bytes::new(),
            user: user.into(),
            caps: CapabilityFlags::PROTOCOL_41,
            charset: 255,
            schema: None,
            applied: 0,
            tracking: false,
            lease,
        }
    }

    fn open(pools: &Pools, server: &str) -> usize {
        pools
            .stats()
            .into_iter()
            .find(|s| s.server == server)
            .map_or(0, |s| s.open)
    }

    #[tokio::test]
    async fn leases_count_open_connections_wherever_they_drop() {
        let pools = Pools::new();
        let a = conn(&pools, "s1", "app");
        let b = conn(&pools, "s1", "app");
        assert_eq!(open(&pools, "s1"), 2);
        drop(a);
        assert_eq!(open(&pools, "s1"), 1);
        pools.give_back(b, 8);
        assert_eq!(open(&pools, "s1"), 1, "idle still counts");
        assert_eq!(pools.in_use("s1"), 0, "but is not in use");
        let reaped = pools.reap(Duration::ZERO, &["s1"]);
        assert_eq!(reaped.len(), 1);
        drop(reaped);
        assert_eq!(open(&pools, "s1"), 0);
    }

    #[tokio::test]
    async fn take_matches_user_caps_and_charset() {
        let pools = Pools::new();
        let c = conn(&pools, "s1", "app");
        pools.give_back(c, 8);
        let caps = CapabilityFlags::PROTOCOL_41;
        assert!(pools.take("s1", "other", caps, 255).is_none());
        assert!(pools.take("s1", "app", caps, 8).is_none());
        assert!(pools.take("s2", "app", caps, 255).is_none());
        assert!(pools.take("s1", "app", caps, 255).is_some());
        assert!(pools.take("s1", "app", caps, 255).is_none(), "taken once");
    }

    #[tokio::test]
    async fn limits_evict_idle_connections_before_refusing() {
        let pools = Pools::new();
        let l1 = pools.reserve("s", 2).unwrap();
        let c = conn(&pools, "s", "other");
        pools.give_back(c, 8);
        // Full: one in use, one idle. The idle one makes room.
        let l2 = pools.reserve("s", 2).unwrap();
        assert_eq!(open(&pools, "s"), 2);
        assert_eq!(pools.reserve("s", 2).unwrap_err(), Refused::Full(2));
        drop((l1, l2));
        assert_eq!(open(&pools, "s"), 0);
    }

    #[test]
    fn failures_back_off_exponentially_and_a_success_clears_it() {
        let pools = Pools::new();
        let base = Duration::from_secs(100);
        pools.failed("s", base);
        let Err(Refused::Backoff(first)) = pools.reserve("s", 10) else {
            panic!("expected backoff");
        };
        assert!(first <= base && first > base / 2, "{first:?}");
        pools.failed("s", base);
        pools.failed("s", base);
        let Err(Refused::Backoff(third)) = pools.reserve("s", 10) else {
            panic!("expected backoff");
        };
        assert!(third > base * 3, "{third:?}");
        for _ in 0..10 {
            pools.failed("s", base);
        }
        let Err(Refused::Backoff(capped)) = pools.reserve("s", 10) else {
            panic!("expected backoff");
        };
        assert!(capped <= base * 16, "{capped:?}");
        pools.connected("s");
        assert!(pools.reserve("s", 10).is_ok());
    }

    #[tokio::test]
    async fn reap_drops_idle_connections_of_removed_servers() {
        let pools = Pools::new();
        let c = conn(&pools, "gone", "app");
        pools.give_back(c, 8);
        let c = conn(&pools, "kept", "app");
        pools.give_back(c, 8);
        let reaped = pools.reap(Duration::from_secs(3600), &["kept"]);
        assert_eq!(reaped.len(), 1);
        assert_eq!(reaped[0].server, "gone");
    }
}
