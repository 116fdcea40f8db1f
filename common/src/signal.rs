//! Process signals.

/// Waits for SIGTERM; never returns when its handler cannot be installed
/// (Ctrl-C, `tokio::signal::ctrl_c`, still works then).
pub async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
