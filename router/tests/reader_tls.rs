//! The router's views over TLS, against the real reader's native publisher
//! (`causeway_reader::publish`, fed by its hub instead of a binlog): each
//! `reader_tls` mode, the default name checked, and the cases that must not
//! connect (unknown CA, wrong name, plain TCP on a TLS port).

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use causeway_gtid::GtidSet;
use causeway_reader::hub::Hub;
use causeway_reader::metrics::Metrics;
use causeway_reader::publish::{self, Protocol, PublishCtx};
use causeway_router::config::{BackendTls, BackendTlsMode};
use causeway_router::views::{ServerView, ViewTarget, Views};

const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const TOKEN: &str = "tok";

fn set(t: &str) -> GtidSet {
    GtidSet::parse(t).unwrap()
}

/// A folder removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "cw-router-reader-tls-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A reader publishing `U:1-10` over TLS with a certificate for
/// `localhost`; `ca.pem` in the folder is that certificate.
struct TlsReader {
    port: u16,
    hub: Arc<Hub>,
    dir: Dir,
}

impl TlsReader {
    async fn start(name: &str) -> TlsReader {
        let dir = Dir::new(name);
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.0.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.0.join("ca.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.0.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let acceptor = causeway_common::tls::acceptor_from_pem(
            &dir.0.join("cert.pem"),
            &dir.0.join("key.pem"),
        )
        .unwrap();
        let hub = Hub::new(U.parse().unwrap(), set(&format!("{U}:1-10")), 64);
        let ctx = Arc::new(PublishCtx {
            hub: hub.clone(),
            metrics: Arc::new(Metrics::new()),
            token: Some(TOKEN.into()),
            reader_instance: 1,
            max_subscribers: 16,
            write_timeout: Duration::from_secs(2),
            proxysql_batched: false,
            active: AtomicUsize::new(0),
            tls: Some(acceptor),
        });
        let listener = publish::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(publish::serve(listener, Protocol::Native, ctx));
        TlsReader { port, hub, dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }
}

fn tls(mode: BackendTlsMode, ca: Option<PathBuf>, name: Option<&str>) -> BackendTls {
    BackendTls {
        mode,
        ca_file: ca,
        server_name: name.map(str::to_string),
    }
}

fn follow(addr: String, tls: Option<&BackendTls>) -> Views {
    let views = Views::new();
    let target = ViewTarget::new("s1".into(), addr, TOKEN.as_bytes().to_vec(), tls).unwrap();
    views.retarget(&["s1".to_string()], vec![target]);
    views
}

/// Waits until the view satisfies `f` (panics after 10 s).
async fn until(views: &Views, what: &str, f: impl Fn(&ServerView) -> bool) {
    let mut rx = views.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if views.read().get("s1").is_some_and(&f) {
            return;
        }
        assert!(
            tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_ok(),
            "{what}: view is {:?}",
            views.read().get("s1")
        );
    }
}

/// Gives the stream time to fail and retry (backoff starts at 100 ms),
/// then checks it never came up.
async fn never_connects(views: &Views, what: &str) {
    tokio::time::sleep(Duration::from_millis(700)).await;
    let v = views.read()["s1"].clone();
    assert!(!v.connected && v.set.is_empty(), "{what}: {v:?}");
}

#[tokio::test]
async fn verify_identity_follows_snapshot_and_deltas() {
    let reader = TlsReader::start("identity").await;
    // The default name checked is the host of the address.
    let views = follow(
        format!("localhost:{}", reader.port),
        Some(&tls(
            BackendTlsMode::VerifyIdentity,
            Some(reader.ca()),
            None,
        )),
    );
    until(&views, "snapshot over tls", |v| {
        v.connected && v.set == set(&format!("{U}:1-10"))
    })
    .await;
    reader.hub.publish_delta(set(&format!("{U}:11-12")));
    until(&views, "delta over tls", |v| {
        v.set == set(&format!("{U}:1-12"))
    })
    .await;
}

#[tokio::test]
async fn verify_ca_and_required_do_not_check_the_name() {
    let reader = TlsReader::start("ca").await;
    let addr = format!("127.0.0.1:{}", reader.port);
    for settings in [
        tls(BackendTlsMode::VerifyCa, Some(reader.ca()), None),
        tls(BackendTlsMode::Required, None, None),
        // An explicit name replaces the address's host.
        tls(
            BackendTlsMode::VerifyIdentity,
            Some(reader.ca()),
            Some("localhost"),
        ),
    ] {
        let views = follow(addr.clone(), Some(&settings));
        until(&views, &format!("{:?}", settings.mode), |v| {
            v.connected && v.set == set(&format!("{U}:1-10"))
        })
        .await;
    }
}

#[tokio::test]
async fn an_unverified_reader_never_feeds_the_view() {
    let reader = TlsReader::start("refused").await;
    let other = TlsReader::start("other-ca").await;
    let addr = format!("127.0.0.1:{}", reader.port);
    // 127.0.0.1 is not the certificate's name.
    let views = follow(
        addr.clone(),
        Some(&tls(
            BackendTlsMode::VerifyIdentity,
            Some(reader.ca()),
            None,
        )),
    );
    never_connects(&views, "wrong name").await;
    // Signed by a CA the router does not trust.
    let views = follow(
        addr.clone(),
        Some(&tls(BackendTlsMode::VerifyCa, Some(other.ca()), None)),
    );
    never_connects(&views, "unknown CA").await;
    // Plain TCP on a TLS port: the reader never sees a token.
    let views = follow(addr.clone(), None);
    never_connects(&views, "plain on a tls port").await;
    // Disabled is plain TCP too.
    let views = follow(addr, Some(&tls(BackendTlsMode::Disabled, None, None)));
    never_connects(&views, "disabled").await;
}

#[test]
fn a_missing_ca_file_is_a_clear_error() {
    let err = ViewTarget::new(
        "s1".into(),
        "127.0.0.1:1".into(),
        Vec::new(),
        Some(&tls(
            BackendTlsMode::VerifyCa,
            Some(PathBuf::from("/nonexistent/ca.pem")),
            None,
        )),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("reader_tls of server s1") && msg.contains("/nonexistent/ca.pem"),
        "{msg}"
    );
}
