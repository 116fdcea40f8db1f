//! A copy-only TCP relay: the floor any proxy pays on this machine for the
//! extra hops (two more loopback sends and receives per round trip, and the
//! wake-ups), with no MySQL handling at all. `bench/sysbench-passthrough`
//! measures it beside the router so the router's own cost can be told from
//! the cost of being a proxy.
//!
//!   tcp-relay LISTEN_ADDR TARGET_ADDR

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .context("usage: tcp-relay LISTEN_ADDR TARGET_ADDR")?;
    let target = args
        .next()
        .context("usage: tcp-relay LISTEN_ADDR TARGET_ADDR")?;
    let listener = TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    loop {
        let (mut client, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
