//! Accepts clients; one task and one tracing span per connection.

use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::{info_span, warn, Instrument};

use crate::shared::Shared;

/// Accepts clients until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let id = shared.next_connection_id();
        let span = info_span!("conn", id, peer = %peer);
        // Boxed: a session's future is large, and the task would otherwise
        // copy it whole several times as it is spawned (measured: most of
        // the router's instructions per connection went to those copies).
        let session = Box::pin(crate::session::run(tcp, peer, id, shared.clone()));
        tokio::spawn(session.instrument(span));
    }
}
