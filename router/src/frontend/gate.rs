//! The door before authentication: how many logins may be in progress
//! (in all and per client address), and how long a user who keeps failing
//! from one address waits for each answer (as MySQL's `connection_control`).
//!
//! ```text
//! accept ──enter(ip)──> Handshaking guard ──login──> guard dropped
//!            │ over max_handshakes / per address: waits for a turn (a
//!            │ burst of logins is smoothed, not refused); none within
//!            │ handshake_timeout: ERR 1040, closed
//! auth outcome ──> delay(user, ip): failures so far ≥ threshold → sleep
//!              ──> failed(user, ip) +1 | succeeded(user, ip) forgets
//! ```
//! The failure record is bounded: user names are cut to [`MAX_NAME`]
//! bytes, and past [`MAX_TRACKED`] records the stalest are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use crate::error::Crowded;

/// Bytes of a user name kept in a failure record (MySQL names are at
/// most 32 characters).
pub const MAX_NAME: usize = 128;
/// Failure records kept at most.
pub const MAX_TRACKED: usize = 100_000;
/// A record untouched for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The limits in force (from `[frontend]`, read at each use so a reload
/// applies to the next login).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Logins in progress at most.
    pub max_handshakes: usize,
    /// Logins in progress per client address at most.
    pub per_address: usize,
    /// Failures in a row before answers are delayed (0: never).
    pub threshold: u32,
    /// First delay, and the step it grows by.
    pub delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
}

impl Limits {
    /// The limits of a `[frontend]` section.
    pub fn of(f: &crate::config::FrontendConfig) -> Self {
        Limits {
            max_handshakes: f.max_handshakes,
            per_address: f.max_handshakes_per_address,
            threshold: f.failed_login_threshold,
            delay: f.failed_login_delay,
            max_delay: f.failed_login_max_delay,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    in_progress: usize,
    per_ip: HashMap<IpAddr, usize>,
    failures: HashMap<(Box<[u8]>, IpAddr), Failures>,
}

/// Logins in progress and failed logins; one per router.
#[derive(Debug, Default)]
pub struct Gate {
    inner: Mutex<Inner>,
    /// Woken when a login ends (a turn may be free).
    turn: tokio::sync::Notify,
}

/// A login in progress; counted until dropped.
#[derive(Debug)]
pub struct Handshaking<'a> {
    gate: &'a Gate,
    ip: IpAddr,
}

impl Drop for Handshaking<'_> {
    fn drop(&mut self) {
        {
            let mut inner = self.gate.lock();
            inner.in_progress = inner.in_progress.saturating_sub(1);
            if let Some(n) = inner.per_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    inner.per_ip.remove(&self.ip);
                }
            }
        }
        self.gate.turn.notify_waiters();
    }
}

/// The delay before answering an attempt that follows `failures` failures
/// in a row: none below the threshold, then `delay`, `2 × delay`, ... up to
/// `max_delay`.
pub fn delay_for(failures: u32, limits: &Limits) -> Duration {
    if limits.threshold == 0 || failures < limits.threshold {
        return Duration::ZERO;
    }
    let steps = failures - limits.threshold + 1;
    limits.delay.saturating_mul(steps).min(limits.max_delay)
}

fn key(user: &[u8], ip: IpAddr) -> (Box<[u8]>, IpAddr) {
    (user[..user.len().min(MAX_NAME)].into(), ip)
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here can be left half-done by a panic: take it anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a login from `ip` in progress, waiting for a turn while the
    /// limits are reached; says why it may not start when none came before
    /// `until`.
    pub async fn enter(
        &self,
        ip: IpAddr,
        limits: &Limits,
        until: tokio::time::Instant,
    ) -> Result<Handshaking<'_>, Crowded> {
        loop {
            let turn = self.turn.notified();
            tokio::pin!(turn);
            turn.as_mut().enable();
            let crowded = match self.try_enter(ip, limits) {
                Ok(h) => return Ok(h),
                Err(c) => c,
            };
            if tokio::time::timeout_at(until, turn).await.is_err() {
                return Err(crowded);
            }
        }
    }

    /// Counts a login from `ip` in progress, or says why it may not start
    /// now.
    pub fn try_enter(&self, ip: IpAddr, limits: &Limits) -> Result<Handshaking<'_>, Crowded> {
        let mut inner = self.lock();
        if inner.in_progress >= limits.max_handshakes {
            return Err(Crowded::All(limits.max_handshakes));
        }
        let mine = inner.per_ip.get(&ip).copied().unwrap_or(0);
        if mine >= limits.per_address {
            return Err(Crowded::Address(limits.per_address));
        }
        inner.in_progress += 1;
        inner.per_ip.insert(ip, mine + 1);
        Ok(Handshaking { gate: self, ip })
    }

    /// Logins in progress now.
    pub fn in_progress(&self) -> usize {
        self.lock().in_progress
    }

    /// Failed logins in a row of `user` from `ip`, and the delay owed
    /// before answering its current attempt.
    pub fn delay(&self, user: &[u8], ip: IpAddr, limits: &Limits) -> (u32, Duration) {
        let failures = self
            .lock()
            .failures
            .get(&key(user, ip))
            .map_or(0, |f| f.count);
        (failures, delay_for(failures, limits))
    }

    /// Records a failed login of `user` from `ip` at `now`.
    pub fn failed(&self, user: &[u8], ip: IpAddr, now: Instant) {
        let mut inner = self.lock();
        if inner.failures.len() >= MAX_TRACKED {
            inner
                .failures
                .retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
        }
        if inner.failures.len() >= MAX_TRACKED {
            // Still full: forget the stalest tenth.
            let mut lasts: Vec<Instant> = inner.failures.values().map(|f| f.last).collect();
            let cut = MAX_TRACKED / 10;
            lasts.select_nth_unstable(cut);
            let before = lasts[cut];
            inner.failures.retain(|_, f| f.last > before);
        }
        let f = inner.failures.entry(key(user, ip)).or_insert(Failures {
            count: 0,
            last: now,
        });
        f.count = f.count.saturating_add(1);
        f.last = now;
    }

    /// A successful login of `user` from `ip`: its failures are forgotten.
    pub fn succeeded(&self, user: &[u8], ip: IpAddr) {
        self.lock().failures.remove(&key(user, ip));
    }

    /// Failure records kept now.
    pub fn tracked(&self) -> usize {
        self.lock().failures.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_handshakes: 3,
            per_address: 2,
            threshold: 3,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
        }
    }

    #[test]
    fn logins_in_progress_are_bounded_in_all_and_per_address() {
        let g = Gate::default();
        let (a, b, c) = (
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([10, 0, 0, 2]),
            IpAddr::from([10, 0, 0, 3]),
        );
        let l = limits();
        let a1 = g.try_enter(a, &l).unwrap();
        let a2 = g.try_enter(a, &l).unwrap();
        assert_eq!(g.try_enter(a, &l).unwrap_err(), Crowded::Address(2));
        let b1 = g.try_enter(b, &l).unwrap();
        assert_eq!(g.try_enter(c, &l).unwrap_err(), Crowded::All(3));
        drop(a1);
        assert_eq!(g.in_progress(), 2);
        let c1 = g.try_enter(c, &l).unwrap();
        drop((a2, b1, c1));
        assert_eq!(g.in_progress(), 0);
        assert!(g.lock().per_ip.is_empty());
        // A reload's new limits apply to the next login.
        let wider = Limits {
            per_address: 3,
            ..l
        };
        let _held: Vec<_> = (0..3).map(|_| g.try_enter(a, &wider).unwrap()).collect();
    }

    #[tokio::test(start_paused = true)]
    async fn a_login_over_the_limits_waits_for_a_turn_then_gives_up() {
        let g = std::sync::Arc::new(Gate::default());
        let a = IpAddr::from([10, 0, 0, 1]);
        let l = limits();
        let first = g.try_enter(a, &l).unwrap();
        let second = g.try_enter(a, &l).unwrap();
        let now = tokio::time::Instant::now();
        // Nothing ends: the third gives up when its time is out.
        let e = g
            .enter(a, &l, now + Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(e, Crowded::Address(2));
        assert_eq!(now.elapsed(), Duration::from_secs(10));
        // A login that ends gives its turn to one that waits.
        let g2 = g.clone();
        let waiter = tokio::spawn(async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            g2.enter(a, &l, until).await.map(|_| ())
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        drop(second);
        assert_eq!(g.in_progress(), 0);
    }

    #[test]
    fn answers_are_delayed_after_the_threshold_and_grow_to_the_cap() {
        let l = limits();
        let delays: Vec<u64> = (0..10).map(|n| delay_for(n, &l).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 1, 2, 3, 4, 5, 5, 5]);
        let off = Limits { threshold: 0, ..l };
        assert_eq!(delay_for(1000, &off), Duration::ZERO);
        assert_eq!(delay_for(u32::MAX, &l), l.max_delay);
    }

    #[test]
    fn failures_count_per_user_and_address_until_a_success() {
        let g = Gate::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let l = limits();
        let now = Instant::now();
        for _ in 0..4 {
            g.failed(b"app", a, now);
        }
        assert_eq!(g.delay(b"app", a, &l), (4, Duration::from_secs(2)));
        // Another address, another user: their own counts.
        assert_eq!(g.delay(b"app", b, &l).0, 0);
        assert_eq!(g.delay(b"other", a, &l).0, 0);
        g.succeeded(b"app", a);
        assert_eq!(g.delay(b"app", a, &l), (0, Duration::ZERO));
    }

    #[test]
    fn the_failure_record_stays_bounded() {
        let g = Gate::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        let start = Instant::now();
        let long = vec![b'x'; 70_000];
        g.failed(&long, ip, start);
        assert!(g.lock().failures.keys().all(|(u, _)| u.len() <= MAX_NAME));
        for i in 0..(MAX_TRACKED + 10) as u64 {
            let now = start + Duration::from_millis(i);
            g.failed(format!("user{i}").as_bytes(), ip, now);
        }
        assert!(g.tracked() <= MAX_TRACKED, "{}", g.tracked());
        // The newest are kept.
        let last = format!("user{}", MAX_TRACKED + 9);
        assert_eq!(g.delay(last.as_bytes(), ip, &limits()).0, 1);
    }
}
