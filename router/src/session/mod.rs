//! A client session from accept to close: connection phase, then the
//! command loop. Never panics; every failure ends this session only, with a
//! log line giving the reason.
//!
//! | part | what |
//! |---|---|
//! | [`state`] | what the session is made of, known from the server (pure) |
//! | [`track`] | the server's trackers, and what the client sees of them (pure) |
//! | [`replay`] | what brings a connection to the session's settings (pure) |
//! | [`plan`] | which connection serves a statement (pure) |
//! | [`command`] | a client command, decoded once (pure) |
//! | `connid` | `CONNECTION_ID()` answered with the session's id (pure) |
//! | [`driver`] | the command loop: decode, plan, connection, replay, forward, fold |
//! | `query` | a text statement: classified, its connection found and brought up to date, forwarded, folded |
//! | `routing` | hints, rules, the planner's answer turned into a connection |
//! | `commands` | INIT_DB, SET_OPTION, RESET_CONNECTION, CHANGE_USER, KILL, the rest |
//! | `conns` | getting a connection, bringing it to the session's settings |
//! | `effects` | what a text statement does to the session's state (pure) |
//! | `leave` | reading back what lives on a connection, giving it back |
//! | `forward` | forwarding a command, streaming its response |
//! | `causal` | causal reads: what the session needs, where its reads go |
//! | `prepared` | prepared statements across connections |
//! | `observe` | what the statistics record: each statement's digest, route, rows, ERR; what the session does now |
//! | [`kill`] | KILL addressed to the router's connection ids |

mod causal;
pub mod command;
mod commands;
mod connid;
mod conns;
pub mod driver;
mod effects;
mod forward;
pub mod kill;
mod leave;
mod observe;
pub mod plan;
mod prepared;
mod query;
pub mod replay;
mod routing;
pub mod state;
pub mod track;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::error::Error;
use crate::frontend::gate;
use crate::frontend::handshake::{self, establish};
use crate::io::PacketIo;
use crate::shared::Shared;

/// Counts the session in the gauges and the KILL registry while it lives.
struct Registered<'a> {
    shared: &'a Shared,
    id: u32,
}

impl<'a> Registered<'a> {
    fn new(shared: &'a Shared, id: u32) -> Self {
        shared.metrics.sessions.inc();
        Self { shared, id }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.metrics.sessions.dec();
        if let Ok(mut s) = self.shared.sessions.lock() {
            s.remove(&self.id);
        }
    }
}

/// Sessions of `user` alive now.
fn sessions_of(shared: &Shared, user: &str) -> usize {
    shared
        .sessions
        .lock()
        .map(|s| s.values().filter(|i| i.user == user).count())
        .unwrap_or(0)
}

/// Counts, in the error statistics, the ERR a client is sent before its
/// session begins.
fn count_err(shared: &Shared, e: &Error, peer: SocketAddr) {
    if let Some(err) = e.client_err(&peer.ip().to_string()) {
        let sent = crate::stats::Sent::of(&err, e.kind());
        shared
            .stats
            .errors
            .record(&sent, std::time::SystemTime::now());
    }
}

/// Serves one client connection to the end.
pub async fn run(tcp: TcpStream, peer: SocketAddr, id: u32, shared: Arc<Shared>) {
    let shared = &*shared;
    shared.metrics.connections.inc();
    let max = shared.config.frontend.max_connections as i64;
    // Full already: refused before any work, as MySQL does.
    // Over the login limits, a login waits for its turn (unread: the
    // client gets its greeting then), up to handshake_timeout.
    let entered = if shared.metrics.sessions.get() >= max {
        Err(Error::TooManyConnections)
    } else {
        let limits = gate::Limits::of(&shared.config.frontend);
        let until = tokio::time::Instant::now() + shared.config.frontend.handshake_timeout;
        shared
            .gate
            .enter(peer.ip(), &limits, until)
            .await
            .map_err(Error::TooManyLogins)
    };
    let handshaking = match entered {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "refused before login");
            shared.metrics.error(match e {
                Error::TooManyLogins(_) => "login_limit",
                _ => "max_connections",
            });
            let mut client = PacketIo::new(Box::new(tcp), crate::error::Side::Client, 1024);
            count_err(shared, &e, peer);
            handshake::send_err(&mut client, 0, &e, peer).await;
            return;
        }
    };
    // Boxed, like start(): the login's futures would otherwise stay in
    // every session's memory for its whole life.
    let est = Box::pin(establish(
        tcp,
        peer,
        id,
        shared,
        crate::frontend::auth::Door::App,
    ))
    .await;
    drop(handshaking);
    let mut est = match est {
        Ok(est) => est,
        Err(e) => {
            shared.metrics.handshake_failures.inc();
            count_err(shared, &e, peer);
            match &e {
                Error::AccessDenied { user, reason, .. } => {
                    shared.metrics.auth_failures.inc();
                    warn!(user = %user, reason, "access denied");
                }
                Error::BackendConnect { .. } => {
                    shared.metrics.backend_connect_errors.inc();
                    warn!(error = %e.report(), side = ?e.side(), "backend unreachable");
                }
                _ => warn!(error = %e.report(), side = ?e.side(), "handshake failed"),
            }
            return;
        }
    };
    // Logins in progress do not count; logged-in sessions do.
    let _registered = Registered::new(shared, id);
    if shared.metrics.sessions.get() > max {
        warn!("too many connections; refused");
        shared.metrics.error("max_connections");
        count_err(shared, &Error::TooManyConnections, peer);
        handshake::send_err(&mut est.client, est.seq, &Error::TooManyConnections, peer).await;
        return;
    }
    let limit = shared
        .runtime()
        .users
        .get(&est.user)
        .map_or(0, |u| u.max_connections);
    if limit > 0 && sessions_of(shared, &est.user) >= limit {
        warn!(user = %est.user, limit, "user connection limit reached; refused");
        shared.metrics.error("user_limit");
        let e = Error::UserLimit(est.user.clone());
        count_err(shared, &e, peer);
        handshake::send_err(&mut est.client, est.seq, &e, peer).await;
        return;
    }
    let kill = Arc::new(tokio::sync::Notify::new());
    let mut session = driver::Session::new(est, peer, id, shared, kill);
    let started = match Box::pin(session.start()).await {
        Ok(started) => started,
        Err(e) => {
            warn!(error = %e.report(), side = ?e.side(), "session could not start");
            session.fail(&e).await;
            return;
        }
    };
    if !started {
        return;
    }
    // Debug, like its close: at the default level a line per connection
    // cost a connect + SELECT 1 + quit 15 % more CPU (bench/connect-rate
    // with RUST_LOG=info); sessions are counted in the metrics.
    debug!("session established");
    match session.run().await {
        Ok(()) => debug!("session closed"),
        Err(e) => {
            warn!(error = %e.report(), side = ?e.side(), "session ended");
            session.fail(&e).await;
        }
    }
}
