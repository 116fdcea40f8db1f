//! The views against a fake reader (snapshots, deltas, resets, probes, a
//! refused token) and, over TLS, against the real reader's native publisher
//! (`causeway_reader::publish` fed by its hub instead of a binlog): each
//! `reader_tls` mode, the default name checked, and the cases that must not
//! connect (unknown CA, wrong name, plain TCP on a TLS port).

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

use super::*;

/// The slot of the server called `name` (none: a slot no view has).
fn vid(views: &Views, name: &str) -> ViewId {
    views.id(name).unwrap_or(ViewId(usize::MAX))
}
use crate::config::BackendTlsMode;
use causeway_gtid::delta::binary::{decode_auth, Encoder, Hello, Reset, ResetReason};
use causeway_reader::hub::Hub;
use causeway_reader::metrics::Metrics;
use causeway_reader::publish::{self, Protocol, PublishCtx};
use tokio::net::TcpListener;

const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const TOKEN: &str = "tok";

/// Views of `servers`, s1's fed by the reader at `addr`.
fn follow(servers: &[&str], addr: String, token: &[u8], tls: Option<&BackendTls>) -> Views {
    let views = Views::new();
    let target = ViewTarget::new("s1".into(), addr, token.to_vec(), tls).unwrap();
    let servers: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    views.retarget(&servers, vec![target]);
    views
}

fn set(t: &str) -> GtidSet {
    GtidSet::parse(t).unwrap()
}

/// A fake reader: checks the token, then sends what the test pushes.
async fn fake_reader(
    token: &'static [u8],
) -> (String, tokio::sync::mpsc::UnboundedSender<Vec<Message>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<Message>>();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let got = loop {
            let mut b = [0u8; 256];
            let n = sock.read(&mut b).await.unwrap();
            buf.extend_from_slice(&b[..n]);
            if let Some((t, _)) = decode_auth(&buf).unwrap() {
                break t;
            }
        };
        if got != token {
            return; // as a reader does: no stream for a wrong token
        }
        let mut enc = Encoder::new();
        while let Some(batch) = rx.recv().await {
            let mut out = Vec::new();
            for m in &batch {
                enc.encode(m, &mut out);
            }
            if sock.write_all(&out).await.is_err() {
                return;
            }
        }
        // Dropping the sender closes the connection.
    });
    (addr, tx)
}

fn hello() -> Message {
    Message::Hello(Hello {
        protocol_version: 1,
        server_uuid: causeway_gtid::Uuid::nil(),
        reader_instance: 1,
        epoch: 1,
    })
}

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

#[tokio::test]
async fn snapshots_deltas_and_resets_shape_the_view() {
    let (addr, tx) = fake_reader(b"sesame").await;
    let views = follow(&["s1"], addr, b"sesame", None);
    tx.send(vec![hello(), Message::Snapshot(set(&format!("{U}:1-10")))])
        .unwrap();
    until(&views, "snapshot", |v| {
        v.connected && v.set == set(&format!("{U}:1-10"))
    })
    .await;
    tx.send(vec![Message::Delta(set(&format!("{U}:11-12")))])
        .unwrap();
    until(&views, "delta", |v| v.set == set(&format!("{U}:1-12"))).await;

    // GTIDs the server returned itself are known at once.
    views.learn(vid(&views, "s1"), &set(&format!("{U}:20")));
    assert_eq!(views.read()["s1"].set, set(&format!("{U}:1-12:20")));
    views.learn(vid(&views, "unknown"), &set(&format!("{U}:20")));
    assert!(!views.read().contains_key("unknown"));

    // A reset: the server may have lost GTIDs; the next snapshot is the truth.
    tx.send(vec![
        Message::Reset(Reset {
            reason: ResetReason::SetShrank,
            detail: "RESET BINARY LOGS AND GTIDS".into(),
        }),
        hello(),
        Message::Snapshot(set(&format!("{U}:1-3"))),
    ])
    .unwrap();
    until(&views, "reset", |v| v.set == set(&format!("{U}:1-3"))).await;
    assert!(views.read()["s1"].resets >= 1);

    // The reader goes away: the view stays, marked disconnected.
    drop(tx);
    until(&views, "disconnect", |v| !v.connected).await;
    assert_eq!(views.read()["s1"].set, set(&format!("{U}:1-3")));
}

#[tokio::test]
async fn probes_time_how_long_writes_take_to_reach_a_view() {
    let (addr, tx) = fake_reader(b"t").await;
    let views = follow(&["s1", "primary"], addr, b"t", None);
    tx.send(vec![hello(), Message::Snapshot(set(&format!("{U}:1-10")))])
        .unwrap();
    until(&views, "snapshot", |v| v.connected).await;
    assert_eq!(
        views.lag(vid(&views, "s1"), vid(&views, "primary"), Instant::now()),
        None
    );

    // The primary returns :11; s1 has not got it: its lag is the wait so far.
    views.wrote(vid(&views, "primary"), &set(&format!("{U}:11")));
    assert!(set(&format!("{U}:11")).is_subset(&views.read()["primary"].set));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let pending = views
        .lag(vid(&views, "s1"), vid(&views, "primary"), Instant::now())
        .unwrap();
    assert!(pending >= Duration::from_millis(30), "{pending:?}");
    // The primary itself is never behind on what it returned.
    assert_eq!(
        views.lag(
            vid(&views, "primary"),
            vid(&views, "primary"),
            Instant::now()
        ),
        None
    );

    // The delta arrives: one sample of about 30 ms, nothing pending.
    tx.send(vec![Message::Delta(set(&format!("{U}:11")))])
        .unwrap();
    until(&views, "delta", |v| v.catch_up.is_some()).await;
    let measured = views.read()["s1"].catch_up.unwrap();
    assert!(measured >= Duration::from_millis(30), "{measured:?}");
    let later = Instant::now() + Duration::from_secs(5);
    assert_eq!(
        views.lag(vid(&views, "s1"), vid(&views, "primary"), later),
        Some(measured)
    );

    // A quick one pulls the average down by an eighth of the gap.
    views.wrote(vid(&views, "primary"), &set(&format!("{U}:12")));
    tx.send(vec![Message::Delta(set(&format!("{U}:12")))])
        .unwrap();
    until(&views, "second delta", |v| v.catch_up != Some(measured)).await;
    let avg = views.read()["s1"].catch_up.unwrap();
    assert!(
        avg < measured && avg > measured * 3 / 4,
        "{avg:?} {measured:?}"
    );

    // After a snapshot (a reconnect), held probes are not samples.
    views.wrote(vid(&views, "primary"), &set(&format!("{U}:13")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(vec![
        Message::Reset(Reset {
            reason: ResetReason::SetShrank,
            detail: String::new(),
        }),
        hello(),
        Message::Snapshot(set(&format!("{U}:1-13"))),
    ])
    .unwrap();
    until(&views, "snapshot with the probe", |v| {
        set(&format!("{U}:13")).is_subset(&v.set)
    })
    .await;
    assert_eq!(views.read()["s1"].catch_up, Some(avg));
    assert_eq!(
        views.lag(vid(&views, "s1"), vid(&views, "primary"), later),
        Some(avg)
    );

    views.read_took(vid(&views, "primary"), Duration::from_millis(2));
    views.read_took(vid(&views, "primary"), Duration::from_millis(10));
    assert_eq!(
        views.read()["primary"].read_cost,
        Some(Duration::from_millis(3))
    );
}

#[test]
fn probes_a_view_held_early_or_lost_track_of_are_not_samples() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut probes = Probes::default();
    let (p, s1) = (ViewId(0), ViewId(1));
    let mut v = ServerView {
        set: set(&format!("{U}:1-5")),
        ..ServerView::default()
    };
    // Taken while the view already held it (its delta came first).
    probes.add(p, &set(&format!("{U}:5")), ms(0), vec![s1]);
    // A real one: sent at 10 ms, held at 14 ms.
    assert!(!probes.due(p, ms(0)) && probes.due(p, ms(1)));
    probes.add(p, &set(&format!("{U}:6")), ms(10), Vec::new());
    v.set = set(&format!("{U}:1-6"));
    probes.seen(s1, &mut v, ms(14), true);
    assert_eq!(v.catch_up, Some(Duration::from_millis(4)));
    assert_eq!(probes.pending(p, &v, ms(20)), None);

    // A probe the view never gets blocks the cursor; once it is dropped
    // to make room, the probes after it are not samples (the view may
    // have held them for long): only later ones are.
    probes.add(p, &set(&format!("{U}:1000")), ms(20), Vec::new());
    for i in 0..PROBE_KEEP as u64 {
        probes.add(p, &set(&format!("{U}:{}", 7 + i)), ms(21 + i), Vec::new());
    }
    assert_eq!(
        probes.pending(p, &v, ms(300)),
        Some(Duration::from_millis(279)),
        "the oldest probe it lacks"
    );
    v.set = set(&format!("{U}:1-999"));
    probes.seen(s1, &mut v, ms(5000), true);
    assert_eq!(
        v.catch_up,
        Some(Duration::from_millis(4)),
        "no sample after losing track"
    );
    assert_eq!(probes.pending(p, &v, ms(5000)), None);
    probes.add(p, &set(&format!("{U}:1001")), ms(6000), Vec::new());
    v.set = set(&format!("{U}:1-999:1001"));
    probes.seen(s1, &mut v, ms(6012), true);
    // (7 × 4 + 12) / 8 = 5
    assert_eq!(v.catch_up, Some(Duration::from_millis(5)));
    // A source's own probes are never its samples.
    let mut own = ServerView::default();
    probes.seen(p, &mut own, ms(7000), true);
    assert_eq!(own.catch_up, None);
}

#[tokio::test]
async fn a_reader_that_refuses_the_token_leaves_the_view_empty() {
    let (addr, tx) = fake_reader(b"right").await;
    let views = follow(&["s1"], addr, b"wrong", None);
    // The fake reader's token check fails and drops the connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tx);
    let v = views.read()["s1"].clone();
    assert!(!v.connected);
    assert!(v.set.is_empty());
}

// Over TLS, against the real reader.

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
        &["s1"],
        format!("localhost:{}", reader.port),
        TOKEN.as_bytes(),
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
        let views = follow(&["s1"], addr.clone(), TOKEN.as_bytes(), Some(&settings));
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
        &["s1"],
        addr.clone(),
        TOKEN.as_bytes(),
        Some(&tls(
            BackendTlsMode::VerifyIdentity,
            Some(reader.ca()),
            None,
        )),
    );
    never_connects(&views, "wrong name").await;
    // Signed by a CA the router does not trust.
    let views = follow(
        &["s1"],
        addr.clone(),
        TOKEN.as_bytes(),
        Some(&tls(BackendTlsMode::VerifyCa, Some(other.ca()), None)),
    );
    never_connects(&views, "unknown CA").await;
    // Plain TCP on a TLS port: the reader never sees a token.
    let views = follow(&["s1"], addr.clone(), TOKEN.as_bytes(), None);
    never_connects(&views, "plain on a tls port").await;
    // Disabled is plain TCP too.
    let views = follow(
        &["s1"],
        addr,
        TOKEN.as_bytes(),
        Some(&tls(BackendTlsMode::Disabled, None, None)),
    );
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
