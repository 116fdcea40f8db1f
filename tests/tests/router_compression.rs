//! The compressed protocol (issue 15): clients that ask for zlib or zstd get
//! it from the router as from MySQL 9.7 and see the same results as direct
//! (the mysql CLI, mysql_async, node mysql2); backends are compressed when
//! `backend.compression` says so; a client compressing without having
//! negotiated it, or sending broken frames, gets an ERR and a close, never a
//! hang.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use causeway_e2e::router::{background_router, opts, Raw, RAW_CAPS};
use causeway_e2e::{run_node_client, Topology};
use causeway_router::config::{BackendCompression, FullAuth};
use causeway_wire::compress::{Algorithm, CompressedStream, MAX_FRAME};
use causeway_wire::packet::encode_packet;
use causeway_wire::{CapabilityFlags as C, ErrPacket, PacketCodec};
use mysql_async::prelude::*;
use mysql_async::{Compression, Conn, OptsBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A guard against hangs, not a speed assertion.
const WAIT: Duration = Duration::from_secs(30);

/// A router in front of the primary; hand-driven logins take the
/// caching_sha2 fast path.
fn config(topo: &Topology) -> Result<causeway_router::config::Config> {
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    Ok(cfg)
}

/// A hand-driven client on the compressed protocol.
struct RawCompressed {
    stream: TcpStream,
    raw: BytesMut,
    plain: BytesMut,
    codec: CompressedStream,
    packets: PacketCodec,
}

impl RawCompressed {
    /// Logs in asking for `flags` (and zstd `level`), then speaks `algorithm`.
    async fn login(topo: &Topology, port: u16, flags: C, level: Option<u8>) -> Result<Self> {
        use causeway_wire::auth::caching_sha2_scramble;
        use causeway_wire::handshake::{AuthSwitchRequest, HandshakeResponse};
        let who = topo.user("APP")?;
        let (mut raw, g) = Raw::greet(port).await?;
        let caps = (RAW_CAPS | flags) & g.capabilities;
        let algorithm = Algorithm::negotiate(g.capabilities, caps, level)
            .context("the server offers no compression")?;
        let resp = HandshakeResponse {
            capabilities: caps,
            max_packet_size: 1 << 24,
            charset: 255,
            username: who.user.as_bytes().to_vec().into(),
            auth_response: caching_sha2_scramble(who.password.as_bytes(), &g.auth_plugin_data)
                .into(),
            database: Some(bytes::Bytes::from_static(b"causeway")),
            auth_plugin_name: Some(bytes::Bytes::from_static(b"caching_sha2_password")),
            zstd_level: level,
            ..HandshakeResponse::default()
        };
        let mut out = BytesMut::new();
        resp.encode(&mut out)?;
        raw.send(1, &out).await?;
        loop {
            let p = raw.read().await?.context("closed during login")?;
            match p.payload.first() {
                Some(0x00) => break,
                Some(0xfe) => {
                    let sw = AuthSwitchRequest::decode(&p.payload)?;
                    let answer = caching_sha2_scramble(who.password.as_bytes(), sw.nonce());
                    raw.send(p.seq + 1, &answer).await?;
                }
                Some(0x01) => {}
                _ => bail!("login failed: {:?}", p.payload.to_vec()),
            }
        }
        let (stream, raw) = raw.into_parts();
        Ok(RawCompressed {
            stream,
            raw,
            plain: BytesMut::new(),
            codec: CompressedStream::new(algorithm, MAX_FRAME),
            packets: PacketCodec::new(usize::MAX),
        })
    }

    /// Sends wire bytes as they are (frames built by the caller).
    async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Sends a command in frames; returns how many wire bytes that took.
    async fn command(&mut self, payload: &[u8]) -> Result<usize> {
        self.codec.reset();
        let mut plain = BytesMut::new();
        encode_packet(0, payload, &mut plain);
        let mut wire = BytesMut::new();
        self.codec.encode(&plain, &mut wire);
        self.send_raw(&wire).await?;
        Ok(wire.len())
    }

    /// The next packet's payload (`None`: closed), and the wire bytes read.
    async fn read(&mut self) -> Result<Option<(bytes::Bytes, usize)>> {
        let mut wire = 0;
        loop {
            if let Some(p) = self.packets.decode(&mut self.plain)? {
                return Ok(Some((p.payload, wire)));
            }
            if self.codec.decode(&mut self.raw, &mut self.plain)? {
                continue;
            }
            let n = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.raw))
                .await
                .context("no frame in time")??;
            if n == 0 {
                return Ok(None);
            }
            wire += n;
        }
    }
}

fn is_err(p: &[u8]) -> bool {
    p.first() == Some(&0xff)
}

#[tokio::test]
async fn a_raw_client_gets_compressed_frames_from_the_router_as_from_mysql() -> Result<()> {
    let topo = Topology::get()?;
    let router = background_router(config(&topo)?)?;
    let zstd = C::ZSTD_COMPRESSION_ALGORITHM;
    for (flags, level) in [
        (C::COMPRESS, None),
        (zstd, Some(7)),
        (C::COMPRESS | zstd, Some(7)),
    ] {
        for port in [topo.primary_port, router.port] {
            let what = format!("{flags:?} level {level:?} port {port}");
            let mut c = RawCompressed::login(&topo, port, flags, level)
                .await
                .context(what.clone())?;
            c.command(b"\x03SELECT REPEAT('abc', 200000)").await?;
            let mut wire = 0;
            let mut rows = 0;
            while let Some((p, n)) = c.read().await? {
                wire += n;
                if p.len() > 500_000 {
                    rows += 1;
                }
                if p.first() == Some(&0xfe) && p.len() < 16 && rows == 1 {
                    break;
                }
                assert!(!is_err(&p), "{what}: {p:?}");
            }
            assert_eq!(rows, 1, "{what}");
            assert!(wire < 100_000, "{what}: 600 kB of text took {wire} bytes");
            c.command(b"\x03SHOW SESSION STATUS LIKE 'Compression_algorithm'")
                .await?;
            let mut seen = Vec::new();
            while let Some((p, _)) = c.read().await? {
                seen.push(String::from_utf8_lossy(&p).into_owned());
                if p.first() == Some(&0xfe) && p.len() < 16 && seen.len() > 2 {
                    break;
                }
            }
            if port == topo.primary_port {
                let expected = if flags.contains(C::COMPRESS) {
                    "zlib"
                } else {
                    "zstd"
                };
                assert!(
                    seen.iter().any(|s| s.contains(expected)),
                    "{what}: {seen:?}"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_compressed_frame_without_negotiation_gets_an_err_and_a_close() -> Result<()> {
    let topo = Topology::get()?;
    let router = background_router(config(&topo)?)?;
    let who = topo.user("APP")?;
    for compressible in [false, true] {
        // What a client that compresses regardless sends (as MySQL frames it).
        let query = if compressible {
            format!("\x03SELECT '{}'", "x".repeat(300))
        } else {
            "\x03SELECT 1".to_string()
        };
        let mut plain = BytesMut::new();
        encode_packet(0, query.as_bytes(), &mut plain);
        let mut frame = BytesMut::new();
        CompressedStream::new(Algorithm::Zlib, MAX_FRAME).encode(&plain, &mut frame);
        // MySQL itself, for the record (it may answer and keep the
        // connection: a client waiting for a compressed answer then hangs).
        let raw = Raw::login_with(
            topo.primary_port,
            &who.user,
            &who.password,
            "caching_sha2_password",
            RAW_CAPS,
        )
        .await?;
        let (mut stream, _) = raw.into_parts();
        stream.write_all(&frame).await?;
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut got)).await;
        eprintln!(
            "mysql, compressible={compressible}: closed {:?} {got:?}",
            read.is_ok()
        );

        let raw = Raw::login_with(
            router.port,
            &who.user,
            &who.password,
            "caching_sha2_password",
            RAW_CAPS,
        )
        .await?;
        let (mut stream, _) = raw.into_parts();
        stream.write_all(&frame).await?;
        let mut got = Vec::new();
        let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut got)).await;
        assert!(
            closed.is_ok(),
            "compressible={compressible}: no close (a hang)"
        );
        let mut buf = BytesMut::from(&got[..]);
        let p = PacketCodec::new(usize::MAX)
            .decode(&mut buf)?
            .context("no ERR")?;
        let err = ErrPacket::decode(&p.payload)?;
        assert_eq!(err.code, 1047, "{err:?}");
    }
    Ok(())
}

#[tokio::test]
async fn broken_frames_get_an_err_and_a_close_and_others_carry_on() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = config(&topo)?;
    cfg.frontend.max_packet_size = 1 << 20;
    let router = background_router(cfg)?;
    let mut bystander = Conn::new(opts(&topo, router.port, "APP", false)?).await?;
    let zlib_of = |data: &[u8]| {
        let mut wire = BytesMut::new();
        CompressedStream::new(Algorithm::Zlib, MAX_FRAME).encode(data, &mut wire);
        wire
    };
    let mut query = BytesMut::new();
    encode_packet(
        0,
        format!("\x03SELECT '{}'", "y".repeat(500)).as_bytes(),
        &mut query,
    );
    let good = zlib_of(&query);
    let header = |len: usize, seq: u8, declared: usize| {
        let mut h = (len as u32).to_le_bytes()[..3].to_vec();
        h.push(seq);
        h.extend_from_slice(&(declared as u32).to_le_bytes()[..3]);
        h
    };
    let mut lie = good.clone();
    lie[4] = lie[4].wrapping_add(1);
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let bomb = zlib_of(&vec![0u8; 8 << 20]).to_vec();
    let mut out_of_order = good.clone();
    out_of_order[3] = 5;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("uncompressed length lie", lie.to_vec(), 1157),
        ("corrupt data", corrupt.to_vec(), 1157),
        ("bomb past max_packet_size", bomb, 1153),
        (
            "header announcing 16 MiB",
            header(0xff_ffff, 0, 0xff_ffff),
            1153,
        ),
        ("out of order", out_of_order.to_vec(), 1156),
    ];
    for (what, bytes, code) in cases {
        let mut c = RawCompressed::login(&topo, router.port, C::COMPRESS, None).await?;
        c.send_raw(&bytes).await?;
        let mut errs = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, c.read()).await.context(what)? {
                Ok(Some((p, _))) if is_err(&p) => errs.push(ErrPacket::decode(&p)?.code),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => bail!("{what}: {e}"),
            }
        }
        assert_eq!(errs, vec![code], "{what}");
        let one: Option<i64> = bystander.query_first("SELECT 1").await?;
        assert_eq!(one, Some(1), "{what}");
    }
    Ok(())
}

/// Everything a compressed mysql_async connection sees, as text.
async fn mysql_async_transcript(conn: &mut Conn, table: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, b LONGBLOB)"
    ))
    .await?;
    // Past one 16 MiB packet each way, and small ones.
    let big: Vec<u8> = (0..(17 << 20))
        .map(|i: usize| (i % 97) as u8 + b' ')
        .collect();
    for (id, len) in [(1, 10), (2, 100_000), (3, 5 << 20), (4, big.len())] {
        conn.exec_drop(
            format!("INSERT INTO {table} VALUES (?, ?)"),
            (id, &big[..len]),
        )
        .await?;
        out.push(format!("insert {id}: {}", conn.affected_rows()));
    }
    let rows: Vec<(i32, Vec<u8>)> = conn
        .query(format!("SELECT id, b FROM {table} ORDER BY id"))
        .await?;
    for (id, b) in &rows {
        out.push(format!(
            "text {id}: {} {}",
            b.len(),
            b.as_slice() == &big[..b.len()]
        ));
    }
    let rows: Vec<(i32, Vec<u8>)> = conn
        .exec(
            format!("SELECT id, b FROM {table} WHERE id > ? ORDER BY id"),
            (1,),
        )
        .await?;
    for (id, b) in &rows {
        out.push(format!(
            "binary {id}: {} {}",
            b.len(),
            b.as_slice() == &big[..b.len()]
        ));
    }
    let many: Vec<(i64, String)> = conn
        .query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 999) \
                SELECT i, REPEAT('z', i % 50) FROM n",
        )
        .await?;
    out.push(format!("many: {} {:?}", many.len(), many.last()));
    let e = conn
        .query_drop("SELECT * FROM no_such_table_here")
        .await
        .unwrap_err();
    out.push(format!("error: {e}"));
    let multi: Vec<i64> = conn.query("SELECT 1; SELECT 2").await.unwrap_or_default();
    out.push(format!("multi: {multi:?}"));
    conn.reset().await?;
    let after: Option<i64> = conn.query_first("SELECT 41 + 1").await?;
    out.push(format!("after reset: {after:?}"));
    conn.change_user(mysql_async::ChangeUserOpts::default())
        .await?;
    let after: Option<String> = conn.query_first("SELECT CURRENT_USER()").await?;
    out.push(format!("after change user: {}", after.is_some()));
    conn.query_drop(format!("DROP TABLE {table}")).await?;
    Ok(out)
}

#[tokio::test]
async fn mysql_async_compressed_sees_the_same_as_direct() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = config(&topo)?;
    cfg.frontend.max_packet_size = 64 << 20;
    let plain = background_router(cfg.clone())?;
    cfg.backend.compression = BackendCompression::Zstd;
    cfg.backend.zstd_level = 5;
    let compressed_backends = background_router(cfg)?;
    let connect = |port: u16| -> Result<mysql_async::Opts> {
        Ok(OptsBuilder::from_opts(opts(&topo, port, "APP", false)?)
            .compression(Compression::fast())
            .into())
    };
    let mut direct = Conn::new(connect(topo.primary_port)?).await?;
    let expected = mysql_async_transcript(&mut direct, "rc_direct").await?;
    assert!(
        expected.iter().any(|l| l == "binary 4: 17825792 true"),
        "{expected:?}"
    );
    for port in [plain.port, compressed_backends.port] {
        let mut routed = Conn::new(connect(port)?).await?;
        let got = mysql_async_transcript(&mut routed, &format!("rc_routed_{port}")).await?;
        assert_eq!(got, expected, "port {port}");
    }
    // What the backend session says: compressed only where configured.
    for (port, expected) in [
        (plain.port, ("OFF", "")),
        (compressed_backends.port, ("ON", "zstd")),
    ] {
        let mut conn = Conn::new(opts(&topo, port, "APP", false)?).await?;
        let status: Vec<(String, String)> = conn
            .query("SHOW SESSION STATUS LIKE 'Compression%'")
            .await?;
        let get = |k: &str| status.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("Compression").as_deref(),
            Some(expected.0),
            "{status:?}"
        );
        assert_eq!(
            get("Compression_algorithm").as_deref(),
            Some(expected.1),
            "{status:?}"
        );
        if expected.1 == "zstd" {
            assert_eq!(get("Compression_level").as_deref(), Some("5"), "{status:?}");
        }
    }
    Ok(())
}

#[test]
fn mysql_cli_compressed_and_local_infile_as_direct() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = config(&topo)?;
    let plain = background_router(cfg.clone())?;
    cfg.backend.compression = BackendCompression::Zlib;
    let compressed_backends = background_router(cfg)?;
    topo.mysql_batch(
        topo.primary_port,
        "ADMIN",
        &[],
        "SET GLOBAL local_infile = 1",
    )?;
    let file = std::env::temp_dir().join(format!("cw-cinfile-{}.csv", std::process::id()));
    let mut text = String::new();
    for i in 0..50_000 {
        text.push_str(&format!("{i},value number {i}\n"));
    }
    std::fs::write(&file, &text)?;
    let run = |port: u16, table: &str, extra: &[&str]| {
        let sql = format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(40)); \
             LOAD DATA LOCAL INFILE '{}' INTO TABLE {table} FIELDS TERMINATED BY ','; \
             SELECT COUNT(*), SUM(id), MAX(v) FROM {table}; \
             SELECT SUM(CRC32(v)), SHA2(MAX(v), 256) FROM {table}; \
             SELECT id, v FROM {table} WHERE id % 997 = 0 ORDER BY id; \
             SELECT LENGTH(REPEAT('q', 3000000)), REPEAT('ab', 40000); DROP TABLE {table};",
            file.display()
        );
        let mut args = vec!["--local-infile=1"];
        args.extend_from_slice(extra);
        topo.mysql_batch(port, "APP", &args, &sql)
    };
    let variants: [&[&str]; 3] = [
        &["--compress"],
        &[
            "--compression-algorithms=zstd",
            "--zstd-compression-level=7",
        ],
        &["--compression-algorithms=zlib,zstd"],
    ];
    for extra in variants {
        let direct = run(topo.primary_port, "rcinfile_direct", extra)?;
        assert!(direct.contains("50000\t1249975000"), "{direct}");
        for port in [plain.port, compressed_backends.port] {
            let routed = run(port, &format!("rcinfile_{port}"), extra)?;
            assert_eq!(direct, routed, "{extra:?} port {port}");
        }
    }
    std::fs::remove_file(&file)?;
    Ok(())
}

#[test]
fn node_mysql2_compressed_sees_the_same_as_direct() -> Result<()> {
    // Issue 15: a connector that compresses once it asked for compression,
    // negotiated or not, hung through a router that did not offer it.
    let topo = Topology::get()?;
    let plain = background_router(config(&topo)?)?;
    let who = topo.user("APP")?;
    for tls in ["0", "1"] {
        let run = |port: u16, table: &str| {
            run_node_client(
                "router_suite.mjs",
                &topo.client_env(
                    port,
                    &who,
                    &[
                        ("MYSQL_TLS", tls.to_string()),
                        ("MYSQL_COMPRESS", "1".to_string()),
                        ("TABLE", table.to_string()),
                    ],
                ),
            )
        };
        let direct = run(topo.primary_port, &format!("rnc_direct_{tls}"))?;
        let routed = run(plain.port, &format!("rnc_routed_{tls}"))?;
        assert_eq!(direct, routed, "tls={tls}");
        assert_eq!(routed["encrypted"], serde_json::json!(tls == "1"));
        assert_eq!(routed["binary"]["rows"].as_array().map(Vec::len), Some(40));
    }
    Ok(())
}

/// The ERR code a login asking for zstd at `level` gets (`None`: logged in).
async fn zstd_login_err(topo: &Topology, port: u16, level: u8) -> Result<Option<u16>> {
    match RawCompressed::login(topo, port, C::ZSTD_COMPRESSION_ALGORITHM, Some(level)).await {
        Ok(_) => Ok(None),
        Err(e) => {
            let text = format!("{e:#}");
            let Some(at) = text.find("[255, ") else {
                bail!("{text}");
            };
            let rest: Vec<u16> = text[at + 6..]
                .split(", ")
                .take(2)
                .filter_map(|n| n.trim_end_matches(']').parse().ok())
                .collect();
            Ok(Some(rest[0] | rest[1] << 8))
        }
    }
}

#[tokio::test]
async fn zstd_levels_are_checked_as_mysql_checks_them() -> Result<()> {
    let topo = Topology::get()?;
    let router = background_router(config(&topo)?)?;
    for level in [0u8, 1, 22, 23] {
        let direct = zstd_login_err(&topo, topo.primary_port, level).await?;
        let routed = zstd_login_err(&topo, router.port, level).await?;
        assert_eq!(direct, routed, "level {level}");
        let refused = !(1..=22).contains(&level);
        assert_eq!(direct.is_some(), refused, "level {level}: {direct:?}");
    }
    Ok(())
}
