//! The fleet as one router sees it through etcd, pure: the routers'
//! registrations with what is wrong with each, and the GTIDs the other
//! routers acknowledged.
//!
//! ```text
//! key/routers/ID       (lease) ──> Registration ──> rows(): flags behind / reload_failed
//! key/acknowledged/ID  (lease) ──> Peers::set(ID, sets)
//!                      deleted ──> Peers::depart(ID): its sets stay until every server
//!                                  of the cluster has them (Peers::prune)
//! failover check ──> own acknowledged ∪ Peers::union(cluster)
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

/// Every registered router, in id order, flagged against `latest`.
pub fn rows(regs: &BTreeMap<String, Registration>, latest: i64) -> Vec<Row> {
    regs.values()
        .map(|r| Row {
            reg: r.clone(),
            latest,
            behind: r.config_revision != latest,
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

/// What the other routers of the fleet acknowledged, per cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peers {
    /// By router id: its last published sets (the router is live: its
    /// key is under its lease).
    live: BTreeMap<String, HashMap<String, GtidSet>>,
    /// What routers that left had acknowledged and not every server of
    /// the cluster has yet: a new writer must still hold it.
    departed: HashMap<String, GtidSet>,
}

impl Peers {
    /// `router` published `sets` (a later document replaces the former:
    /// sets only grow, or shrink by compaction to what every server has).
    pub fn set(&mut self, router: &str, sets: HashMap<String, GtidSet>) {
        self.live.insert(router.to_string(), sets);
    }

    /// `router`'s key went away (it stopped, or its lease expired): what
    /// it acknowledged stays needed.
    pub fn depart(&mut self, router: &str) {
        if let Some(sets) = self.live.remove(router) {
            for (cluster, set) in sets {
                self.departed.entry(cluster).or_default().union_with(&set);
            }
        }
    }

    /// Everything the other routers acknowledged in `cluster`, into `into`.
    pub fn union_into(&self, cluster: &str, into: &mut GtidSet) {
        for sets in self.live.values() {
            if let Some(s) = sets.get(cluster) {
                into.union_with(s);
            }
        }
        if let Some(s) = self.departed.get(cluster) {
            into.union_with(s);
        }
    }

    /// Forgets what routers that left acknowledged in `cluster` once every
    /// server of it has applied it (`everywhere`).
    pub fn prune(&mut self, cluster: &str, everywhere: &GtidSet) {
        if let Some(s) = self.departed.get_mut(cluster) {
            s.subtract(everywhere);
            if s.is_empty() {
                self.departed.remove(cluster);
            }
        }
    }

    /// Routers with published sets.
    pub fn live(&self) -> impl Iterator<Item = &str> {
        self.live.keys().map(String::as_str)
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
    fn a_departed_router_s_gtids_stay_needed_until_every_server_has_them() {
        let mut p = Peers::default();
        p.set("r1", sets("1-10"));
        p.set("r2", sets("20-30"));
        let mut u = GtidSet::default();
        p.union_into("primary", &mut u);
        assert_eq!(u, GtidSet::parse(&format!("{A}:1-10:20-30")).unwrap());
        p.depart("r1");
        assert_eq!(p.live().collect::<Vec<_>>(), ["r2"]);
        let mut u = GtidSet::default();
        p.union_into("primary", &mut u);
        assert_eq!(u, GtidSet::parse(&format!("{A}:1-10:20-30")).unwrap());
        // Every server has 1-8: 9-10 is still needed.
        p.prune("primary", &set("1-8"));
        let mut u = GtidSet::default();
        p.union_into("primary", &mut u);
        assert_eq!(u, GtidSet::parse(&format!("{A}:9-10:20-30")).unwrap());
        p.prune("primary", &set("1-10"));
        let mut u = GtidSet::default();
        p.union_into("primary", &mut u);
        assert_eq!(u, set("20-30"), "a live router's set is never pruned");
        let mut u = GtidSet::default();
        p.union_into("other", &mut u);
        assert!(u.is_empty());
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
