//! Serving subscribers: Causeway's native protocol and ProxySQL's text
//! protocol, each on its own listener, both fed by the [`Hub`].
//!
//! Native session:
//! ```text
//! router                          reader
//!   Auth(token) ----------------->          (always first; empty token if none)
//!               <----------------- Hello, Snapshot
//!               <----------------- Delta | Heartbeat | Reset+Snapshot | Snapshot ...
//! ```
//! A wrong token gets a Reset (reason Refused) saying so, then the
//! connection closes.
//! Anything a subscriber sends after its Auth is garbage: it is dropped
//! with a log line. With a certificate configured, the native port speaks
//! TLS (the Auth frame and everything after travel inside it). ProxySQL's protocol has no auth and no client messages:
//! `ST=` on connect, then `I1`/`I2` (or `I3`/`I4`) lines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use causeway_gtid::delta::binary::{self, Hello, Message, Reset, ResetReason};
use causeway_gtid::delta::proxysql;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::hub::{Hub, Next, Subscription, Update};
use crate::metrics::Metrics;

/// How long a subscriber has to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// What every subscriber connection shares.
pub struct PublishCtx {
    /// The fan-out point.
    pub hub: Arc<Hub>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Token native subscribers must present; `None`: no auth.
    pub token: Option<String>,
    /// Random id of this reader process.
    pub reader_instance: u64,
    /// Subscribers allowed at once.
    pub max_subscribers: usize,
    /// Per-write deadline.
    pub write_timeout: Duration,
    /// `I3`/`I4` batching for ProxySQL subscribers.
    pub proxysql_batched: bool,
    /// Subscribers now.
    pub active: AtomicUsize,
    /// TLS for native subscribers, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for PublishCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishCtx")
            .field("reader_instance", &self.reader_instance)
            .field("max_subscribers", &self.max_subscribers)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Causeway's binary stream.
    Native,
    /// ProxySQL's text lines.
    ProxySql,
}

/// Accepts subscribers forever.
pub async fn serve(listener: TcpListener, proto: Protocol, ctx: Arc<PublishCtx>) {
    let mut next_id: u64 = 0;
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        next_id += 1;
        let _ = sock.set_nodelay(true);
        let ctx = ctx.clone();
        let span = info_span!("subscriber", id = next_id, %peer, protocol = ?proto);
        tokio::spawn(
            async move {
                if ctx.active.fetch_add(1, Ordering::SeqCst) >= ctx.max_subscribers {
                    ctx.active.fetch_sub(1, Ordering::SeqCst);
                    ctx.metrics.subscribers_dropped.inc();
                    warn!(max = ctx.max_subscribers, "too many subscribers; refused");
                    if proto == Protocol::Native && ctx.tls.is_none() {
                        let mut sock = sock;
                        refuse(&mut sock, "too many subscribers", ctx.write_timeout).await;
                    }
                    return;
                }
                ctx.metrics.subscribers.inc();
                info!("subscribed");
                let res = match (proto, &ctx.tls) {
                    (Protocol::Native, Some(tls)) => {
                        match tokio::time::timeout(AUTH_TIMEOUT, tls.accept(sock)).await {
                            Ok(Ok(stream)) => native(stream, &ctx).await,
                            Ok(Err(e)) => Err(SubscriberError::Io(e)),
                            Err(_) => Err(SubscriberError::AuthTimeout(AUTH_TIMEOUT)),
                        }
                    }
                    (Protocol::Native, None) => native(sock, &ctx).await,
                    (Protocol::ProxySql, _) => proxysql_session(sock, &ctx).await,
                };
                ctx.metrics.subscribers.dec();
                ctx.active.fetch_sub(1, Ordering::SeqCst);
                match res {
                    Ok(()) => info!("unsubscribed"),
                    Err(e) => {
                        ctx.metrics.subscribers_dropped.inc();
                        warn!(reason = %e, "subscriber dropped");
                    }
                }
            }
            .instrument(span),
        );
    }
}

/// Tells a native subscriber why it is refused, best effort.
async fn refuse<W: AsyncWrite + Unpin>(sock: &mut W, why: &str, timeout: Duration) {
    let mut out = Vec::new();
    binary::Encoder::new().encode(
        &Message::Reset(Reset {
            reason: ResetReason::Refused,
            detail: why.to_string(),
        }),
        &mut out,
    );
    let _ = write_all(sock, &mut out, timeout).await;
    let _ = sock.shutdown().await;
}

/// Binds a listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Why a subscriber connection ended badly.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The subscriber did not take our bytes in time.
    #[error("write timed out after {0:?}")]
    WriteTimeout(Duration),
    /// No valid auth frame in time.
    #[error("no auth frame within {0:?}")]
    AuthTimeout(Duration),
    /// Wrong token.
    #[error("bad token")]
    BadToken,
    /// The subscriber sent something it must not.
    #[error("garbage from the subscriber: {0}")]
    Garbage(String),
}

async fn write_all<W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), SubscriberError> {
    tokio::time::timeout(timeout, w.write_all(buf))
        .await
        .map_err(|_| SubscriberError::WriteTimeout(timeout))??;
    buf.clear();
    Ok(())
}

/// Reads the subscriber's Auth frame (see [`binary::decode_auth`]).
async fn read_auth<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, SubscriberError> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    loop {
        if let Some((token, used)) =
            binary::decode_auth(&buf).map_err(|e| SubscriberError::Garbage(e.to_string()))?
        {
            if used != buf.len() {
                return Err(SubscriberError::Garbage(
                    "bytes after the auth frame".into(),
                ));
            }
            return Ok(token);
        }
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(SubscriberError::Io(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

async fn native<S>(sock: S, ctx: &PublishCtx) -> Result<(), SubscriberError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(sock);
    let given = tokio::time::timeout(AUTH_TIMEOUT, read_auth(&mut rd))
        .await
        .map_err(|_| SubscriberError::AuthTimeout(AUTH_TIMEOUT))??;
    let mut enc = binary::Encoder::new();
    let mut out = Vec::with_capacity(4096);
    if let Some(expected) = &ctx.token {
        if !token_matches(&given, expected.as_bytes()) {
            refuse(&mut wr, "bad token", ctx.write_timeout).await;
            return Err(SubscriberError::BadToken);
        }
    }
    let (snap, sub) = ctx.hub.subscribe();
    let hello = |server_uuid, epoch| {
        Message::Hello(Hello {
            protocol_version: binary::VERSION,
            server_uuid,
            reader_instance: ctx.reader_instance,
            epoch,
        })
    };
    enc.encode(&hello(snap.server_uuid, snap.epoch), &mut out);
    enc.snapshot(&snap.set, &mut out);
    write_all(&mut wr, &mut out, ctx.write_timeout).await?;
    stream(rd, wr, sub, ctx, "after auth", |next, out| match next {
        Next::Update(Update::Delta { delta, .. }) => enc.delta(&delta, out),
        Next::Update(Update::Heartbeat { view_age, .. }) => enc.heartbeat(view_age, out),
        Next::Update(Update::Reset {
            reason,
            detail,
            snapshot,
            epoch,
        }) => {
            enc.encode(&Message::Reset(Reset { reason, detail }), out);
            enc.encode(&hello(ctx.hub.identity().0, epoch), out);
            enc.snapshot(&snapshot, out);
        }
        Next::Resnapshot(snap) => enc.snapshot(&snap.set, out),
    })
    .await
}

async fn proxysql_session(sock: TcpStream, ctx: &PublishCtx) -> Result<(), SubscriberError> {
    let (rd, mut wr) = sock.into_split();
    let dialect = if ctx.proxysql_batched {
        proxysql::Dialect::Batched
    } else {
        proxysql::Dialect::PerTransaction
    };
    let mut enc = proxysql::Encoder::new(dialect);
    let mut out = Vec::with_capacity(4096);
    let (snap, sub) = ctx.hub.subscribe();
    enc.snapshot(&snap.set, &mut out);
    write_all(&mut wr, &mut out, ctx.write_timeout).await?;
    stream(
        rd,
        wr,
        sub,
        ctx,
        "on the ProxySQL port",
        |next, out| match next {
            Next::Update(Update::Delta { delta, .. }) => {
                enc.delta(&delta, out);
            }
            // The text protocol has no heartbeat.
            Next::Update(Update::Heartbeat { .. }) => {}
            Next::Update(Update::Reset { snapshot, .. }) => {
                enc.snapshot(&snapshot, out);
            }
            Next::Resnapshot(snap) => {
                enc.snapshot(&snap.set, out);
            }
        },
    )
    .await
}

/// One subscriber's stream after its first snapshot, for either protocol:
/// `encode` appends what an update means in that protocol (maybe nothing),
/// the bytes go out under the write timeout, and any byte the subscriber
/// sends (`where_` names the place in the error) ends it as garbage.
async fn stream<R, W>(
    mut rd: R,
    mut wr: W,
    mut sub: Subscription,
    ctx: &PublishCtx,
    where_: &str,
    mut encode: impl FnMut(Next, &mut Vec<u8>),
) -> Result<(), SubscriberError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut out = Vec::with_capacity(4096);
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            next = sub.next() => {
                let Some(next) = next else { return Ok(()) };
                if matches!(next, Next::Resnapshot(_)) {
                    ctx.metrics.subscribers_resnapshot.inc();
                    debug!("fell behind; sending a fresh snapshot");
                }
                encode(next, &mut out);
                if !out.is_empty() {
                    write_all(&mut wr, &mut out, ctx.write_timeout).await?;
                }
            }
            n = rd.read(&mut probe) => {
                return match n? {
                    0 => Ok(()),
                    _ => Err(SubscriberError::Garbage(format!(
                        "unexpected byte {:#04x} {where_}", probe[0]
                    ))),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
        assert!(token_matches(b"", b""));
    }
}
