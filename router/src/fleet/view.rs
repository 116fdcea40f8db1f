//! The fleet as one router sees it through etcd, pure: the routers'
//! registrations with what is wrong with each, and the GTIDs the other
//! routers acknowledged.
//!
//! ```text
//! key/routers/ID       (leased) ──> Registration ──> rows(): flags behind / reload_failed
//! key/acknowledged/ID  (not leased) ──> Peers::set(ID, sets); this router's own, found at
//!                      start ──> Peers::inherit (published again with what it acknowledges)
//!   ID not registered and every configured server has its sets ──> Peers::removable
//!                      ──> deleted (compare-and-swap) ──> Peers::remove
//! failover check ──> own acknowledged ∪ Peers::union_into(cluster)
//! ```

use std::collections::{BTreeMap, HashMap};

use causeway_gtid::GtidSet;
use serde::{Deserialize, Serialize};

/// What a router writes about itself under `key/routers/ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Registration {
    /// Its name in the fleet.
    pub id: String,
    /// Where clients connect.
    pub address: String,
    /// Its admin interface, when it has one.
    pub admin: Option<String>,
    /// Its metrics endpoint, when it has one.
    pub metrics: Option<String>,
    /// Its version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// When it started (seconds since the epoch).
    pub started: u64,
    /// The etcd revision of the configuration document in force (0: none
    /// from etcd yet).
    pub config_revision: i64,
    /// Since when (seconds since the epoch).
    pub config_since: u64,
    /// The last revision it refused, and why; cleared when a later one is
    /// put in force.
    pub last_error: Option<String>,
    /// The revision of `last_error`.
    pub last_error_revision: i64,
}

/// One line of the fleet view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The registration.
    pub reg: Registration,
    /// The document's latest revision in etcd.
    pub latest: i64,
    /// Not running the latest revision.
    pub behind: bool,
    /// Its last reload was refused.
    pub reload_failed: bool,
}

impl Row {
    /// What is wrong, in words ("" when nothing).
    pub fn problem(&self) -> String {
        let mut p = Vec::new();
        if self.behind {
            p.push(format!(
                "runs revision {} of {}",
                self.reg.config_revision, self.latest
            ));
        }
        if let Some(e) = &self.reg.last_error {
            p.push(format!(
                "refused revision {}: {e}",
                self.reg.last_error_revision
            ));
        }
        p.join("; ")
    }
}

/// Every registered router, in id order, flagged against the latest
/// revision: `latest` as read from etcd, or a later one a router runs.
pub fn rows(regs: &BTreeMap<String, Registration>, latest: i64) -> Vec<Row> {
    let latest = regs
        .values()
        .map(|r| r.config_revision)
        .fold(latest, i64::max);
    regs.values()
        .map(|r| Row {
            reg: r.clone(),
            latest,
            behind: r.config_revision < latest,
            reload_failed: r.last_error.is_some(),
        })
        .collect()
}

/// Per cluster (writer hostgroup name), a GTID set in text form: what a
/// router writes under `key/acknowledged/ID`.
pub type Published = BTreeMap<String, String>;

/// Writes `sets` as the published document.
pub fn publish(sets: &HashMap<String, GtidSet>) -> String {
    let doc: Published = sets
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(c, s)| (c.clone(), s.to_string()))
        .collect();
    serde_json::to_string(&doc).unwrap_or_default()
}

/// Reads a published document; clusters whose set does not parse are
/// reported in the error (and the others kept).
pub fn parse_published(text: &[u8]) -> (HashMap<String, GtidSet>, Vec<String>) {
    let mut sets = HashMap::new();
    let mut bad = Vec::new();
    match serde_json::from_slice::<Published>(text) {
        Ok(doc) => {
            for (cluster, set) in doc {
                match GtidSet::parse(&set) {
                    Ok(s) => {
                        sets.insert(cluster, s);
                    }
                    Err(e) => bad.push(format!("{cluster}: {e}")),
                }
            }
        }
        Err(e) => bad.push(e.to_string()),
    }
    (sets, bad)
}

/// What the routers of the fleet published under `key/acknowledged/`,
/// per cluster. The keys are not leased: what a router acknowledged stays
/// needed after it stops, until every server of the cluster has it; then
/// any router deletes the key (compare-and-swap on its revision, so a
/// router that came back and published meanwhile keeps its own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peers {
    /// By router id (this one's excepted): its sets and the key's
    /// revision.
    published: BTreeMap<String, (HashMap<String, GtidSet>, i64)>,
    /// What this router had published before it (re)started: it publishes
    /// it again with what it acknowledges now, until every server has it.
    inherited: HashMap<String, GtidSet>,
}

impl Peers {
    /// `router` published `sets` at `rev`. A publisher's sets only grow
    /// (or lose what every server has), so the later document replaces the
    /// former; clusters that did not parse (`bad`) keep their former set.
    pub fn set(&mut self, router: &str, mut sets: HashMap<String, GtidSet>, bad: bool, rev: i64) {
        if bad {
            if let Some((old, _)) = self.published.get(router) {
                for (c, s) in old {
                    sets.entry(c.clone()).or_default().union_with(s);
                }
            }
        }
        self.published.insert(router.to_string(), (sets, rev));
    }

    /// `router`'s key was deleted: a router found every server holds it.
    pub fn remove(&mut self, router: &str) {
        self.published.remove(router);
    }

    /// What this router published before it started.
    pub fn inherit(&mut self, sets: HashMap<String, GtidSet>) {
        for (c, s) in sets {
            self.inherited.entry(c).or_default().union_with(&s);
        }
    }

    /// What this router must publish beside what it acknowledged.
    pub fn inherited(&self) -> &HashMap<String, GtidSet> {
        &self.inherited
    }

    /// Everything the other routers (and this one before it started)
    /// acknowledged in `cluster`, into `into`.
    pub fn union_into(&self, cluster: &str, into: &mut GtidSet) {
        for (sets, _) in self.published.values() {
            if let Some(s) = sets.get(cluster) {
                into.union_with(s);
            }
        }
        if let Some(s) = self.inherited.get(cluster) {
            into.union_with(s);
        }
    }

    /// Forgets what this router inherited that every configured server of
    /// the cluster has (`everywhere`: the intersection over all of them, a
    /// server not heard from counting as having nothing).
    pub fn prune_inherited(&mut self, everywhere: &HashMap<String, GtidSet>) {
        for (c, s) in self.inherited.iter_mut() {
            if let Some(e) = everywhere.get(c) {
                s.subtract(e);
            }
        }
        self.inherited.retain(|_, s| !s.is_empty());
    }

    /// Keys that can go: routers not registered (`registered` says which
    /// are) whose every set every configured server has; with the
    /// revision to delete them at.
    pub fn removable(
        &self,
        registered: impl Fn(&str) -> bool,
        everywhere: &HashMap<String, GtidSet>,
    ) -> Vec<(String, i64)> {
        self.published
            .iter()
            .filter(|(id, _)| !registered(id))
            .filter(|(_, (sets, _))| {
                sets.iter()
                    .all(|(c, s)| everywhere.get(c).is_some_and(|e| s.is_subset(e)))
            })
            .map(|(id, (_, rev))| (id.clone(), *rev))
            .collect()
    }

    /// Routers with published sets.
    pub fn routers(&self) -> impl Iterator<Item = &str> {
        self.published.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    fn set(gnos: &str) -> GtidSet {
        GtidSet::parse(&format!("{A}:{gnos}")).unwrap()
    }

    fn sets(gnos: &str) -> HashMap<String, GtidSet> {
        HashMap::from([("primary".to_string(), set(gnos))])
    }

    #[test]
    fn published_sets_round_trip_and_bad_ones_are_named() {
        let doc = publish(&sets("1-5:7"));
        let (back, bad) = parse_published(doc.as_bytes());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back, sets("1-5:7"));
        let (back, bad) = parse_published(
            br#"{"primary":"not a set","other":"3e11fa47-71ca-11e1-9e33-c80aa9429562:1"}"#,
        );
        assert_eq!(back.len(), 1);
        assert!(bad[0].starts_with("primary:"), "{bad:?}");
        let (back, bad) = parse_published(b"{oops");
        assert!(back.is_empty() && bad.len() == 1);
    }

    #[test]
    fn the_union_holds_every_router_s_sets_until_every_server_has_them() {
        let mut p = Peers::default();
        p.set("r1", sets("1-10"), false, 5);
        p.set("r2", sets("20-30"), false, 6);
        p.inherit(sets("40"));
        let mut u = GtidSet::default();
        p.union_into("primary", &mut u);
        assert_eq!(u, GtidSet::parse(&format!("{A}:1-10:20-30:40")).unwrap());
        // r1 stopped (no registration): its key goes only once every
        // server has 1-10.
        let every = |g: &str| HashMap::from([("primary".to_string(), set(g))]);
        let reg = |id: &str| id == "r2";
        assert!(p.removable(reg, &every("1-9")).is_empty());
        assert_eq!(p.removable(reg, &every("1-10")), [("r1".to_string(), 5)]);
        // A registered router's key never goes.
        assert_eq!(p.removable(|_| true, &every("1-100")), []);
        // A cluster no server is known for keeps it.
        assert!(p.removable(reg, &HashMap::new()).is_empty());
        p.remove("r1");
        p.prune_inherited(&every("1-39"));
        assert_eq!(p.inherited()["primary"], set("40"));
        p.prune_inherited(&every("1-40"));
        assert!(p.inherited().is_empty());
        let mut u = GtidSet::default();
        p.union_into("primary", &mut u);
        assert_eq!(u, set("20-30"));
        assert_eq!(p.routers().collect::<Vec<_>>(), ["r2"]);
    }

    #[test]
    fn an_unreadable_cluster_keeps_the_set_it_had() {
        let mut p = Peers::default();
        p.set("r1", sets("1-10"), false, 5);
        p.set("r1", HashMap::new(), true, 6);
        let mut u = GtidSet::default();
        p.union_into("primary", &mut u);
        assert_eq!(u, set("1-10"));
        p.set("r1", sets("1-12"), false, 7);
        let mut u = GtidSet::default();
        p.union_into("primary", &mut u);
        assert_eq!(u, set("1-12"));
    }

    #[test]
    fn rows_flag_routers_behind_or_refusing() {
        let reg = |id: &str, rev: i64, err: Option<&str>| Registration {
            id: id.into(),
            config_revision: rev,
            last_error: err.map(Into::into),
            last_error_revision: if err.is_some() { 9 } else { 0 },
            ..Registration::default()
        };
        let regs: BTreeMap<String, Registration> = [
            reg("a", 8, None),
            reg("b", 7, None),
            reg("c", 8, Some("invalid configuration")),
        ]
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
        let r = rows(&regs, 8);
        assert_eq!(
            r.iter()
                .map(|r| (r.reg.id.as_str(), r.behind, r.reload_failed))
                .collect::<Vec<_>>(),
            [("a", false, false), ("b", true, false), ("c", false, true)]
        );
        assert_eq!(r[0].problem(), "");
        assert_eq!(r[1].problem(), "runs revision 7 of 8");
        assert_eq!(r[2].problem(), "refused revision 9: invalid configuration");
    }
}
