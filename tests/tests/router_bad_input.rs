//! Bad input from clients (garbage, truncated, oversized or out-of-sequence
//! packets, stalls) and an unreachable backend: an ERR packet where the
//! protocol allows one, the connection closed, no panic, other sessions
//! unaffected.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use causeway_e2e::router::{opts, start_router, Raw, TestRouter};
use causeway_e2e::Topology;
use causeway_router::config::FullAuth;
use causeway_wire::ErrPacket;
use mysql_async::prelude::*;
use mysql_async::Conn;

/// Reads until the server closes; returns the ERR packets seen.
async fn errors_until_close(raw: &mut Raw) -> Result<Vec<(u16, String)>> {
    let mut errs = Vec::new();
    while let Some(p) = raw.read().await? {
        if p.payload.first() == Some(&0xff) {
            let e = ErrPacket::decode(&p.payload)?;
            errs.push((e.code, String::from_utf8_lossy(&e.message).into_owned()));
        }
    }
    Ok(errs)
}

async fn router(topo: &Topology) -> Result<TestRouter> {
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    cfg.frontend.handshake_timeout = Duration::from_millis(500);
    cfg.frontend.max_packet_size = 64 * 1024;
    start_router(cfg).await
}

#[tokio::test]
async fn garbage_handshakes_get_an_err_and_a_close_and_others_carry_on() -> Result<()> {
    let topo = Topology::get()?;
    let router = router(&topo).await?;
    let mut bystander = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        // A packet that is not a handshake response (pre-4.1 flags).
        ("garbage", b"\x05\x00\x00\x01hello".to_vec(), 1043),
        // Out of sequence: the response must carry sequence id 1.
        (
            "out of sequence",
            {
                let mut p = vec![0x20, 0, 0, 7];
                p.extend_from_slice(&[0xff; 32]);
                p
            },
            1156,
        ),
        // Oversized: a header announcing 16 MiB during the handshake.
        ("oversized", vec![0xff, 0xff, 0xfe, 0x01], 1153),
        // Truncated fields: PROTOCOL_41 flags, then the packet ends.
        ("truncated", vec![4, 0, 0, 1, 0x00, 0x02, 0x00, 0x00], 1043),
    ];
    for (what, bytes, code) in cases {
        let (mut raw, _) = Raw::greet(router.port).await?;
        raw.send_bytes(&bytes).await?;
        let errs = errors_until_close(&mut raw).await.context(what)?;
        assert_eq!(errs.first().map(|e| e.0), Some(code), "{what}: {errs:?}");
        let one: Option<i64> = bystander.query_first("SELECT 1").await?;
        assert_eq!(one, Some(1), "{what}");
    }
    // Random bytes after the greeting, many times: never a hang, never a panic.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..100 {
        let (mut raw, _) = Raw::greet(router.port).await?;
        let len = (seed % 200) as usize;
        let mut junk = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.push(seed as u8);
        }
        raw.send_bytes(&junk).await?;
        // Either the router answers (ERR or an auth step) or it waits for
        // more bytes until the handshake timeout: both end in a close.
        let _ = errors_until_close(&mut raw).await?;
    }
    let one: Option<i64> = bystander.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    assert!(router.shared.metrics.handshake_failures.get() >= 104);
    Ok(())
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_after_the_timeout() -> Result<()> {
    let topo = Topology::get()?;
    let router = router(&topo).await?;
    // Stalls after the greeting, then in the middle of a packet.
    for partial in [&b""[..], &b"\x40\x00\x00\x01\x00\x02"[..]] {
        let start = Instant::now();
        let (mut raw, _) = Raw::greet(router.port).await?;
        raw.send_bytes(partial).await?;
        let errs = errors_until_close(&mut raw).await?;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(400), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert_eq!(errs, vec![(1043, "Bad handshake".to_string())]);
    }
    let mut conn = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    conn.ping().await?;
    Ok(())
}

#[tokio::test]
async fn bad_commands_end_only_their_session() -> Result<()> {
    let topo = Topology::get()?;
    let router = router(&topo).await?;
    let app = topo.user("APP")?;
    let mut bystander = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let login = || Raw::login_as(router.port, &app);

    // A command packet with the wrong sequence id.
    let mut raw = login().await?;
    raw.send(3, b"\x03SELECT 1").await?;
    assert_eq!(
        errors_until_close(&mut raw).await?.first().map(|e| e.0),
        Some(1156)
    );

    // A command larger than frontend.max_packet_size.
    let mut raw = login().await?;
    let mut big = b"\x03SELECT '".to_vec();
    big.resize(100 * 1024, b'x');
    raw.send(0, &big).await?;
    assert_eq!(
        errors_until_close(&mut raw).await?.first().map(|e| e.0),
        Some(1153)
    );

    // An empty command packet.
    let mut raw = login().await?;
    raw.send(0, b"").await?;
    assert_eq!(
        errors_until_close(&mut raw).await?.first().map(|e| e.0),
        Some(1047)
    );

    // A command cut off by the client going away.
    let mut raw = login().await?;
    raw.send_bytes(b"\x20\x00\x00\x00\x03SEL").await?;
    drop(raw);

    // Unknown command bytes are the backend's business (it answers ERR).
    let mut raw = login().await?;
    let reply = raw.command(b"\x63").await?;
    assert_eq!(reply[0][0], 0xff, "{reply:?}");
    let reply = raw.command(b"\x03SELECT 2").await?;
    assert_eq!(reply.len(), 4);

    let one: Option<i64> = bystander.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    Ok(())
}

#[tokio::test]
async fn an_unreachable_backend_is_err_2003() -> Result<()> {
    let topo = Topology::get()?;
    let free = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = free.local_addr()?.port();
    drop(free);
    let mut cfg = topo.router_config()?;
    cfg.servers[0].port = port;
    let router = start_router(cfg).await?;
    let mut raw = Raw::connect(router.port).await?;
    let p = raw.read().await?.context("no packet")?;
    assert_eq!(p.seq, 0);
    let err = ErrPacket::decode(&p.payload)?;
    assert_eq!(err.code, 2003);
    let msg = String::from_utf8_lossy(&err.message);
    // Where the backend is and why it failed is for the log, not the client.
    assert!(!msg.contains(&port.to_string()), "{msg}");
    assert!(msg.contains("backend unavailable"), "{msg}");
    assert!(raw.read().await?.is_none());
    let err = Conn::new(opts(&topo, router.port, "APP", true)?)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2003"), "{err}");
    assert_eq!(router.shared.metrics.backend_connect_errors.get(), 2);
    Ok(())
}

#[tokio::test]
async fn idle_sessions_are_closed_with_err_4031() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    cfg.frontend.idle_timeout = Duration::from_millis(300);
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    let mut raw = Raw::login_as(router.port, &app).await?;
    let start = Instant::now();
    let errs = errors_until_close(&mut raw).await?;
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(errs.first().map(|e| e.0), Some(4031), "{errs:?}");
    // A client library sees the session gone at its next query.
    let mut conn = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(conn.query_drop("SELECT 1").await.is_err());
    Ok(())
}

#[tokio::test]
async fn sessions_over_max_connections_get_err_1040() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.max_connections = 1;
    let router = start_router(cfg).await?;
    let mut first = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let err = Conn::new(opts(&topo, router.port, "APP", true)?)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1040"), "{err}");
    first.ping().await?;
    first.disconnect().await?;
    // The slot is free again once the first session is gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Conn::new(opts(&topo, router.port, "APP", true)?)
        .await?
        .disconnect()
        .await?;
    Ok(())
}

/// Waits up to `limit` for `router` to have no session left.
async fn sessions_gone(router: &TestRouter, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if router.shared.metrics.sessions.get() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_client_that_stops_reading_a_result_is_dropped_after_net_write_timeout() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    cfg.frontend.net_write_timeout = Duration::from_millis(300);
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    let mut raw = Raw::login_as(router.port, &app).await?;
    assert_eq!(router.shared.metrics.sessions.get(), 1);
    // 64 MiB of result, far more than the socket buffers, never read.
    let mut query = vec![0x03];
    query.extend_from_slice(
        b"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 64) \
          SELECT REPEAT('x', 1048576) FROM s",
    );
    raw.send(0, &query).await?;
    assert!(
        sessions_gone(&router, Duration::from_secs(10)).await,
        "the session outlived net_write_timeout"
    );
    drop(raw);
    Ok(())
}

#[tokio::test]
async fn a_command_stalled_between_its_chunks_is_ended_with_err_1159() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    cfg.frontend.handshake_timeout = Duration::from_millis(300);
    cfg.frontend.net_read_timeout = Duration::from_millis(300);
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    let mut raw = Raw::login_as(router.port, &app).await?;
    // A full first chunk (so more follow), then nothing.
    let mut chunk = vec![0xff, 0xff, 0xff, 0x00, 0x03];
    chunk.extend_from_slice(b"SELECT '");
    chunk.resize(4 + 0xff_ffff, b'x');
    raw.send_bytes(&chunk).await?;
    let start = Instant::now();
    let errs = errors_until_close(&mut raw).await?;
    assert!(start.elapsed() < Duration::from_secs(8));
    assert_eq!(errs.first().map(|e| e.0), Some(1159), "{errs:?}");
    assert!(sessions_gone(&router, Duration::from_secs(5)).await);
    Ok(())
}

#[tokio::test]
async fn a_change_user_stalled_in_authentication_is_ended() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    cfg.frontend.handshake_timeout = Duration::from_millis(300);
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    let mut raw = Raw::login_as(router.port, &app).await?;
    let cmd = causeway_wire::command::ComChangeUser {
        username: app.user.clone().into_bytes().into(),
        auth_response: vec![0u8; 32].into(),
        database: Default::default(),
        charset: Some(255),
        auth_plugin_name: Some(b"caching_sha2_password".to_vec().into()),
        connect_attrs: Vec::new(),
    };
    let mut buf = bytes::BytesMut::new();
    cmd.encode(raw.caps, &mut buf)?;
    raw.send(0, &buf).await?;
    // The router asks for a fresh response (an AuthSwitchRequest) that
    // never comes.
    let switch = raw.read().await?.context("no auth switch")?;
    assert_eq!(switch.payload.first(), Some(&0xfe), "{switch:?}");
    let start = Instant::now();
    let errs = errors_until_close(&mut raw).await?;
    assert!(start.elapsed() < Duration::from_secs(8));
    assert_eq!(errs.first().map(|e| e.0), Some(1043), "{errs:?}");
    assert!(sessions_gone(&router, Duration::from_secs(5)).await);
    Ok(())
}

#[tokio::test]
async fn a_command_whose_first_packet_stalls_is_ended_after_net_read_timeout() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    cfg.frontend.net_read_timeout = Duration::from_millis(300);
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    // Part of a header, and part of a packet: both end with ERR 1159, not
    // after idle_timeout (8 h).
    for partial in [&b"\x20\x00"[..], &b"\x20\x00\x00\x00\x03SELECT"[..]] {
        let mut raw = Raw::login_as(router.port, &app).await?;
        raw.send_bytes(partial).await?;
        let start = Instant::now();
        let errs = errors_until_close(&mut raw).await?;
        assert!(start.elapsed() >= Duration::from_millis(250));
        assert_eq!(errs.first().map(|e| e.0), Some(1159), "{errs:?}");
    }
    assert!(sessions_gone(&router, Duration::from_secs(5)).await);
    Ok(())
}

#[tokio::test]
async fn partly_sent_packets_cannot_take_the_router_s_memory() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    // Room for one whole 16 MiB chunk and a little more.
    cfg.frontend.max_buffered = 20 << 20;
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    let mut bystander = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    // A session announces a 16 MiB chunk, sends 12 MiB of it and stops; a
    // second one announcing as much cannot be held too and is closed with
    // ERR 1041; the first still finishes its command once it sends the rest.
    let mut chunk = vec![0xff, 0xff, 0xff, 0x00, 0x03];
    chunk.extend_from_slice(b"SELECT LENGTH('");
    chunk.resize(4 + 0xff_ffff, b'x');
    let mut first = Raw::login_as(router.port, &app).await?;
    first.send_bytes(&chunk[..12 << 20]).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The room a chunk needs is taken when its header comes.
    let mut second = Raw::login_as(router.port, &app).await?;
    second.send_bytes(&chunk[..4096]).await?;
    let errs = errors_until_close(&mut second).await?;
    assert_eq!(errs.first().map(|e| e.0), Some(1041), "{errs:?}");
    assert!(errs[0].1.contains("max_buffered"), "{errs:?}");
    first.send_bytes(&chunk[12 << 20..]).await?;
    // The 16 MiB chunk is followed by the last one, which ends the string.
    first.send(1, b"')").await?;
    let mut answer = Vec::new();
    while answer.len() < 4 {
        let p = first.read().await?.context("closed")?;
        answer.push(p.payload);
    }
    assert!(
        answer.iter().any(|p| p.ends_with(b"16777199")),
        "{answer:?}"
    );
    let one: Option<i64> = bystander.query_first("SELECT 1").await?;
    assert_eq!(one, Some(1));
    Ok(())
}

/// A TCP connection to `port` from the local address `from` (any of
/// 127.0.0.0/8 on Linux), which reads the greeting and then says nothing.
async fn silent_from(from: [u8; 4], port: u16) -> Result<tokio::net::TcpStream> {
    use tokio::io::AsyncReadExt;
    let mut s = silent_from_raw(from, port).await?;
    let mut greeting = [0u8; 4];
    s.read_exact(&mut greeting).await?;
    Ok(s)
}

#[tokio::test]
async fn logins_in_progress_never_lock_out_real_use() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.max_connections = 2;
    cfg.frontend.max_handshakes = 12;
    cfg.frontend.max_handshakes_per_address = 8;
    cfg.frontend.handshake_timeout = Duration::from_secs(30);
    let router = start_router(cfg).await?;
    // Eight silent sockets from another address fill its share...
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(silent_from([127, 0, 0, 2], router.port).await?);
    }
    // ...so a ninth from there waits for its turn, ungreeted...
    let mut ninth = silent_from_raw([127, 0, 0, 2], router.port).await?;
    let mut byte = [0u8; 1];
    let greeted = tokio::time::timeout(Duration::from_millis(500), ninth.read(&mut byte)).await;
    assert!(
        greeted.is_err(),
        "greeted over the per-address limit: {greeted:?}"
    );
    // ...while logins from elsewhere go on, and the silent sockets count
    // against neither max_connections nor their share: two real sessions
    // log in and work, and a third is over max_connections.
    let mut a = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let b = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    a.ping().await?;
    let err = Conn::new(opts(&topo, router.port, "APP", true)?)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1040"), "{err}");
    drop(b);
    // One silent socket goes: the ninth gets its turn and its greeting.
    drop(silent.pop());
    let greeted = tokio::time::timeout(Duration::from_secs(10), ninth.read(&mut byte)).await;
    assert!(matches!(greeted, Ok(Ok(1))), "{greeted:?}");
    // Once every socket is gone, no login is counted.
    drop((silent, ninth));
    let start = Instant::now();
    while router.shared.gate.in_progress() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "logins still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    c.ping().await?;
    Ok(())
}

/// A TCP connection to `port` from `from`, nothing read yet.
async fn silent_from_raw(from: [u8; 4], port: u16) -> Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind((std::net::Ipv4Addr::from(from), 0).into())?;
    Ok(sock.connect(([127, 0, 0, 1], port).into()).await?)
}

#[tokio::test]
async fn repeated_wrong_passwords_are_slowed_down() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.failed_login_threshold = 3;
    cfg.frontend.failed_login_delay = Duration::from_millis(200);
    cfg.frontend.failed_login_max_delay = Duration::from_millis(500);
    let router = start_router(cfg).await?;
    let attempt = |pass: &'static str| {
        let o = mysql_async::OptsBuilder::from_opts(opts(&topo, router.port, "APP", true).unwrap())
            .pass(Some(pass));
        async move {
            let start = Instant::now();
            let res = Conn::new(o).await;
            (res, start.elapsed())
        }
    };
    let delays = || router.shared.metrics.login_delays.get();
    for _ in 0..3 {
        let (res, _) = attempt("wrong").await;
        assert!(res.is_err());
    }
    assert_eq!(delays(), 0, "the first three failures are answered at once");
    // Then 200 ms, 400 ms, 500 ms (the cap), 500 ms...
    for wait in [200, 400, 500, 500] {
        let (res, took) = attempt("wrong").await;
        let err = res.unwrap_err();
        assert!(err.to_string().contains("1045"), "{err}");
        assert!(took >= Duration::from_millis(wait), "{took:?} < {wait} ms");
    }
    assert_eq!(delays(), 4);
    // The right password works, after the same delay...
    let app = topo.user("APP")?;
    let (res, took) = attempt(Box::leak(app.password.clone().into_boxed_str())).await;
    res?.disconnect().await?;
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert_eq!(delays(), 5);
    // ...and resets the count: the next login is not delayed.
    Conn::new(opts(&topo, router.port, "APP", true)?)
        .await?
        .disconnect()
        .await?;
    assert_eq!(delays(), 5);
    Ok(())
}

#[tokio::test]
async fn an_oversized_login_gets_its_err_in_sequence() -> Result<()> {
    let topo = Topology::get()?;
    let router = router(&topo).await?;
    use causeway_wire::handshake::HandshakeResponse;
    let (mut raw, _) = Raw::greet(router.port).await?;
    let resp = HandshakeResponse {
        capabilities: causeway_e2e::router::RAW_CAPS,
        max_packet_size: 1 << 24,
        charset: 255,
        username: vec![b'u'; 70_000].into(),
        auth_response: vec![0u8; 32].into(),
        auth_plugin_name: Some("caching_sha2_password".as_bytes().to_vec().into()),
        ..HandshakeResponse::default()
    };
    let mut out = bytes::BytesMut::new();
    resp.encode(&mut out)?;
    raw.send(1, &out).await?;
    let p = raw.read().await?.context("closed without an ERR")?;
    let e = ErrPacket::decode(&p.payload)?;
    assert_eq!(e.code, 1153);
    assert_eq!(p.seq, 2, "the ERR follows the client's packet 1");
    Ok(())
}
