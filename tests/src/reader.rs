//! A subscriber of Causeway's reader, as a router would be: native protocol
//! (Auth, then Hello, Snapshot, Deltas, Heartbeats) or ProxySQL's text lines.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use causeway_gtid::delta::binary::{encode_auth, Decoder, Message, ResetReason};
use causeway_gtid::delta::proxysql;
use causeway_gtid::GtidSet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A native-protocol subscriber.
#[derive(Debug)]
pub struct NativeSubscriber {
    sock: TcpStream,
    buf: Vec<u8>,
    dec: Decoder,
    bytes: usize,
    /// The view built from the stream.
    pub view: GtidSet,
}

impl NativeSubscriber {
    /// Connects and authenticates.
    pub async fn connect(addr: &str, token: &[u8]) -> Result<NativeSubscriber> {
        let mut sock = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the reader at {addr}"))?;
        sock.set_nodelay(true)?;
        let mut auth = Vec::new();
        encode_auth(token, &mut auth);
        sock.write_all(&auth).await?;
        Ok(NativeSubscriber {
            sock,
            buf: Vec::new(),
            dec: Decoder::new(),
            bytes: 0,
            view: GtidSet::default(),
        })
    }

    /// The next message (applied to `view` already); `None` on a clean EOF.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<Message>> {
        loop {
            if let Some((msg, used)) = self.dec.decode(&self.buf)? {
                self.buf.drain(..used);
                msg.apply_to(&mut self.view);
                return Ok(Some(msg));
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(timeout, self.sock.read(&mut chunk))
                .await
                .context("no message from the reader in time")??;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("the reader closed mid-frame");
            }
            self.bytes += n;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Every byte received so far.
    pub fn bytes_read(&self) -> usize {
        self.bytes
    }

    /// Waits until the reader closes the connection, ignoring any bytes.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<()> {
        let mut chunk = [0u8; 8192];
        loop {
            let n = tokio::time::timeout(timeout, self.sock.read(&mut chunk))
                .await
                .context("the reader kept the connection open")?;
            match n {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            }
        }
    }

    /// Sends raw bytes to the reader (for misbehaving-subscriber tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.sock.write_all(bytes).await?;
        Ok(())
    }

    /// Reads until the view contains `want`, or fails after `timeout`.
    pub async fn until_contains(&mut self, want: &GtidSet, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !want.is_subset(&self.view) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!(
                    "reader view {} still lacks {}",
                    self.view,
                    want.difference(&self.view)
                );
            }
            match self.next(left).await? {
                None => bail!("the reader closed the stream"),
                Some(Message::Reset(r)) if r.reason == ResetReason::Refused => {
                    bail!("the reader refused the subscription: {}", r.detail)
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// The untagged part of a set: what ProxySQL's protocol can carry (the
/// reader leaves tagged GTIDs out of it).
pub fn untagged(set: &GtidSet) -> GtidSet {
    let mut out = GtidSet::default();
    for (source, intervals) in set.iter().filter(|(s, _)| s.tag().is_none()) {
        for iv in intervals {
            out.insert_interval(*source, *iv);
        }
    }
    out
}

/// A ProxySQL-protocol subscriber.
#[derive(Debug)]
pub struct ProxySqlSubscriber {
    sock: TcpStream,
    dec: proxysql::Decoder,
    /// The view built from the lines.
    pub view: GtidSet,
    /// Every byte received (for byte accounting).
    pub bytes: usize,
}

impl ProxySqlSubscriber {
    /// Connects.
    pub async fn connect(addr: &str) -> Result<ProxySqlSubscriber> {
        let sock = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to the reader at {addr}"))?;
        Ok(ProxySqlSubscriber {
            sock,
            dec: proxysql::Decoder::new(),
            view: GtidSet::default(),
            bytes: 0,
        })
    }

    /// Reads what has arrived (waiting at most `timeout` for something) and
    /// applies it; returns the number of bytes read.
    pub async fn read_some(&mut self, timeout: Duration) -> Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(timeout, self.sock.read(&mut chunk))
            .await
            .with_context(|| format!("nothing from the reader; ProxySQL view {}", self.view))??;
        if n == 0 {
            bail!("the reader closed the ProxySQL stream");
        }
        self.bytes += n;
        self.dec.feed(&chunk[..n], &mut self.view)?;
        Ok(n)
    }

    /// Reads until the view contains `want`.
    pub async fn until_contains(&mut self, want: &GtidSet, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !want.is_subset(&self.view) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.read_some(left)
                .await
                .with_context(|| format!("ProxySQL view {} lacks {}", self.view, want))?;
        }
        Ok(())
    }
}
