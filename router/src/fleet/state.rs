//! What one router knows of its fleet, shared between the etcd tasks
//! ([`crate::fleet::agent`]), the failover check
//! ([`crate::shared::Shared`]) and the admin `fleet` table.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use causeway_gtid::GtidSet;
use tokio::sync::watch;

use super::view::{Peers, Registration, Row};

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A file (or none: tests that build a router in process).
    File,
    /// An etcd key.
    Etcd {
        /// How to reach etcd, and the document's key.
        config: Box<crate::config::EtcdConfig>,
        /// This router's id in the fleet.
        router_id: String,
    },
}

/// The connection to etcd, as the tasks last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not configured from etcd.
    Unused,
    /// Connected, since.
    Up(SystemTime),
    /// Lost (or never reached), since, and the last error.
    Down(SystemTime, String),
}

#[derive(Debug)]
struct Inner {
    source: Source,
    link: Link,
    /// The document's latest revision seen in etcd.
    latest: i64,
    /// The revision in force and since when.
    applied: (i64, SystemTime),
    /// The last revision refused and why (cleared by a later success).
    refused: Option<(i64, String)>,
    routers: BTreeMap<String, Registration>,
    peers: Peers,
    /// The peers' sets were read since the link last came up.
    caught_up: bool,
    /// The lease this router's registration lives under, while linked.
    lease: Option<i64>,
    /// Per cluster, what every configured server has applied (a server
    /// not heard from counting as having nothing).
    everywhere: HashMap<String, GtidSet>,
}

/// The fleet state of one router.
#[derive(Debug)]
pub struct FleetState {
    inner: Mutex<Inner>,
    /// Bumped when the peers' acknowledged sets change (the failover check
    /// of a cluster catching up looks again) or this router's own record
    /// changes (the registration is written again).
    peers_changed: watch::Sender<u64>,
    record_changed: watch::Sender<u64>,
    /// One document put in force at a time (the watch, SIGHUP, RELOAD),
    /// recorded with its revision before the next.
    pub apply_lock: tokio::sync::Mutex<()>,
}

impl Default for FleetState {
    fn default() -> Self {
        FleetState {
            inner: Mutex::new(Inner {
                source: Source::File,
                link: Link::Unused,
                latest: 0,
                applied: (0, SystemTime::now()),
                refused: None,
                routers: BTreeMap::new(),
                peers: Peers::default(),
                caught_up: false,
                lease: None,
                everywhere: HashMap::new(),
            }),
            peers_changed: watch::channel(0).0,
            record_changed: watch::channel(0).0,
            apply_lock: tokio::sync::Mutex::new(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A copy of the fleet state for display.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Where the configuration comes from.
    pub source: Source,
    /// The etcd connection.
    pub link: Link,
    /// The document's latest revision seen in etcd.
    pub latest: i64,
    /// The revision in force, since.
    pub applied: (i64, SystemTime),
    /// The last refused revision and why.
    pub refused: Option<(i64, String)>,
    /// Every live router, flagged.
    pub rows: Vec<Row>,
}

impl FleetState {
    /// The configuration comes from etcd.
    pub fn set_source(&self, source: Source) {
        lock(&self.inner).source = source;
    }

    /// The etcd settings, when the configuration comes from etcd.
    pub fn etcd(&self) -> Option<crate::config::EtcdConfig> {
        match &lock(&self.inner).source {
            Source::Etcd { config, .. } => Some((**config).clone()),
            Source::File => None,
        }
    }

    /// The etcd connection is up or down.
    pub fn set_link(&self, link: Link) {
        let mut i = lock(&self.inner);
        if matches!(link, Link::Down(..)) && i.caught_up {
            i.caught_up = false;
            drop(i);
            self.peers_changed.send_modify(|n| *n += 1);
            i = lock(&self.inner);
        }
        let same = matches!(
            (&i.link, &link),
            (Link::Up(_), Link::Up(_)) | (Link::Down(..), Link::Down(..))
        );
        if !same {
            i.link = link;
        } else if let (Link::Down(_, e), Link::Down(_, new)) = (&mut i.link, link) {
            *e = new;
        }
    }

    /// The document's latest revision in etcd is `rev`.
    pub fn saw_revision(&self, rev: i64) {
        let mut i = lock(&self.inner);
        i.latest = i.latest.max(rev);
    }

    /// Revision `rev` is in force.
    pub fn applied(&self, rev: i64) {
        {
            let mut i = lock(&self.inner);
            i.applied = (rev, SystemTime::now());
            i.latest = i.latest.max(rev);
            i.refused = None;
        }
        self.record_changed.send_modify(|n| *n += 1);
    }

    /// Revision `rev` was refused.
    pub fn refused(&self, rev: i64, why: String) {
        {
            let mut i = lock(&self.inner);
            i.latest = i.latest.max(rev);
            i.refused = Some((rev, why));
        }
        self.record_changed.send_modify(|n| *n += 1);
    }

    /// The revision in force (0: not from etcd).
    pub fn applied_revision(&self) -> i64 {
        lock(&self.inner).applied.0
    }

    /// The last revision refused, when no later one was put in force.
    pub fn refused_revision(&self) -> Option<i64> {
        lock(&self.inner).refused.as_ref().map(|r| r.0)
    }

    /// The lease of the registration (none while unlinked).
    pub fn set_lease(&self, lease: Option<i64>) {
        lock(&self.inner).lease = lease;
    }

    /// The lease of the registration.
    pub fn lease(&self) -> Option<i64> {
        lock(&self.inner).lease
    }

    /// The peers' sets were read on the link now up.
    pub fn set_caught_up(&self) {
        lock(&self.inner).caught_up = true;
        self.peers_changed.send_modify(|n| *n += 1);
    }

    /// Whether this router knows what every router of its fleet
    /// acknowledged: always without a fleet; with one, while its link to
    /// etcd is up and the peers' sets were read on it. When not, a new
    /// writer is not elected (writes wait, as for one lacking GTIDs).
    pub fn knows_fleet(&self) -> bool {
        let i = lock(&self.inner);
        matches!(i.source, Source::File) || (matches!(i.link, Link::Up(_)) && i.caught_up)
    }

    /// This router's record, as of now.
    pub fn record(&self, base: &Registration) -> Registration {
        let i = lock(&self.inner);
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        Registration {
            config_revision: i.applied.0,
            config_since: secs(i.applied.1),
            last_error: i.refused.as_ref().map(|r| r.1.clone()),
            last_error_revision: i.refused.as_ref().map_or(0, |r| r.0),
            ..base.clone()
        }
    }

    /// Watched by the registration task.
    pub fn record_changes(&self) -> watch::Receiver<u64> {
        self.record_changed.subscribe()
    }

    /// The registrations seen under `key/routers/`, replaced whole.
    pub fn set_routers(&self, routers: BTreeMap<String, Registration>) {
        lock(&self.inner).routers = routers;
    }

    /// One registration written or deleted.
    pub fn router_event(&self, id: &str, reg: Option<Registration>) {
        let mut i = lock(&self.inner);
        match reg {
            Some(r) => i.routers.insert(id.to_string(), r),
            None => i.routers.remove(id),
        };
    }

    /// Live routers seen.
    pub fn router_count(&self) -> usize {
        lock(&self.inner).routers.len()
    }

    /// Applies `f` to the peers' acknowledged sets.
    pub fn peers<R>(&self, f: impl FnOnce(&mut Peers) -> R) -> R {
        let r = f(&mut lock(&self.inner).peers);
        self.peers_changed.send_modify(|n| *n += 1);
        r
    }

    /// Adds what the other routers acknowledged in `cluster` to `into`.
    pub fn peers_union(&self, cluster: &str, into: &mut GtidSet) {
        lock(&self.inner).peers.union_into(cluster, into);
    }

    /// What every configured server of each cluster has applied: what
    /// this router inherited and has is forgotten, other routers' keys
    /// fully had may go.
    pub fn set_everywhere(&self, everywhere: HashMap<String, GtidSet>) {
        let mut i = lock(&self.inner);
        i.peers.prune_inherited(&everywhere);
        i.everywhere = everywhere;
    }

    /// Other routers' acknowledged keys that can be deleted (see
    /// [`Peers::removable`]), with their revisions.
    pub fn removable(&self) -> Vec<(String, i64)> {
        let i = lock(&self.inner);
        i.peers
            .removable(|id| i.routers.contains_key(id), &i.everywhere)
    }

    /// What this router publishes beside what it acknowledged.
    pub fn inherited(&self) -> HashMap<String, GtidSet> {
        lock(&self.inner).peers.inherited().clone()
    }

    /// Watched by the failover check.
    pub fn peers_changes(&self) -> watch::Receiver<u64> {
        self.peers_changed.subscribe()
    }

    /// A copy for the admin table and `fleet status`.
    pub fn snapshot(&self) -> Snapshot {
        let i = lock(&self.inner);
        Snapshot {
            source: i.source.clone(),
            link: i.link.clone(),
            latest: i.latest,
            applied: i.applied,
            refused: i.refused.clone(),
            rows: super::view::rows(&i.routers, i.latest),
        }
    }
}
