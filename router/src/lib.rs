//! Causeway's router: speaks MySQL to applications and spreads each
//! session's statements over hostgroups of MySQL servers: writes and
//! transactions to the writer, plain reads to replicas, session state kept
//! where it lives, query rules and hints on top, servers watched by a health
//! monitor, the configuration reloadable without dropping a connection.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the TOML configuration, secrets |
//! | [`runtime`] | the configuration in force: resolved, compiled, swappable; hostgroup membership |
//! | [`frontend`] | listener, client handshake (TLS, authentication) |
//! | [`backend`] | backend connections: connect and login, pools, simple queries |
//! | [`session`] | the command loop: routing, streaming responses, prepared statements, KILL, COM_CHANGE_USER |
//! | [`ids`] | typed server and hostgroup ids |
//! | [`sqlscan`] | user variables, named locks, text PREPARE and global locks in a statement's text (pure) |
//! | [`route`] | where a statement goes (pure) |
//! | [`classify`] | what a statement is (pure) |
//! | [`rules`] | query rules, statement digests and `/* causeway: */` hints (pure) |
//! | [`health`] | what the monitor knows about each server, and the fold of one check into it (pure) |
//! | [`monitor`] | backend health checks: read_only, replication lag, shunning |
//! | [`causal`] | where a causal read goes (pure) |
//! | [`views`] | what each server has applied: reader streams and GTIDs servers returned |
//! | [`global`] | the primary's executed set for `global` reads, one fetch per batch |
//! | [`io`] | one framed leg (TCP or TLS) |
//! | [`tls`] | rustls set-up for both legs |
//! | [`error`] | the error type (side, retry, ERR packet) |
//! | [`metrics`] | Prometheus metrics |
//!
//! ```text
//! accept --> greeting (learned from a backend) --> client handshake [TLS] --> auth (router users)
//!        --> a connection in the user's default hostgroup (pool or login) --> OK to client
//!        --> per statement: classify, rules, hints --> route --> connection (lazily opened,
//!            session state replayed) --> response streamed back
//! ```

pub mod backend;
pub mod causal;
pub mod classify;
pub mod config;
pub mod error;
pub mod frontend;
pub mod global;
pub mod health;
pub mod ids;
pub mod io;
pub mod metrics;
pub mod monitor;
pub mod route;
pub mod rules;
pub mod runtime;
pub mod session;
pub mod sqlscan;
pub mod tls;
pub mod views;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use causeway_common::secret::resolve_secret;
use causeway_wire::auth::RsaKeyPair;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::backend::connect::Endpoint;
use crate::backend::pool::Pools;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::monitor::{Monitor, MonitorTarget};
use crate::runtime::Runtime;

/// What KILL needs to know about a live session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The user the session is logged in as.
    pub user: String,
    /// Its backend connections: server name and the server's thread id.
    pub threads: Vec<(String, u32)>,
    /// The server of its current (or last) statement.
    pub active: Option<String>,
    /// Wakes the session to close it (KILL CONNECTION).
    pub kill: Arc<tokio::sync::Notify>,
}

/// What the router greets clients with: learned from the first backend
/// greeting, so every client sees the version and capabilities of the
/// servers behind it.
#[derive(Debug, Clone)]
pub struct Greeting {
    /// The backend's version string.
    pub server_version: Bytes,
    /// The backend's capabilities.
    pub capabilities: causeway_wire::CapabilityFlags,
    /// Its default collation.
    pub charset: u8,
}

/// State shared by every session of one router.
pub struct Shared {
    /// The configuration the router started with: its `frontend` and
    /// `metrics` parts stay in force until restart.
    pub config: Config,
    runtime: RwLock<Arc<Runtime>>,
    /// Where the configuration was read from (for reloads).
    pub config_path: Option<PathBuf>,
    /// TLS towards clients.
    pub tls_acceptor: Option<TlsAcceptor>,
    /// The RSA key pair of the caching_sha2 exchange, loaded or generated once.
    pub rsa: tokio::sync::OnceCell<Arc<RsaKeyPair>>,
    /// Users whose caching_sha2 full authentication succeeded since start.
    pub full_auth_done: Mutex<HashSet<String>>,
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
    /// The primary's executed set for `global` reads.
    pub global: global::GlobalSets,
    next_id: AtomicU32,
    reload_lock: tokio::sync::Mutex<()>,
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
        Ok(Shared {
            config,
            runtime: RwLock::new(Arc::new(runtime)),
            config_path: None,
            tls_acceptor,
            rsa,
            full_auth_done: Mutex::new(HashSet::new()),
            metrics: Arc::new(Metrics::new()),
            sessions: Mutex::new(HashMap::new()),
            pools: Pools::new(),
            monitor,
            greeting: Mutex::new(None),
            views,
            global: global::GlobalSets::default(),
            next_id: AtomicU32::new(1),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The running configuration (sessions take it between statements).
    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the configuration file again and, when it is valid as a
    /// whole, puts it in force: sessions pick it up before their next
    /// statement, no connection is dropped. When it is not, the running
    /// configuration stays and the error (with its line) is returned.
    /// `frontend` and `metrics` changes need a restart (a warning says so).
    pub async fn reload(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let path = self
            .config_path
            .as_ref()
            .context("the router was not started from a configuration file")?;
        let res = async {
            let config = Config::from_file(path)?;
            let runtime = Runtime::build(config)?;
            Ok::<_, anyhow::Error>(runtime)
        }
        .await;
        let runtime = match res {
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
        self.monitor.retarget(monitor_targets(&runtime));
        retarget_views(&self.views, &runtime);
        if let Ok(mut r) = self.runtime.write() {
            *r = Arc::new(runtime);
        }
        self.metrics.reloads.inc();
        tracing::info!("configuration reloaded");
        Ok(())
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

    /// Closes idle pooled connections past `backend.pool_idle_timeout`
    /// and those of servers no longer configured, every few seconds.
    async fn reap_pools(&self) {
        loop {
            let rt = self.runtime();
            let every = (rt.config.backend.pool_idle_timeout / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(5));
            tokio::time::sleep(every).await;
            let rt = self.runtime();
            let keep: Vec<&str> = rt.servers.iter().map(|s| s.name.as_str()).collect();
            for c in self.pools.reap(rt.config.backend.pool_idle_timeout, &keep) {
                c.quit().await;
            }
        }
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

/// A bound router, ready to serve.
#[derive(Debug)]
pub struct Router {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Router {
    /// Builds the shared state and binds `frontend.listen`. With `path`,
    /// [`Shared::reload`] reads that file again.
    pub async fn bind(config: Config, path: Option<PathBuf>) -> anyhow::Result<Router> {
        let addr = config.frontend.listen;
        let mut shared = Shared::new(config)?;
        shared.config_path = path;
        let shared = Arc::new(shared);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        Ok(Router { listener, shared })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (metrics, sessions).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts clients until the task is dropped.
    pub async fn run(self) {
        let shared = self.shared.clone();
        tokio::select! {
            _ = frontend::listener::serve(self.listener, self.shared) => {}
            _ = shared.reap_pools() => {}
        }
    }
}
