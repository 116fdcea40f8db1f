//! A client session from accept to close: connection phase, then the
//! command relay. Never panics; every failure ends this session only, with a
//! log line giving the reason.

pub mod kill;
pub mod relay;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::frontend::handshake::{self, establish};
use crate::io::PacketIo;
use crate::{SessionInfo, Shared};

/// Counts the session in the gauge and the KILL registry while it lives.
struct Registered<'a> {
    shared: &'a Shared,
    id: u32,
}

impl<'a> Registered<'a> {
    fn new(shared: &'a Shared, id: u32) -> Self {
        shared.metrics.sessions.inc();
        Self { shared, id }
    }

    fn publish(&self, info: SessionInfo) {
        if let Ok(mut s) = self.shared.sessions.lock() {
            s.insert(self.id, info);
        }
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

/// Serves one client connection to the end.
pub async fn run(tcp: TcpStream, peer: SocketAddr, id: u32, shared: Arc<Shared>) {
    let shared = &*shared;
    shared.metrics.connections.inc();
    let registered = Registered::new(shared, id);
    if shared.metrics.sessions.get() > shared.config.frontend.max_connections as i64 {
        warn!("too many connections; refused");
        let mut client = PacketIo::new(Box::new(tcp), crate::error::Side::Client, 1024);
        handshake::send_err(&mut client, 0, &Error::TooManyConnections, peer).await;
        return;
    }
    let est = match establish(tcp, peer, id, shared).await {
        Ok(est) => est,
        Err(e) => {
            shared.metrics.handshake_failures.inc();
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
    let backend_thread = est.backend.greeting.connection_id;
    info!(user = %est.user, tls = est.client.tls, backend_thread, "session established");
    registered.publish(SessionInfo {
        backend_thread,
        user: est.user.clone(),
    });
    let mut relay = relay::Relay::new(est, peer, id, shared);
    match relay.run().await {
        Ok(()) => debug!("session closed"),
        Err(e) => {
            warn!(error = %e.report(), side = ?e.side(), "session ended");
            relay.fail(&e).await;
        }
    }
}
