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
//! two writable servers in W -> W is split (see routing.split_brain)
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use causeway_common::secret::resolve_secret;

use crate::backend::connect::Endpoint;
use crate::causal::Scope;
use crate::config::{AuthPlugin, Config, Role, SplitBrain};
use crate::health::{HealthMap, ServerHealth, Status};
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
    /// Its cluster's writer group is the writer of a consistent pair: its
    /// backend connections track GTIDs (`session_track_gtids=OWN_GTID`).
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
    pub users: HashMap<String, User>,
    /// Servers in config order.
    pub servers: IdVec<ServerId, Server>,
    /// Hostgroups in config order.
    pub groups: IdVec<GroupId, Group>,
    /// Compiled query rules.
    pub rules: Rules,
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
        let mut users = HashMap::new();
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
                },
                group,
                weight: s.weight,
                max_connections: s.max_connections,
                cluster,
                track_gtids: groups
                    .iter()
                    .any(|g| g.pair.is_some_and(|p| p.0 == cluster)),
                reader,
            });
        }
        let rules = Rules::compile(&config.query_rules)
            .map_err(|e| anyhow::anyhow!("query rules: {}", e.join("; ")))?;
        Ok(Runtime {
            config,
            users,
            servers,
            groups,
            rules,
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

    /// The hostgroup called `name` (hints and rules name them).
    pub fn group_named(&self, name: &str) -> Option<GroupId> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(GroupId::new)
    }

    /// Which servers serve each group, given the monitor's view.
    pub fn members(&self, health: &HealthMap) -> Membership {
        let unknown = ServerHealth::default();
        let n = self.groups.len();
        let mut m = Membership {
            members: vec![Vec::new(); n].into(),
            split: vec![false; n].into(),
        };
        let mut writable: IdVec<GroupId, usize> = vec![0usize; n].into();
        for (i, s) in self.servers.with_ids() {
            let h = health.get(&s.name).unwrap_or(&unknown);
            if s.weight == 0 || matches!(h.status, Status::Shunned { .. }) {
                continue;
            }
            let g = &self.groups[s.group];
            // The writer/reader pair this server moves between, if any.
            let (w, r) = match g.role {
                Role::Writer => (Some(s.group), g.reads_to),
                Role::Reader => (g.writer, Some(s.group)),
            };
            match (h.read_only, w, r) {
                (Some(false), Some(w), r) => {
                    m.members[w].push(i);
                    writable[w] += 1;
                    if let (Some(r), true) = (r, self.config.routing.writer_is_also_reader) {
                        m.members[r].push(i);
                    }
                }
                (Some(true), _, Some(r)) => m.members[r].push(i),
                _ => {
                    m.members[s.group].push(i);
                    if g.role == Role::Writer && h.read_only == Some(false) {
                        writable[s.group] += 1;
                    }
                }
            }
        }
        for (g, count) in writable.with_ids() {
            m.split[g] = *count > 1 && self.config.routing.split_brain == SplitBrain::RefuseWrites;
        }
        m
    }
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
