//! Causeway's router. In this first mode it is a pass-through: each client
//! session gets its own backend connection to one configured server, and
//! packets are forwarded byte for byte once both legs are authenticated.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the TOML configuration, secrets |
//! | [`frontend`] | listener, client handshake (TLS, authentication) |
//! | [`backend`] | backend connection and login |
//! | [`session`] | the command relay: streaming responses, KILL, COM_CHANGE_USER |
//! | [`io`] | one framed leg (TCP or TLS) |
//! | [`tls`] | rustls set-up for both legs |
//! | [`error`] | the error type (side, retry, ERR packet) |
//! | [`metrics`] | Prometheus metrics |
//! | [`classify`] | what a statement is, for routing (pure; used by the read/write split) |
//! | [`causal`] | where a causal read goes (pure; used by causal reads) |
//!
//! ```text
//! accept --> backend connect (greeting) --> client handshake [TLS] --> auth (router users)
//!        --> backend login (same user) --> OK to client --> relay until QUIT / EOF / idle
//! ```

pub mod backend;
pub mod causal;
pub mod classify;
pub mod config;
pub mod error;
pub mod frontend;
pub mod io;
pub mod metrics;
pub mod session;
pub mod tls;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use causeway_common::secret::resolve_secret;
use causeway_wire::auth::RsaKeyPair;
use rustls_pki_types::ServerName;
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{AuthPlugin, Config};
use crate::metrics::Metrics;

/// A user the router authenticates, with its password resolved.
#[derive(Clone)]
pub struct User {
    /// The password (never logged).
    pub password: Vec<u8>,
    /// The plugin clients authenticate with.
    pub plugin: AuthPlugin,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

/// What KILL needs to know about a live session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The backend's thread id of the session's connection.
    pub backend_thread: u32,
    /// The user the session is logged in as.
    pub user: String,
}

/// State shared by every session of one router.
pub struct Shared {
    /// The configuration the router started with.
    pub config: Config,
    /// Users by name.
    pub users: HashMap<String, User>,
    /// TLS towards clients.
    pub tls_acceptor: Option<TlsAcceptor>,
    /// TLS towards the backend.
    pub backend_tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The RSA key pair of the caching_sha2 exchange, loaded or generated once.
    pub rsa: tokio::sync::OnceCell<Arc<RsaKeyPair>>,
    /// Users whose caching_sha2 full authentication succeeded since start.
    pub full_auth_done: Mutex<HashSet<String>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Live sessions by router connection id.
    pub sessions: Mutex<HashMap<u32, SessionInfo>>,
    next_id: AtomicU32,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("users", &self.users.len())
            .field("frontend_tls", &self.tls_acceptor.is_some())
            .field("backend_tls", &self.backend_tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Builds the shared state: resolves passwords, loads TLS material.
    pub fn new(config: Config) -> anyhow::Result<Shared> {
        config.validate()?;
        let mut users = HashMap::new();
        for u in &config.users {
            let what = format!("password of user {:?}", u.name);
            let password = resolve_secret(&what, &u.password, &u.password_env, &u.password_file)?
                .unwrap_or_default();
            users.insert(
                u.name.clone(),
                User {
                    password: password.into_bytes(),
                    plugin: u.auth_plugin,
                },
            );
        }
        let tls_acceptor = tls::frontend_acceptor(&config.frontend.tls)?;
        let backend_tls = tls::backend_connector(&config.backend)?;
        let rsa = tokio::sync::OnceCell::new();
        if let Some(path) = &config.frontend.rsa_private_key_file {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let key = RsaKeyPair::from_pem(&pem).with_context(|| {
                format!("{}: not a PKCS#8 or PKCS#1 RSA private key", path.display())
            })?;
            let _ = rsa.set(Arc::new(key));
        }
        Ok(Shared {
            config,
            users,
            tls_acceptor,
            backend_tls,
            rsa,
            full_auth_done: Mutex::new(HashSet::new()),
            metrics: Arc::new(Metrics::new()),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(1),
        })
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
}

/// A bound router, ready to serve.
#[derive(Debug)]
pub struct Router {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Router {
    /// Builds the shared state and binds `frontend.listen`.
    pub async fn bind(config: Config) -> anyhow::Result<Router> {
        let addr = config.frontend.listen;
        let shared = Arc::new(Shared::new(config)?);
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
        frontend::listener::serve(self.listener, self.shared).await
    }
}
