//! The native publisher without MySQL: TLS, token, snapshot then deltas, a
//! plaintext client on a TLS port, and the subscriber limit.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use causeway_common::tls;
use causeway_gtid::delta::binary::{encode_auth, Decoder, Message, ResetReason};
use causeway_gtid::GtidSet;
use causeway_reader::hub::Hub;
use causeway_reader::metrics::Metrics;
use causeway_reader::publish::{self, Protocol, PublishCtx};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

fn set(t: &str) -> GtidSet {
    GtidSet::parse(t).unwrap()
}

struct Served {
    addr: std::net::SocketAddr,
    hub: Arc<Hub>,
    cert: Option<CertificateDer<'static>>,
    _dir: Option<std::path::PathBuf>,
}

async fn serve(tls: bool, max_subscribers: usize) -> Served {
    let hub = Hub::new(U.parse().unwrap(), set(&format!("{U}:1-10")), 64);
    let (acceptor, cert, dir) = if tls {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "cw-reader-tls-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let acc = tls::acceptor_from_pem(&dir.join("cert.pem"), &dir.join("key.pem"))
            .expect("tls acceptor");
        (Some(acc), Some(ck.cert.der().clone()), Some(dir))
    } else {
        (None, None, None)
    };
    let ctx = Arc::new(PublishCtx {
        hub: hub.clone(),
        metrics: Arc::new(Metrics::new()),
        token: Some("tok".into()),
        reader_instance: 7,
        max_subscribers,
        write_timeout: Duration::from_secs(2),
        proxysql_batched: false,
        active: AtomicUsize::new(0),
        tls: acceptor,
    });
    let listener = publish::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(publish::serve(listener, Protocol::Native, ctx));
    Served {
        addr,
        hub,
        cert,
        _dir: dir,
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(dir) = &self._dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn next<S: AsyncRead + Unpin>(s: &mut S, dec: &mut Decoder, buf: &mut Vec<u8>) -> Message {
    loop {
        if let Some((m, n)) = dec.decode(buf).unwrap() {
            buf.drain(..n);
            return m;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a message in time")
            .unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, served: &Served) {
    let mut auth = Vec::new();
    encode_auth(b"tok", &mut auth);
    s.write_all(&auth).await.unwrap();
    let (mut dec, mut buf) = (Decoder::new(), Vec::new());
    assert!(
        matches!(next(&mut s, &mut dec, &mut buf).await, Message::Hello(h) if h.reader_instance == 7)
    );
    match next(&mut s, &mut dec, &mut buf).await {
        Message::Snapshot(snap) => assert_eq!(snap, set(&format!("{U}:1-10"))),
        other => panic!("{other:?}"),
    }
    served.hub.publish_delta(set(&format!("{U}:11")));
    loop {
        match next(&mut s, &mut dec, &mut buf).await {
            Message::Delta(d) => {
                assert_eq!(d, set(&format!("{U}:11")));
                break;
            }
            Message::Heartbeat(_) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn tls_subscriber_gets_hello_snapshot_and_deltas() {
    let served = serve(true, 10).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(served.cert.clone().unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(served.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    session(tls, &served).await;
}

#[tokio::test]
async fn plaintext_on_a_tls_port_gets_nothing() {
    let served = serve(true, 10).await;
    let mut s = TcpStream::connect(served.addr).await.unwrap();
    let mut auth = Vec::new();
    encode_auth(b"tok", &mut auth);
    s.write_all(&auth).await.unwrap();
    let mut buf = Vec::new();
    // The TLS handshake fails; the reader closes without a stream frame.
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        Decoder::new()
            .decode(&buf)
            .map(|m| m.is_none())
            .unwrap_or(true),
        "a plaintext client must not receive the stream"
    );
}

#[tokio::test]
async fn plain_port_and_the_subscriber_limit() {
    let served = serve(false, 1).await;
    let first = TcpStream::connect(served.addr).await.unwrap();
    let keep = tokio::spawn(async move {
        let mut first = first;
        let mut auth = Vec::new();
        encode_auth(b"tok", &mut auth);
        first.write_all(&auth).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(first);
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = TcpStream::connect(served.addr).await.unwrap();
    let (mut dec, mut buf) = (Decoder::new(), Vec::new());
    match next(&mut second, &mut dec, &mut buf).await {
        Message::Reset(r) => {
            assert_eq!(r.reason, ResetReason::Refused);
            assert!(r.detail.contains("too many"), "{r:?}");
        }
        other => panic!("{other:?}"),
    }
    keep.await.unwrap();
    // Once the first leaves, a new subscriber is served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = TcpStream::connect(served.addr).await.unwrap();
    session(s, &served).await;
}
