//! What every session of one router shares: the configuration in force with
//! the servers' pools and group membership ([`Current`]), the monitor, the
//! views, metrics, the live sessions (for KILL), and the reload that swaps
//! the configuration.
//!
//! ```text
//! reload (SIGHUP) ──> Runtime::build ──> Current { runtime, pools (kept by name), membership }
//! monitor change  ──> membership recomputed ──> Current (same runtime and pools)
//!   (and, while a cluster waits for a writer to catch up, on every view change and every 50 ms;
//!    writers are elected from the monitor's view, the views and the acknowledged GTIDs)
//! session, between statements ──> shared.current(): one Arc, ids valid within it
//! ```

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use causeway_common::secret::resolve_secret;
use causeway_wire::auth::RsaKeyPair;
use tokio_rustls::TlsAcceptor;

use crate::backend::connect::Endpoint;
use crate::backend::pool::{Pools, ServerPool};
use crate::config::Config;
use crate::error;
use crate::global;
use crate::ids::{GroupId, IdVec, ServerId};
use crate::metrics::Metrics;
use crate::monitor::{Monitor, MonitorTarget};
use crate::route::Membership;
use crate::runtime::{Facts, Runtime};
use crate::tls;
use crate::views;
use crate::writers;

mod election;

/// The backend threads a session holds: server name and thread id, kept
/// current by the session.
pub type Threads = Arc<Mutex<Vec<(Arc<str>, u32)>>>;

/// What KILL needs to know about a live session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The user the session is logged in as.
    pub user: String,
    /// The backend connections it holds now: server name and the server's
    /// thread id (the session keeps it current).
    pub threads: Threads,
    /// The backend thread running its statement now (0: none).
    pub active: Arc<std::sync::atomic::AtomicU32>,
    /// Wakes the session to close it (KILL CONNECTION).
    pub kill: Arc<tokio::sync::Notify>,
    /// Interrupts its statement while no backend runs it (KILL QUERY).
    pub interrupt: Arc<Interrupt>,
    /// What it is doing (the admin interface's processlist).
    pub activity: Arc<crate::stats::Activity>,
}

/// KILL QUERY for a statement no backend runs yet (it waits for a pooled
/// connection, a replica that has its GTIDs, or a writer): counted, so a
/// wait that starts after the KILL still sees it, and woken.
#[derive(Debug, Default)]
pub struct Interrupt {
    fired: std::sync::atomic::AtomicU64,
    wake: tokio::sync::Notify,
}

impl Interrupt {
    /// Interrupts what waits now or will wait before the command ends.
    pub fn fire(&self) {
        self.fired.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Interrupts so far; a command remembers it when it begins.
    pub fn count(&self) -> u64 {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns once an interrupt comes after `seen` (at once if one did).
    pub async fn after(&self, seen: u64) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.count() != seen {
                return;
            }
            woken.await;
        }
    }
}

/// What the router greets clients with: learned from a backend greeting, so
/// every client sees the version and capabilities of the servers behind it.
#[derive(Debug, Clone)]
pub struct Greeting {
    /// The backend's version string.
    pub server_version: Bytes,
    /// The backend's capabilities.
    pub capabilities: causeway_wire::CapabilityFlags,
    /// Its default collation.
    pub charset: u8,
}

/// The configuration in force with what goes with it, swapped whole: a
/// session takes one between statements, and the ids in it stay valid for
/// as long as it holds it.
#[derive(Debug)]
pub struct Current {
    /// The running configuration.
    pub rt: Arc<Runtime>,
    /// Each server's pool.
    pub pools: IdVec<ServerId, Arc<ServerPool>>,
    /// Which servers serve each group, as of the monitor's last change.
    pub members: Membership,
    /// Each server's view (resolved once per configuration).
    pub views: IdVec<ServerId, views::ViewId>,
    /// Per group, the statement counter of each route (see
    /// [`crate::route::Why::index`]).
    pub routed: IdVec<GroupId, Vec<prometheus_client::metrics::counter::Counter>>,
}

impl Current {
    /// The pool of `server`.
    pub fn pool(&self, server: ServerId) -> &Arc<ServerPool> {
        &self.pools[server]
    }
}

/// State shared by every session of one router.
pub struct Shared {
    /// The configuration the router started with: its `frontend` and
    /// `metrics` parts stay in force until restart.
    pub config: Config,
    current: RwLock<Arc<Current>>,
    /// Where the configuration was read from (for reloads).
    pub config_path: Option<PathBuf>,
    /// What the command line set over the configuration: applied again to
    /// every configuration reloaded (an etcd document is shared by the
    /// routers of a fleet; their listen addresses differ).
    pub overrides: crate::config::Overrides,
    /// The fleet: where the configuration comes from, the other routers,
    /// what they acknowledged.
    pub fleet: crate::fleet::state::FleetState,
    /// TLS towards clients.
    pub tls_acceptor: Option<TlsAcceptor>,
    /// The RSA key pair of the caching_sha2 exchange, loaded or generated once.
    pub rsa: tokio::sync::OnceCell<Arc<RsaKeyPair>>,
    /// Users whose caching_sha2 full authentication succeeded since start.
    pub full_auth_done: Mutex<HashSet<(crate::config::Door, String)>>,
    /// Logins in progress and failed logins.
    pub gate: crate::frontend::gate::Gate,
    /// Partly received client packets, counted across sessions.
    pub client_buffers: Arc<crate::io::Budget>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Live sessions by router connection id.
    pub sessions: Mutex<HashMap<u32, SessionInfo>>,
    /// Backend connections per server.
    pub pools: Pools,
    /// Server health.
    pub monitor: Monitor,
    /// What clients are greeted with, once a backend was seen.
    pub greeting: Mutex<Option<Greeting>>,
    /// What each server has applied (reader streams, returned GTIDs).
    pub views: views::Views,
    /// Schemas a backend user's connection recently had (a login naming
    /// one needs no backend to check it), with when.
    pub schemas_seen: Mutex<HashMap<(Arc<str>, Bytes), std::time::Instant>>,
    /// The primary's executed set for `global` reads.
    pub global: global::GlobalSets,
    /// Acknowledged GTIDs and statements waiting for a writer.
    pub writers: writers::Writers,
    /// What an operator set through the admin interface.
    pub ops: crate::ops::Ops,
    /// The configuration's revision (1 at start, one more per reload put in
    /// force) and when it was put in force.
    revision: Mutex<(u64, std::time::SystemTime)>,
    /// The last minutes, one sample a second ([`crate::status::sample`]
    /// fills it): the dashboard's sparklines, the apply rates.
    pub history: Mutex<crate::history::History>,
    /// Query digests, errors sent to clients, the query log.
    pub stats: crate::stats::Stats,
    next_id: AtomicU32,
    reload_lock: tokio::sync::Mutex<()>,
    /// Tests switch the replay of session settings off to prove that the
    /// tests which rely on it fail without it. Never set otherwise.
    #[doc(hidden)]
    pub skip_replay_for_tests: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("runtime", &self.runtime())
            .field("frontend_tls", &self.tls_acceptor.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Builds the shared state: resolves passwords, loads TLS material,
    /// starts the health monitor (so it needs a tokio runtime unless the
    /// monitor is disabled).
    pub fn new(config: Config) -> anyhow::Result<Shared> {
        let runtime = Runtime::build(config.clone())?;
        let tls_acceptor = tls::frontend_acceptor(&config.frontend.tls)?;
        let rsa = tokio::sync::OnceCell::new();
        if let Some(path) = &config.frontend.rsa_private_key_file {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let key = RsaKeyPair::from_pem(&pem).with_context(|| {
                format!("{}: not a PKCS#8 or PKCS#1 RSA private key", path.display())
            })?;
            let _ = rsa.set(Arc::new(key));
        }
        let monitor = start_monitor(&runtime)?;
        let views = views::Views::new();
        retarget_views(&views, &runtime);
        let pools = Pools::new();
        let metrics = Arc::new(Metrics::new());
        let stats = crate::stats::Stats::new(&config, &metrics)?;
        let current = current(
            Arc::new(runtime),
            &pools,
            &monitor,
            &metrics,
            &views,
            &Facts::default(),
        );
        let client_buffers = Arc::new(crate::io::Budget::new(config.frontend.max_buffered));
        Ok(Shared {
            config,
            current: RwLock::new(Arc::new(current)),
            config_path: None,
            overrides: Default::default(),
            fleet: Default::default(),
            tls_acceptor,
            rsa,
            full_auth_done: Mutex::new(HashSet::new()),
            gate: Default::default(),
            client_buffers,
            metrics,
            sessions: Mutex::new(HashMap::new()),
            pools,
            monitor,
            greeting: Mutex::new(None),
            views,
            schemas_seen: Mutex::new(HashMap::new()),
            global: global::GlobalSets::default(),
            writers: writers::Writers::default(),
            ops: crate::ops::Ops::default(),
            revision: Mutex::new((1, std::time::SystemTime::now())),
            history: Mutex::new(crate::history::History::default()),
            stats,
            next_id: AtomicU32::new(1),
            reload_lock: tokio::sync::Mutex::new(()),
            skip_replay_for_tests: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The configuration in force, with pools and membership (sessions take
    /// it between statements).
    pub fn current(&self) -> Arc<Current> {
        match self.current.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The running configuration.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.current().rt.clone()
    }

    fn swap(&self, next: Current) {
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        self.writers.bump();
    }

    /// Reads the configuration file again and, when it is valid as a
    /// whole, puts it in force: sessions pick it up before their next
    /// statement, no connection is dropped. When it is not, the running
    /// configuration stays and the error (with its line) is returned.
    /// `frontend` and `metrics` changes need a restart (a warning says so).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let path = self
            .config_path
            .clone()
            .context("the router was not started from a configuration file")?;
        self.put_in_force(|| Ok(Config::from_file(&path)?)).await
    }

    /// Puts a configuration document (TOML text; `origin` names it in
    /// errors, e.g. the etcd key and revision) in force as [`Self::reload`]
    /// does a file.
    pub async fn reload_document(
        &self,
        text: &str,
        origin: &std::path::Path,
    ) -> anyhow::Result<()> {
        self.put_in_force(|| Ok(Config::from_toml(text, origin)?))
            .await
    }

    async fn put_in_force(
        &self,
        read: impl FnOnce() -> anyhow::Result<Config>,
    ) -> anyhow::Result<()> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let res = async {
            let mut config = read()?;
            self.overrides.apply(&mut config);
            let runtime = Runtime::build(config)?;
            let password = runtime.config.monitor.resolve_password()?;
            self.stats.configure(&runtime.config)?;
            Ok::<_, anyhow::Error>((runtime, password))
        }
        .await;
        let (runtime, monitor_password) = match res {
            Ok(r) => r,
            Err(e) => {
                self.metrics.reload_failures.inc();
                tracing::error!(error = %format!("{e:#}"), "reload refused; the running configuration stays");
                return Err(e);
            }
        };
        if runtime.config.frontend != self.config.frontend
            || runtime.config.metrics != self.config.metrics
        {
            tracing::warn!("frontend and metrics settings change only at restart");
        }
        let (a, b) = (&runtime.config.admin, &self.config.admin);
        if (a.enabled, a.listen, a.max_connections, a.query_timeout)
            != (b.enabled, b.listen, b.max_connections, b.query_timeout)
        {
            tracing::warn!(
                "admin settings other than its users (listen, max_connections, query_timeout) \
                 change only at restart"
            );
        }
        // What an operator set stays for the servers and hostgroups still
        // named, and is forgotten for the others.
        self.ops.retain(
            |s| runtime.server_named(s).is_some(),
            |g| runtime.group_named(g).is_some(),
        );
        self.monitor
            .reconfigure(runtime.config.monitor.clone(), monitor_password);
        self.monitor.retarget(monitor_targets(&runtime));
        retarget_views(&self.views, &runtime);
        // Writers in force stay so across the reload.
        let facts = self.facts(
            &self.current(),
            &self.monitor.snapshot(),
            &mut HashMap::new(),
        );
        let next = current(
            Arc::new(runtime),
            &self.pools,
            &self.monitor,
            &self.metrics,
            &self.views,
            &facts,
        );
        self.swap(next);
        if let Ok(mut r) = self.revision.lock() {
            *r = (r.0 + 1, std::time::SystemTime::now());
        }
        self.metrics.reloads.inc();
        tracing::info!("configuration reloaded");
        Ok(())
    }

    /// The configuration's revision and since when it is in force.
    pub fn revision(&self) -> (u64, std::time::SystemTime) {
        self.revision
            .lock()
            .map(|r| *r)
            .unwrap_or((0, std::time::UNIX_EPOCH))
    }

    /// A fresh connection id (never 0).
    pub fn next_connection_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// How long a schema seen on a connection spares a login's check.
    pub const SCHEMA_SEEN_FOR: Duration = Duration::from_secs(10);

    /// `user`'s connection had `schema` just now.
    pub fn schema_seen(&self, user: &Arc<str>, schema: &Bytes) {
        if let Ok(mut seen) = self.schemas_seen.lock() {
            let now = std::time::Instant::now();
            if seen.len() > 10_000 {
                seen.retain(|_, at| now.duration_since(*at) < Self::SCHEMA_SEEN_FOR);
            }
            seen.insert((user.clone(), schema.clone()), now);
        }
    }

    /// Whether `user`'s connections had `schema` recently.
    pub fn schema_known(&self, user: &Arc<str>, schema: &Bytes) -> bool {
        self.schemas_seen.lock().is_ok_and(|seen| {
            seen.get(&(user.clone(), schema.clone()))
                .is_some_and(|at| at.elapsed() < Self::SCHEMA_SEEN_FOR)
        })
    }

    /// What every live session is doing (the processlist), by id.
    pub fn sessions_snapshot(&self) -> Vec<crate::stats::SessionRow> {
        let live: Vec<(u32, String, Arc<crate::stats::Activity>)> = match self.sessions.lock() {
            Ok(s) => s
                .iter()
                .map(|(id, i)| (*id, i.user.clone(), i.activity.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut rows: Vec<_> = live.iter().map(|(id, user, a)| a.row(*id, user)).collect();
        rows.sort_by_key(|r| r.id);
        rows
    }

    /// Whether session `id` is alive.
    pub fn session_alive(&self, id: u32) -> bool {
        self.sessions.lock().is_ok_and(|s| s.contains_key(&id))
    }

    /// The RSA key pair, generated on first use when none was configured.
    pub async fn rsa_key(&self) -> error::Result<Arc<RsaKeyPair>> {
        self.rsa
            .get_or_try_init(|| async {
                tracing::warn!("no frontend.rsa_private_key_file: generating a 2048-bit RSA key");
                tokio::task::spawn_blocking(|| RsaKeyPair::generate(2048))
                    .await
                    .map_err(|e| error::Error::Internal(format!("rsa key task: {e}")))?
                    .map(Arc::new)
                    .map_err(|e| error::Error::Internal(format!("rsa key generation: {e}")))
            })
            .await
            .cloned()
    }

    /// Closes idle pooled connections past `backend.pool_idle_timeout`,
    /// every few seconds.
    pub async fn reap_pools(&self) {
        loop {
            let rt = self.runtime();
            let every = (rt.config.backend.pool_idle_timeout / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(5));
            tokio::time::sleep(every).await;
            let age = self.runtime().config.backend.pool_idle_timeout;
            for pool in self.pools.all() {
                for c in pool.reap(age) {
                    c.quit().await;
                }
            }
        }
    }
}

/// The configuration `rt` with its pools (the registry keeps those of
/// servers that stay) and the membership the monitor's view gives it.
fn current(
    rt: Arc<Runtime>,
    pools: &Pools,
    monitor: &Monitor,
    metrics: &Metrics,
    views: &views::Views,
    facts: &Facts,
) -> Current {
    let (by_server, gone) = pools.for_servers(rt.servers.iter().map(|s| s.name.as_str()));
    if !gone.is_empty() {
        tokio::spawn(async move {
            for c in gone {
                c.quit().await;
            }
        });
    }
    let members = rt.members(&monitor.snapshot(), facts);
    let routed = rt
        .groups
        .iter()
        .map(|g| {
            crate::route::Why::ALL
                .iter()
                .map(|w| metrics.route_counter(w.label(), &g.name))
                .collect()
        })
        .collect::<Vec<_>>()
        .into();
    // Views were retargeted to these servers first: each has a slot.
    let view_ids = rt
        .servers
        .iter()
        .map(|s| views.id(&s.name).unwrap_or(views::ViewId(usize::MAX)))
        .collect::<Vec<_>>()
        .into();
    Current {
        rt,
        pools: by_server.into(),
        members,
        views: view_ids,
        routed,
    }
}

fn monitor_targets(rt: &Runtime) -> Vec<MonitorTarget> {
    rt.servers
        .iter()
        .zip(&rt.config.servers)
        .map(|(s, c)| MonitorTarget {
            endpoint: Endpoint {
                connect_timeout: rt.config.monitor.connect_timeout,
                ..s.endpoint.clone()
            },
            max_lag: c.max_replication_lag,
        })
        .collect()
}

fn retarget_views(views: &views::Views, rt: &Runtime) {
    let names: Vec<String> = rt.servers.iter().map(|s| s.name.clone()).collect();
    let targets = rt.servers.iter().filter_map(|s| s.reader.clone()).collect();
    views.retarget(&names, targets);
}

fn start_monitor(rt: &Runtime) -> anyhow::Result<Monitor> {
    let m = &rt.config.monitor;
    let password = resolve_secret(
        "monitor password",
        &m.password,
        &m.password_env,
        &m.password_file,
    )?
    .unwrap_or_default();
    Ok(Monitor::spawn(
        monitor_targets(rt),
        m.clone(),
        password.into_bytes(),
    ))
}
