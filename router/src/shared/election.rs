//! Electing writers: membership recomputed from the monitor's view, the
//! views, the writers in force and the acknowledged GTIDs (this router's
//! and, in a fleet, the other routers'), whenever one of them changes.
//! Part of [`Shared`]'s `impl`, in a file of its own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::backend::connect::Endpoint;
use crate::failover::MissingAcknowledged;
use crate::health::{HealthMap, Lag};
use crate::ids::GroupId;
use crate::route::Membership;
use crate::runtime::{Facts, Runtime};

use super::{Current, Shared};

impl Shared {
    /// Recomputes which servers serve which group whenever the monitor's
    /// view changes (never per statement), and, while a cluster waits for
    /// a writable server to catch up, whenever a view changes. Runs until
    /// the router stops.
    pub async fn follow_monitor(&self) {
        let mut changes = self.monitor.subscribe();
        let mut views = self.views.subscribe();
        let mut peers = self.fleet.peers_changes();
        let mut no_writer_since: HashMap<String, Instant> = HashMap::new();
        loop {
            let catching_up = !self.current().members.catching_up.is_empty();
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() {
                        // No monitor: membership never changes.
                        std::future::pending::<()>().await;
                    }
                }
                _ = views.changed(), if catching_up => {}
                _ = self.ops.changed() => {}
                _ = peers.changed(), if catching_up => {}
                _ = tokio::time::sleep(Duration::from_millis(50)), if catching_up => {}
            }
            let health = changes.borrow_and_update().clone();
            let _one_at_a_time = self.reload_lock.lock().await;
            self.elect(&health, &mut no_writer_since);
        }
    }

    /// Membership from `health` and what the router knows beyond it.
    fn elect(&self, health: &HealthMap, no_writer_since: &mut HashMap<String, Instant>) {
        let cur = self.current();
        let mut facts = self.facts(&cur, health, no_writer_since);
        let rt = &cur.rt;
        // Fenced stays fenced (through a shun, a restart, a monitor that
        // cannot tell the lag) until elected or replicating again.
        let replicating = |name: &str| {
            health
                .get(name)
                .is_some_and(|h| h.read_only == Some(true) && matches!(h.lag, Lag::Seconds(_)))
        };
        let elected: Vec<&str> = cur
            .members
            .writer
            .iter()
            .flatten()
            .map(|&s| rt.servers[s].name.as_str())
            .collect();
        facts.fenced = self.writers.fenced(
            cur.members
                .fenced
                .iter()
                .map(|&s| rt.servers[s].name.clone()),
            |name| replicating(name) || elected.contains(&name),
        );
        let members = cur.rt.members(health, &facts);
        for (g, missing) in &members.lost {
            self.writers.lose(&cur.rt.groups[*g].name, missing);
        }
        if members != cur.members {
            log_election(&cur.rt, &cur.members, &members);
            for &s in &members.fenced {
                let server = &cur.rt.servers[s];
                if !cur.members.fenced.contains(&s)
                    && cur.rt.failover(server.cluster).fence_super_read_only
                {
                    self.set_super_read_only(server.endpoint.clone());
                }
            }
            self.swap(Current {
                rt: cur.rt.clone(),
                pools: cur.pools.clone(),
                members,
                views: cur.views.clone(),
                routed: cur.routed.clone(),
            });
        }
    }

    /// Sets `super_read_only = ON` on a fenced server, in the background,
    /// as the monitor's user; failures are logged.
    fn set_super_read_only(&self, mut endpoint: Endpoint) {
        let (user, password) = self.monitor.login();
        endpoint.connect_timeout = self.monitor.config().connect_timeout;
        tokio::spawn(async move {
            let res = async {
                crate::backend::connect::SideConn::open(&endpoint, &user, &password)
                    .await?
                    .run("SET GLOBAL super_read_only = ON")
                    .await
            }
            .await;
            match res {
                Ok(()) => {
                    tracing::warn!(server = %endpoint.name, "fenced server set super_read_only")
                }
                Err(e) => {
                    tracing::error!(server = %endpoint.name, user = %user, error = %e.report(),
                    "could not set super_read_only on a fenced server (the monitor's user needs \
                     SYSTEM_VARIABLES_ADMIN)")
                }
            }
        });
    }

    /// What the router knows beyond the monitor's view, as of `cur`: the
    /// acknowledged GTIDs, the views, the writers in force, and the
    /// clusters whose window for a lacking writer ran out.
    pub(super) fn facts(
        &self,
        cur: &Current,
        health: &HealthMap,
        no_writer_since: &mut HashMap<String, Instant>,
    ) -> Facts {
        let rt = &cur.rt;
        let now = Instant::now();
        let mut facts = Facts {
            acked: self.acknowledged_by_fleet(rt),
            fenced: self.writers.fenced([], |_| false),
            ops: self.ops.server_ops(),
            ..Facts::default()
        };
        // Per cluster: what every server with a reader has applied (when
        // two or more have one), to fill the acknowledged set's holes.
        // Per cluster: what every usable server has applied (its last
        // check's gtid_executed and its view), to fill the acknowledged
        // set's holes; with one server (none to fail over to), its own.
        let mut common: HashMap<GroupId, (usize, causeway_gtid::GtidSet)> = HashMap::new();
        let mut servers: HashMap<GroupId, usize> = HashMap::new();
        // Per cluster, what every configured server has, down or not (one
        // not heard from has nothing): what the fleet's acknowledged sets
        // may forget, whichever server is promoted next.
        let mut all_have: HashMap<GroupId, causeway_gtid::GtidSet> = HashMap::new();
        {
            let views = self.views.read();
            for (i, s) in rt.servers.with_ids() {
                *servers.entry(s.cluster).or_default() += 1;
                let mut known = health
                    .get(&s.name)
                    .map(|h| h.executed.clone())
                    .unwrap_or_default();
                if let Some(v) = views.at(cur.views[i]) {
                    facts.seen.insert(s.name.clone(), v.set.clone());
                    known.union_with(&v.set);
                }
                all_have
                    .entry(s.cluster)
                    .and_modify(|c| *c = c.intersection(&known))
                    .or_insert_with(|| known.clone());
                if !health.get(&s.name).is_some_and(|h| h.is_usable()) {
                    continue;
                }
                common
                    .entry(s.cluster)
                    .and_modify(|(n, c)| {
                        *n += 1;
                        *c = c.intersection(&known);
                    })
                    .or_insert((1, known));
            }
        }
        let knows_fleet = self.fleet.knows_fleet();
        let mut everywhere = HashMap::new();
        for (g, group) in rt.groups.with_ids() {
            if group.role != crate::config::Role::Writer {
                continue;
            }
            if let Some(all) = all_have.remove(&g) {
                everywhere.insert(group.name.clone(), all);
            }
            if !knows_fleet {
                facts.blind.insert(group.name.clone());
            }
            match cur.members.writer[g] {
                Some(w) => {
                    no_writer_since.remove(&group.name);
                    match (common.get(&g), servers.get(&g)) {
                        (Some((2.., everywhere)), _) | (Some((1, everywhere)), Some(1)) => {
                            self.writers.compact(
                                &group.name,
                                everywhere,
                                crate::acked::ALL_INTERVALS,
                            );
                        }
                        _ => {}
                    }
                    facts
                        .writers
                        .insert(group.name.clone(), rt.servers[w].name.clone());
                }
                None => {
                    let since = *no_writer_since.entry(group.name.clone()).or_insert(now);
                    let f = rt.failover(g);
                    if f.missing_acknowledged == MissingAcknowledged::Accept
                        && now.duration_since(since) >= f.window
                    {
                        facts.accept_missing.insert(group.name.clone());
                    }
                }
            }
        }
        self.fleet.set_everywhere(everywhere);
        facts
    }

    /// Per cluster, what this router and the other routers of its fleet
    /// acknowledged: what a new writer must hold.
    pub fn acknowledged_by_fleet(&self, rt: &Runtime) -> HashMap<String, causeway_gtid::GtidSet> {
        let mut acked = self.writers.acknowledged();
        for (_, group) in rt.groups.with_ids() {
            if group.role == crate::config::Role::Writer {
                let mut theirs = causeway_gtid::GtidSet::default();
                self.fleet.peers_union(&group.name, &mut theirs);
                if !theirs.is_empty() {
                    acked
                        .entry(group.name.clone())
                        .or_default()
                        .union_with(&theirs);
                }
            }
        }
        acked
    }
}

/// Logs what an election changed: a new writer, fenced servers, a cluster
/// waiting for a server to catch up, acknowledged GTIDs lost.
fn log_election(rt: &Runtime, before: &Membership, after: &Membership) {
    for (g, w) in after.writer.with_ids() {
        let group = &rt.groups[g].name;
        let was = before.writer.get(g.index()).copied().flatten();
        if *w != was {
            match w {
                Some(s) => {
                    tracing::info!(hostgroup = %group, writer = %rt.servers[*s].name, "writer elected")
                }
                None => {
                    tracing::warn!(hostgroup = %group, "no writer: statements that need one wait")
                }
            }
        }
    }
    for s in &after.fenced {
        if !before.fenced.contains(s) {
            tracing::warn!(server = %rt.servers[*s].name, "fenced: writable but not the writer; it gets no statement");
        }
    }
    for (g, s, gap) in &after.catching_up {
        if !before
            .catching_up
            .iter()
            .any(|(bg, bs, _)| bg == g && bs == s)
        {
            if gap.is_empty() {
                tracing::warn!(hostgroup = %rt.groups[*g].name, server = %rt.servers[*s].name,
                    "writable, but what the fleet's routers acknowledged is not known yet (etcd unreachable, or not read yet): writes wait");
            } else {
                tracing::warn!(hostgroup = %rt.groups[*g].name, server = %rt.servers[*s].name, missing = %gap,
                    "writable, but lacks GTIDs the router acknowledged: writes wait for it");
            }
        }
    }
    for (g, gap) in &after.lost {
        if !before.lost.iter().any(|(bg, _)| bg == g) {
            tracing::error!(hostgroup = %rt.groups[*g].name, missing = %gap,
                "the new writer lacks GTIDs the router acknowledged to clients: taken by policy \
                 (missing_acknowledged = accept); these writes are lost");
        }
    }
}
