//! The running configuration: a validated [`Config`] with passwords
//! resolved, TLS connectors built, rules compiled and names turned into
//! indexes. One `Runtime` is immutable; a reload builds a new one whole and
//! swaps it in ([`crate::Shared::reload`]), so a broken file never replaces
//! a working one and sessions see either the old or the new one, never a
//! mix: a session takes the current runtime between statements.
//!
//! Hostgroup membership is not fixed by the file: [`Runtime::members`]
//! combines it with the monitor's view of each server (`read_only`,
//! shunning), so a promoted replica serves its writer group without a
//! config change.
//!
//! ```text
//! server configured in W or in R (R.writer = W):
//!   read_only unknown -> its configured group
//!   read_only = false -> W   (and R too with routing.writer_is_also_reader)
//!   read_only = true  -> R
//! shunned or weight 0 -> in no group
//! read_only = false -> W only when elected (crate::failover): one writer, other writable
//!                     servers fenced (in no group); two found writable with none in force:
//!                     W is split (see routing.split_brain)
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use causeway_common::secret::resolve_secret;

use crate::backend::connect::Endpoint;
use crate::causal::Scope;
use causeway_gtid::GtidSet;

use crate::config::{AuthPlugin, Config, Role, SplitBrain};
use crate::failover::{self, Candidate, Election};
use crate::health::{HealthMap, Lag, ServerHealth, Status, Writable};
use crate::ids::{GroupId, IdVec, ServerId};
use crate::route::Membership;
use crate::rules::Rules;
use crate::tls;
use crate::views::ViewTarget;

/// A user the router authenticates, with its passwords resolved.
#[derive(Clone)]
pub struct User {
    /// The frontend password (never logged).
    pub password: Vec<u8>,
    /// The plugin clients authenticate with.
    pub plugin: AuthPlugin,
    /// The user the router logs in to the servers as.
    pub backend_user: Arc<str>,
    /// Its password.
    pub backend_password: Vec<u8>,
    /// The writer hostgroup of its sessions.
    pub writer: GroupId,
    /// Where its statements go when nothing else decides.
    pub default_group: GroupId,
    /// At most this many sessions at once (0: no limit).
    pub max_connections: usize,
    /// Its consistency in consistent pairs, when set.
    pub consistency: Option<Scope>,
    /// Its sessions give connections back between statements.
    pub multiplexing: bool,
    /// At most this many backend connections of its backend user per
    /// server (0: only the server's limit).
    pub backend_max_connections: usize,
    /// Its statements' backend timeout (none: zero or unset).
    pub backend_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("plugin", &self.plugin)
            .field("backend_user", &self.backend_user)
            .field("default_group", &self.default_group)
            .finish_non_exhaustive()
    }
}

/// One server.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its name.
    pub name: String,
    /// How to reach it.
    pub endpoint: Endpoint,
    /// The hostgroup it is configured in.
    pub group: GroupId,
    /// Its weight in its group.
    pub weight: u32,
    /// Connection limit.
    pub max_connections: usize,
    /// The writer hostgroup of its replication cluster: its own group when
    /// that is a writer group, else that reader group's writer. GTIDs it
    /// returns count as writes of this group, wherever the server serves
    /// now (a promotion does not change it).
    pub cluster: GroupId,
    /// Its cluster's writer group is the writer of a consistent pair, or
    /// has a failover window: its backend connections track GTIDs
    /// (`session_track_gtids=OWN_GTID`).
    pub track_gtids: bool,
    /// The `causeway-reader` beside it, with its token.
    pub reader: Option<ViewTarget>,
}

/// One hostgroup.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Writer or reader.
    pub role: Role,
    /// For a writer group: the reader group its plain reads go to (the
    /// first reader group naming it as `writer`).
    pub reads_to: Option<GroupId>,
    /// For a reader group: its writer group.
    pub writer: Option<GroupId>,
    /// For a reader group: the consistent pair it belongs to, as (writer
    /// group, default scope, max wait).
    pub pair: Option<(GroupId, Scope, std::time::Duration)>,
}

/// The running configuration.
pub struct Runtime {
    /// The configuration it was built from.
    pub config: Config,
    /// Users by name.
    pub users: crate::ids::FastMap<String, User>,
    /// Servers in config order.
    pub servers: IdVec<ServerId, Server>,
    /// Hostgroups in config order.
    pub groups: IdVec<GroupId, Group>,
    /// Compiled query rules.
    pub rules: Rules,
    /// Admin users by name: their plugin and password.
    pub admin_users: HashMap<String, (AuthPlugin, Vec<u8>)>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("users", &self.users.len())
            .field("servers", &self.servers)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Validates `config` and builds everything it names: passwords,
    /// certificates, rules. Fails without side effects.
    pub fn build(config: Config) -> anyhow::Result<Runtime> {
        config.validate()?;
        anyhow::ensure!(
            config.servers.len() <= usize::from(u16::MAX)
                && config.hostgroups.len() <= usize::from(u16::MAX),
            "more than {} servers or hostgroups",
            u16::MAX
        );
        let group_idx = |name: &str| {
            config
                .hostgroups
                .iter()
                .position(|h| h.name == name)
                .map(GroupId::new)
        };
        let mut groups: IdVec<GroupId, Group> = config
            .hostgroups
            .iter()
            .map(|h| Group {
                name: h.name.clone(),
                role: h.role,
                reads_to: None,
                writer: h.writer.as_deref().and_then(group_idx),
                pair: None,
            })
            .collect::<Vec<_>>()
            .into();
        for i in 0..groups.len() {
            let g = GroupId::new(i);
            if let Some(w) = groups[g].writer {
                if groups[w].reads_to.is_none() {
                    groups[w].reads_to = Some(g);
                }
            }
        }
        for p in &config.consistent_pairs {
            if let (Some(r), Some(w)) = (group_idx(&p.reader), group_idx(&p.writer)) {
                groups[r].pair = Some((w, p.scope, p.max_wait));
            }
        }
        let first_writer = groups
            .iter()
            .position(|g| g.role == Role::Writer)
            .map(GroupId::new)
            .context("no writer hostgroup")?;
        let mut users = crate::ids::FastMap::default();
        for u in &config.users {
            let what = format!("password of user {:?}", u.name);
            let password = resolve_secret(&what, &u.password, &u.password_env, &u.password_file)?
                .unwrap_or_default();
            let what = format!("backend password of user {:?}", u.name);
            let backend_password = resolve_secret(
                &what,
                &u.backend_password,
                &u.backend_password_env,
                &u.backend_password_file,
            )?
            .unwrap_or_else(|| password.clone());
            let default_group = u
                .default_hostgroup
                .as_deref()
                .and_then(group_idx)
                .unwrap_or(first_writer);
            let writer = match groups[default_group].role {
                Role::Writer => default_group,
                Role::Reader => groups[default_group].writer.unwrap_or(first_writer),
            };
            users.insert(
                u.name.clone(),
                User {
                    password: password.into_bytes(),
                    plugin: u.auth_plugin,
                    backend_user: Arc::from(u.backend_user.as_deref().unwrap_or(&u.name)),
                    backend_password: backend_password.into_bytes(),
                    writer,
                    default_group,
                    max_connections: u.max_connections,
                    consistency: u.consistency,
                    multiplexing: u.multiplexing,
                    backend_timeout: u.backend_timeout.filter(|t| !t.is_zero()),
                    backend_max_connections: u.backend_max_connections,
                },
            );
        }
        let mut servers: IdVec<ServerId, Server> = IdVec::default();
        for s in &config.servers {
            let cfg = s.tls.as_ref().unwrap_or(&config.backend.tls);
            let tls = tls::backend_connector(cfg, &s.host)
                .with_context(|| format!("server {}", s.name()))?
                .map(Arc::new);
            let group = group_idx(&s.hostgroup).context("unknown hostgroup")?;
            let cluster = match groups[group].role {
                Role::Writer => group,
                Role::Reader => groups[group].writer.unwrap_or(first_writer),
            };
            let reader = match &s.reader {
                None => None,
                Some(addr) => {
                    let what = format!("reader token of server {}", s.name());
                    let token = resolve_secret(&what, &None, &None, &s.reader_token_file)?
                        .unwrap_or_default()
                        .into_bytes();
                    Some(ViewTarget::new(
                        s.name(),
                        addr.clone(),
                        token,
                        s.reader_tls.as_ref(),
                    )?)
                }
            };
            servers.push(Server {
                name: s.name(),
                endpoint: Endpoint {
                    name: s.name(),
                    host: s.host.clone(),
                    port: s.port,
                    connect_timeout: config.backend.connect_timeout,
                    tls,
                    compression: config.backend.compression_algorithm(),
                },
                group,
                weight: s.weight,
                max_connections: s.max_connections,
                cluster,
                // Causal reads need them, and so does failover: a new
                // writer must hold every GTID the router acknowledged.
                track_gtids: groups
                    .iter()
                    .any(|g| g.pair.is_some_and(|p| p.0 == cluster))
                    || !config.hostgroups[cluster.index()].failover.window.is_zero(),
                reader,
            });
        }
        let rules = Rules::compile(&config.query_rules)
            .map_err(|e| anyhow::anyhow!("query rules: {}", e.join("; ")))?;
        let mut admin_users = HashMap::new();
        for u in &config.admin.users {
            let what = format!("password of admin user {:?}", u.name);
            let password = resolve_secret(&what, &u.password, &u.password_env, &u.password_file)?
                .unwrap_or_default();
            admin_users.insert(u.name.clone(), (u.auth_plugin, password.into_bytes()));
        }
        Ok(Runtime {
            config,
            users,
            servers,
            groups,
            rules,
            admin_users,
        })
    }

    /// The server called `name` (for what arrives by name: KILL, a reload;
    /// never per statement).
    pub fn server_named(&self, name: &str) -> Option<ServerId> {
        self.servers
            .iter()
            .position(|s| s.name == name)
            .map(ServerId::new)
    }

    /// A writer group's failover settings (defaults for a reader group).
    pub fn failover(&self, g: GroupId) -> &crate::failover::FailoverConfig {
        &self.config.hostgroups[g.index()].failover
    }

    /// The hostgroup called `name` (hints and rules name them).
    pub fn group_named(&self, name: &str) -> Option<GroupId> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(GroupId::new)
    }

    /// Which servers serve each group, given the monitor's view and what
    /// the router knows beyond it (`facts`): the writer of each writer
    /// group is elected ([`failover::elect`]).
    pub fn members(&self, health: &HealthMap, facts: &Facts) -> Membership {
        let unknown = ServerHealth::default();
        let n = self.groups.len();
        let mut m = Membership {
            members: vec![Vec::new(); n].into(),
            split: vec![false; n].into(),
            writer: vec![None; n].into(),
            ..Membership::default()
        };
        let mut candidates: IdVec<GroupId, Vec<Candidate>> = vec![Vec::new(); n].into();
        for (i, s) in self.servers.with_ids() {
            let h = health.get(&s.name).unwrap_or(&unknown);
            if s.weight == 0
                || matches!(h.status, Status::Shunned { .. })
                || facts.ops.contains_key(&s.name)
            {
                continue;
            }
            let g = &self.groups[s.group];
            // The writer/reader pair this server moves between, if any.
            let (w, r) = match g.role {
                Role::Writer => (Some(s.group), g.reads_to),
                Role::Reader => (g.writer, Some(s.group)),
            };
            match (h.read_only, w, r) {
                (Some(false), Some(w), _) => {
                    let wname = &self.groups[w].name;
                    let mut known = h.executed.clone();
                    if let Some(seen) = facts.seen.get(&s.name) {
                        known.union_with(seen);
                    }
                    let missing = facts
                        .acked
                        .get(wname)
                        .map(|a| a.difference(&known))
                        .unwrap_or_default();
                    // A writable server that still replicates was not
                    // promoted (a promotion stops replication): it never
                    // displaces the writer in force.
                    let writable = match (h.writable, h.lag) {
                        (Writable::Turned(_), Lag::Seconds(_)) => Writable::Found,
                        (w, _) => w,
                    };
                    candidates[w].push(Candidate {
                        server: i,
                        writable,
                        incumbent: facts.writers.get(wname) == Some(&s.name),
                        missing,
                        blind: facts.blind.contains(wname),
                    });
                }
                // A fenced server made read-only (by the router or an
                // operator) stays out until it replicates again: it missed
                // the writer's writes.
                (Some(true), _, _)
                    if facts.fenced.contains(&s.name) && !matches!(h.lag, Lag::Seconds(_)) =>
                {
                    m.fenced.push(i)
                }
                (Some(true), _, Some(r)) => m.members[r].push(i),
                _ => m.members[s.group].push(i),
            }
        }
        for (w, cands) in candidates.with_ids() {
            let accept = facts.accept_missing.contains(&self.groups[w].name);
            let mut election = failover::elect(cands, accept);
            if let Election::Ambiguous(servers) = &election {
                if self.config.routing.split_brain == SplitBrain::Allow {
                    // The first by configuration order, as before elections.
                    election = Election::Writer {
                        server: servers[0],
                        fenced: cands
                            .iter()
                            .map(|c| c.server)
                            .filter(|s| *s != servers[0])
                            .collect(),
                        missing: GtidSet::new(),
                    };
                }
            }
            match election {
                Election::NoWriter => {}
                Election::CatchingUp(lacking) => m
                    .catching_up
                    .extend(lacking.into_iter().map(|(s, gap)| (w, s, gap))),
                Election::Ambiguous(_) => m.split[w] = true,
                Election::Writer {
                    server,
                    fenced,
                    missing,
                } => {
                    m.members[w].push(server);
                    m.writer[w] = Some(server);
                    if let (Some(r), true) = (
                        self.groups[w].reads_to,
                        self.config.routing.writer_is_also_reader,
                    ) {
                        m.members[r].push(server);
                    }
                    m.fenced.extend(fenced);
                    if !missing.is_empty() {
                        m.lost.push((w, missing));
                    }
                }
            }
        }
        for members in m.members.iter_mut() {
            members.sort_unstable();
        }
        m
    }
}

/// What the router knows about its clusters beyond the monitor's view,
/// by name (names outlive a reload).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// By writer group: the GTIDs the router acknowledged to clients.
    pub acked: HashMap<String, GtidSet>,
    /// By server: what its reader's view says it applied.
    pub seen: HashMap<String, GtidSet>,
    /// By writer group: its writer in force.
    pub writers: HashMap<String, String>,
    /// Servers fenced and not back in service since.
    pub fenced: std::collections::HashSet<String>,
    /// Writer groups where a writer that lacks acknowledged GTIDs is
    /// taken (their window ran out and their policy accepts it).
    pub accept_missing: std::collections::HashSet<String>,
    /// Servers an operator drained or took offline: they serve no group.
    pub ops: HashMap<String, crate::ops::ServerOp>,
    /// Writer groups whose acknowledged GTIDs are not all known: a router
    /// of a fleet that lost etcd does not know what the others
    /// acknowledged meanwhile, so it elects no new writer.
    pub blind: std::collections::HashSet<String>,
}

impl crate::session::plan::Topology for Runtime {
    fn role(&self, g: GroupId) -> Role {
        self.groups[g].role
    }

    fn paired(&self, g: GroupId) -> bool {
        self.groups[g].pair.is_some()
    }

    fn reads_to(&self, g: GroupId) -> Option<GroupId> {
        self.groups[g].reads_to
    }

    fn group_name(&self, g: GroupId) -> &str {
        &self.groups[g].name
    }

    fn weight(&self, s: ServerId) -> u32 {
        self.servers[s].weight
    }
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
