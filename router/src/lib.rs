//! Causeway's router: speaks MySQL to applications and spreads each
//! session's statements over hostgroups of MySQL servers: writes and
//! transactions to the writer, plain reads to replicas, query rules and
//! hints on top, backend connections shared between sessions (a session
//! borrows one between statements, its settings replayed), servers watched
//! by a health monitor, the configuration reloadable without dropping a
//! connection.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the TOML configuration, secrets |
//! | [`runtime`] | the configuration in force: resolved, compiled, swappable; hostgroup membership |
//! | [`frontend`] | listener, client handshake (TLS, authentication) |
//! | [`backend`] | backend connections: connect and login, pools, simple queries |
//! | [`shared`] | what every session shares: the configuration in force with pools and membership, reload |
//! | [`session`] | a client session: its state (pure), the planner (pure), the driver that borrows connections and streams responses |
//! | [`ids`] | typed server and hostgroup ids |
//! | [`sqlscan`] | user variables, named locks, text PREPARE and global locks in a statement's text (pure) |
//! | [`route`] | where a statement goes (pure) |
//! | [`classify`] | what a statement is (pure) |
//! | [`rules`] | query rules, statement digests and `/* causeway: */` hints (pure) |
//! | [`history`] | the last minutes, one sample a second: distances, lags, apply rates (pure) |
//! | [`health`] | what the monitor knows about each server, and the fold of one check into it (pure) |
//! | [`monitor`] | backend health checks: read_only, replication lag, shunning |
//! | [`ops`] | what an operator set: servers drained or offline, hostgroups paused |
//! | [`causal`] | where a causal read goes (pure) |
//! | [`views`] | what each server has applied: reader streams and GTIDs servers returned |
//! | [`global`] | the primary's executed set for `global` reads, one fetch per batch |
//! | [`io`] | one framed leg (TCP or TLS) |
//! | [`tls`] | rustls set-up for both legs |
//! | [`error`] | the error type (side, retry, ERR packet) |
//! | [`metrics`] | Prometheus metrics: names, counters, histograms |
//! | [`status`] | the servers and pools as an operator reads them (admin tables, dashboard), and the sampler |
//! | [`stats`] | query digests, errors sent to clients, what each session does now, the query log |
//! | [`scrape`] | the metrics endpoint's text: the registry plus gauges read from the shared state |
//! | [`fleet`] | a fleet on etcd: the configuration followed, registration, the peers' acknowledged GTIDs, `fleet` commands |
//! | [`dashboard`] | the live dashboard beside `/metrics`: an HTML page and the JSON document it polls |
//!
//! ```text
//! accept --> greeting (learned from a backend at start) --> client handshake [TLS]
//!        --> auth (router users) --> [schema checked on a connection of the cluster] --> OK
//!        --> per statement: classify, rules, hints --> plan --> a connection (held, or
//!            borrowed from the server's pool), settings replayed --> response streamed back
//!        --> idle: connections holding nothing of the session go back to their pools
//! ```

causeway_common::build_info!();

pub mod acked;
pub mod admin;
pub mod backend;
pub mod causal;
pub mod classify;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod failover;
pub mod fleet;
pub mod frontend;
pub mod global;
pub mod health;
pub mod history;
pub mod ids;
pub mod import;
pub mod io;
pub mod metrics;
pub mod monitor;
pub mod ops;
pub mod route;
pub mod rules;
pub mod runtime;
pub mod scrape;
pub mod session;
pub mod shared;
pub mod sqlscan;
pub mod stats;
pub mod status;
pub mod tls;
pub mod views;
pub mod writers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
pub use crate::shared::{Current, Greeting, SessionInfo, Shared};

/// A bound router, ready to serve.
#[derive(Debug)]
pub struct Router {
    listener: TcpListener,
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl Router {
    /// Builds the shared state and binds `frontend.listen`. With `path`,
    /// [`Shared::reload`] reads that file again.
    pub async fn bind(config: Config, path: Option<PathBuf>) -> anyhow::Result<Router> {
        Router::bind_with(config, path, config::Overrides::default()).await
    }

    /// [`Router::bind`], with what the command line set over the
    /// configuration (applied again to every configuration reloaded).
    pub async fn bind_with(
        config: Config,
        path: Option<PathBuf>,
        overrides: config::Overrides,
    ) -> anyhow::Result<Router> {
        let addr = config.frontend.listen;
        let mut shared = Shared::new(config)?;
        shared.config_path = path;
        shared.overrides = overrides;
        let shared = Arc::new(shared);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let admin = if shared.config.admin.serves() {
            let addr = shared.config.admin.listen;
            Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the admin interface on {addr}"))?,
            )
        } else {
            None
        };
        Ok(Router {
            listener,
            admin,
            shared,
        })
    }

    /// The address of the admin interface, when it listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (metrics, sessions).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until the future is dropped.
    ///
    /// The listener is a task of the runtime, not polled in the caller's
    /// `block_on`: a session spawned by a worker starts on that worker's
    /// own queue, where one spawned from the main thread was handed over
    /// and a sleeping worker woken for every connection (an eventfd write and
    /// a futex wake per login; `bench/connect-rate`: 5-9 % more connections
    /// per second, 4-6 % less CPU per connection). The background loops stay
    /// with the caller: as tasks, each of their ticks made a second task
    /// runnable beside a lone busy session, which woke the idle worker, and
    /// the session then moved between the two (measured: 12 % more CPU per
    /// point select at one client).
    pub async fn run(self) {
        let shared = self.shared.clone();
        let mut listener = tokio::task::JoinSet::new();
        listener.spawn(frontend::listener::serve(self.listener, self.shared));
        let admin = async {
            match self.admin {
                Some(l) => admin::serve(l, shared.clone()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = listener.join_next() => {
                // It never ends; one that panicked takes the router down
                // as it did when it ran here.
                if let Some(Err(e)) = ended {
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
            }
            _ = admin => {}
            _ = shared.reap_pools() => {}
            _ = shared.follow_monitor() => {}
            _ = frontend::handshake::learn_greeting(&shared) => {}
            _ = status::sample(&shared) => {}
        }
    }
}
