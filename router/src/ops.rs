//! Operational state an operator sets through the admin interface: servers
//! drained or taken offline, hostgroups paused. It lives in memory only: the
//! configuration file stays the one source of what the router serves, a
//! restart starts with every server online and every hostgroup running, and
//! a reload keeps what the operator set for the servers and hostgroups that
//! are still named.
//!
//! ```text
//!            DRAIN SERVER              (no statement runs there)
//! Online ----------------> Draining ----------------------------> Drained
//!   ^  \      OFFLINE SERVER                                        |
//!   |   `---------------------------> Offline <--- OFFLINE SERVER --'
//!   `------------------ ONLINE SERVER (from any) ------------------'
//!
//! Running --PAUSE hostgroup--> Paused --RESUME hostgroup--> Running
//! ```
//! A draining server takes no new statement, what runs there finishes, held
//! connections (transactions, pinned sessions) keep it until they let go;
//! an offline one takes nothing new either and its idle connections close.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

/// What an operator made of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOp {
    /// No new statements (it leaves its groups at once); what runs there
    /// finishes, and it shows as drained once nothing does.
    Draining,
    /// No statements at all.
    Offline,
}

impl ServerOp {
    /// Its name in the admin tables.
    pub fn name(self) -> &'static str {
        match self {
            ServerOp::Draining => "draining",
            ServerOp::Offline => "offline",
        }
    }
}

/// One server's operational state, with when it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Set {
    /// What was set.
    pub op: ServerOp,
    /// When (wall clock, for the admin tables).
    pub since: SystemTime,
}

/// Operational state, by server and hostgroup name (names outlive a reload).
#[derive(Debug, Default)]
pub struct Ops {
    servers: Mutex<HashMap<String, Set>>,
    paused: Mutex<HashSet<String>>,
    resumed: tokio::sync::Notify,
    changes: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
    any_paused: std::sync::atomic::AtomicBool,
}

impl Ops {
    /// The operational state of server `name` (`None`: online).
    pub fn server(&self, name: &str) -> Option<Set> {
        self.servers.lock().ok()?.get(name).copied()
    }

    /// Every server an operator set, by name.
    pub fn servers(&self) -> HashMap<String, Set> {
        self.servers.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Sets server `name` to `op` (`None`: online again); whether it changed.
    pub fn set_server(&self, name: &str, op: Option<ServerOp>) -> bool {
        let Ok(mut m) = self.servers.lock() else {
            return false;
        };
        let changed = match op {
            None => m.remove(name).is_some(),
            Some(op) => {
                if m.get(name).is_some_and(|s| s.op == op) {
                    false
                } else {
                    m.insert(
                        name.to_string(),
                        Set {
                            op,
                            since: SystemTime::now(),
                        },
                    );
                    true
                }
            }
        };
        if changed {
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // One listener (the election); a permit is kept if it is busy.
            self.changed.notify_one();
        }
        changed
    }

    /// Returns after a server's state changed (the election's wake-up).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// What an operator set, by server name, for the election.
    pub fn server_ops(&self) -> HashMap<String, ServerOp> {
        self.servers
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.op)).collect())
            .unwrap_or_default()
    }

    /// Whether any hostgroup is paused (one atomic load).
    pub fn any_paused(&self) -> bool {
        self.any_paused.load(std::sync::atomic::Ordering::Acquire)
    }

    /// After a reload: forgets what was set for servers and hostgroups the
    /// configuration no longer names (statements waiting on a hostgroup
    /// that is gone are released, to be steered by the new configuration).
    pub fn retain(&self, server: impl Fn(&str) -> bool, group: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.servers.lock() {
            m.retain(|name, _| server(name));
        }
        if let Ok(mut p) = self.paused.lock() {
            let before = p.len();
            p.retain(|name| group(name));
            self.any_paused
                .store(!p.is_empty(), std::sync::atomic::Ordering::Release);
            if p.len() != before {
                drop(p);
                self.resumed.notify_waiters();
            }
        }
    }

    /// Whether hostgroup `name` is paused (one atomic load when none is).
    pub fn is_paused(&self, name: &str) -> bool {
        self.any_paused.load(std::sync::atomic::Ordering::Acquire)
            && self.paused.lock().is_ok_and(|p| p.contains(name))
    }

    /// The paused hostgroups.
    pub fn paused(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .paused
            .lock()
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Pauses (`true`) or resumes hostgroup `name`; whether it changed.
    pub fn set_paused(&self, name: &str, paused: bool) -> bool {
        let Ok(mut p) = self.paused.lock() else {
            return false;
        };
        let changed = if paused {
            p.insert(name.to_string())
        } else {
            p.remove(name)
        };
        self.any_paused
            .store(!p.is_empty(), std::sync::atomic::Ordering::Release);
        drop(p);
        if changed && !paused {
            self.resumed.notify_waiters();
        }
        changed
    }

    /// Returns once hostgroup `name` is not paused (at once if it is not).
    pub async fn wait_resumed(&self, name: &str) {
        loop {
            let woken = self.resumed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !self.is_paused(name) {
                return;
            }
            woken.await;
        }
    }

    /// How many times a server's state changed (membership follows it).
    pub fn generation(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_move_between_states_and_report_changes() {
        let ops = Ops::default();
        assert_eq!(ops.server("a"), None);
        assert!(ops.set_server("a", Some(ServerOp::Draining)));
        assert!(!ops.set_server("a", Some(ServerOp::Draining)), "no change");
        assert_eq!(ops.server("a").map(|s| s.op), Some(ServerOp::Draining));
        assert!(ops.set_server("a", Some(ServerOp::Offline)));
        assert_eq!(ops.generation(), 2);
        assert!(ops.set_server("a", None));
        assert!(!ops.set_server("a", None));
        assert_eq!(ops.server("a"), None);
        assert_eq!(ops.generation(), 3);
        ops.set_server("a", Some(ServerOp::Offline));
        ops.set_server("b", Some(ServerOp::Draining));
        ops.retain(|s| s == "b", |_| true);
        assert_eq!(
            ops.server("a"),
            None,
            "a server no longer configured is forgotten"
        );
        assert!(ops.server("b").is_some());
    }

    #[tokio::test]
    async fn a_paused_group_releases_its_waiters_on_resume() {
        let ops = std::sync::Arc::new(Ops::default());
        assert!(ops.set_paused("r", true));
        assert!(!ops.set_paused("r", true));
        assert_eq!(ops.paused(), vec!["r".to_string()]);
        let waiter = tokio::spawn({
            let ops = ops.clone();
            async move { ops.wait_resumed("r").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        ops.wait_resumed("w").await;
        assert!(ops.set_paused("r", false));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("released")
            .unwrap();
        // A paused group a reload removed releases its waiters too.
        ops.set_paused("gone", true);
        let waiter = tokio::spawn({
            let ops = ops.clone();
            async move { ops.wait_resumed("gone").await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        ops.retain(|_| true, |g| g != "gone");
        assert!(!ops.any_paused());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("released")
            .unwrap();
    }
}
