//! Commands through the router: the protocol's less common commands answer
//! exactly as direct (byte for byte), KILL addressed by the router's
//! connection id, LOAD DATA LOCAL INFILE.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use causeway_e2e::router::{background_router, opts, start_router, Raw};
use causeway_e2e::Topology;
use causeway_router::config::FullAuth;
use mysql_async::prelude::*;
use mysql_async::Conn;

fn execute(stmt: u32, cursor: bool, params: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = BytesMut::new();
    p.put_u8(0x17);
    p.put_u32_le(stmt);
    p.put_u8(u8::from(cursor));
    p.put_u32_le(1);
    if !params.is_empty() {
        p.put_bytes(0, params.len().div_ceil(8));
        p.put_u8(1);
        for (t, _) in params {
            p.put_u8(*t);
            p.put_u8(0);
        }
        for (_, v) in params {
            p.put_slice(v);
        }
    }
    p.to_vec()
}

fn with_id(command: u8, stmt: u32, tail: &[u8]) -> Vec<u8> {
    let mut p = vec![command];
    p.extend_from_slice(&stmt.to_le_bytes());
    p.extend_from_slice(tail);
    p
}

/// Every reply of a fixed command sequence on one raw connection.
async fn replies(raw: &mut Raw) -> Result<Vec<Vec<Bytes>>> {
    let mut out = Vec::new();
    let q = |sql: &str| {
        let mut p = vec![0x03];
        p.extend_from_slice(sql.as_bytes());
        p
    };
    let script: Vec<Vec<u8>> = vec![
        b"\x02causeway".to_vec(),
        q("CREATE TEMPORARY TABLE rcmd (a INT PRIMARY KEY, b VARCHAR(10))"),
        q("INSERT INTO rcmd VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e')"),
        b"\x04rcmd\x00".to_vec(),
        b"\x1b\x01\x00".to_vec(),
        q("SELECT 1; SELECT 2"),
        b"\x1b\x00\x00".to_vec(),
        q("SELECT 1; SELECT 2"),
        b"\x16SELECT a, b FROM rcmd WHERE a > ?".to_vec(),
        // A read-only cursor, fetched two rows at a time.
        execute(1, true, &[(0x08, &0i64.to_le_bytes())]),
        with_id(0x1c, 1, &2u32.to_le_bytes()),
        with_id(0x1c, 1, &2u32.to_le_bytes()),
        with_id(0x1c, 1, &2u32.to_le_bytes()),
        with_id(0x1a, 1, &[]),
        // Long data, then an execute that uses it.
        b"\x16SELECT CONCAT(?, '!')".to_vec(),
        with_id(0x18, 2, b"\x00\x00hello "),
        with_id(0x18, 2, b"\x00\x00world"),
        execute(2, false, &[(0xfd, &[])]),
        with_id(0x19, 2, &[]),
        q("CALL sys.ps_is_account_enabled('localhost', 'root')"),
        b"\x1f".to_vec(),
        q("SELECT @@session.sql_mode IS NOT NULL"),
        b"\x0e".to_vec(),
        q("SELECT * FROM no_such_table_rcmd"),
    ];
    for (i, payload) in script.into_iter().enumerate() {
        let reply = raw
            .command(&payload)
            .await
            .with_context(|| format!("command #{i}: {payload:?}"))?;
        if std::env::var_os("RCMD_DEBUG").is_some() {
            eprintln!("#{i}: {reply:?}");
        }
        out.push(reply);
    }
    // COM_STATISTICS: the counters move; the shape does not.
    let stats = raw.command(b"\x09").await?;
    assert!(stats[0].starts_with(b"Uptime: "), "{stats:?}");
    Ok(out)
}

#[tokio::test]
async fn rare_commands_answer_byte_for_byte_as_direct() -> Result<()> {
    let topo = Topology::get()?;
    let mut cfg = topo.router_config()?;
    cfg.frontend.caching_sha2_full_auth = FullAuth::Never;
    let router = start_router(cfg).await?;
    let app = topo.user("APP")?;
    // A TLS login first, so the server's cache lets the raw fast path in.
    Conn::new(opts(&topo, topo.primary_port, "APP", true)?)
        .await?
        .disconnect()
        .await?;
    let mut direct = Raw::login_as(topo.primary_port, &app).await?;
    let mut routed = Raw::login_as(router.port, &app).await?;
    assert_eq!(direct.caps, routed.caps);
    let a = replies(&mut direct).await?;
    let b = replies(&mut routed).await?;
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "command #{i}");
    }
    // The cursor really was used: three fetches of two rows, the last one short.
    assert_eq!(b[10].len(), 3, "{:?}", b[10]);
    Ok(())
}

#[tokio::test]
async fn kill_uses_the_router_s_connection_ids() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.router_config()?).await?;
    let mut victim = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let mut killer = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let id = victim.id();
    let seen: Option<u32> = victim.query_first("SELECT CONNECTION_ID()").await?;
    assert_eq!(seen, Some(id), "CONNECTION_ID() is the id KILL takes");
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r: Option<i64> = victim.query_first("SELECT SLEEP(30)").await?;
        anyhow::Ok((r, victim))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    killer.query_drop(format!("KILL QUERY {id}")).await?;
    let (slept, mut victim) = sleeper.await??;
    assert_eq!(slept, Some(1), "SLEEP reports the interruption");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session survives KILL QUERY...
    victim.ping().await?;
    // ...not KILL CONNECTION.
    killer.query_drop(format!("KILL CONNECTION {id}")).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(victim.query_drop("SELECT 1").await.is_err());
    // Unknown ids read as MySQL's.
    let err = killer.query_drop("KILL QUERY 987654").await.unwrap_err();
    assert!(
        err.to_string().contains("1094") && err.to_string().contains("Unknown thread id: 987654"),
        "{err}"
    );
    // Another user's session cannot be killed.
    let mut admin = Conn::new(opts(&topo, router.port, "ADMIN", true)?).await?;
    let err = killer
        .query_drop(format!("KILL {}", admin.id()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1095"), "{err}");
    admin.ping().await?;
    // COM_PROCESS_KILL (no client library here sends it; a raw session does).
    let app = topo.user("APP")?;
    let mut raw_router = topo.router_config()?;
    raw_router.frontend.caching_sha2_full_auth = FullAuth::Never;
    let raw_router = start_router(raw_router).await?;
    let mut target = Conn::new(opts(&topo, raw_router.port, "APP", true)?).await?;
    let mut raw = Raw::login_as(raw_router.port, &app).await?;
    // A COM_PROCESS_KILL too short to hold an id: ERR, and the session goes on.
    let reply = raw.command(&[0x0c, 1, 2]).await?;
    assert_eq!(reply[0][0], 0xff, "ERR: {reply:?}");
    let mut kill = vec![0x0c];
    kill.extend_from_slice(&target.id().to_le_bytes());
    let reply = raw.command(&kill).await?;
    assert_eq!(reply[0][0], 0x00, "OK: {reply:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(target.query_drop("SELECT 1").await.is_err());
    Ok(())
}

#[tokio::test]
async fn kill_with_comments_is_translated_and_untranslatable_kill_refused() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.router_config()?).await?;
    let mut victim = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let mut killer = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    let mut bystander = Conn::new(opts(&topo, router.port, "APP", true)?).await?;
    // Comments around the KILL do not stop the translation to the backend id.
    killer
        .query_drop(format!("/*x*/ KILL {} -- why", victim.id()))
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(victim.query_drop("SELECT 1").await.is_err());
    // A KILL the router cannot translate is refused, never forwarded with
    // the router's number standing for a backend thread.
    let err = killer.query_drop("SELECT 1; KILL 5").await.unwrap_err();
    assert!(err.to_string().contains("1235"), "{err}");
    let err = killer.prep("KILL ?").await.unwrap_err();
    assert!(err.to_string().contains("1235"), "{err}");
    // The word in a string literal is just data.
    let s: Option<String> = killer.query_first("SELECT 'KILL 5'").await?;
    assert_eq!(s.as_deref(), Some("KILL 5"));
    bystander.ping().await?;
    killer.ping().await?;
    Ok(())
}

#[test]
fn load_data_local_infile_as_direct() -> Result<()> {
    let topo = Topology::get()?;
    let passthrough = background_router(topo.router_config()?)?;
    let router = passthrough.port;
    let admin = topo.user("ADMIN")?;
    topo.mysql_batch(
        topo.primary_port,
        "ADMIN",
        &[],
        "SET GLOBAL local_infile = 1",
    )
    .map_err(|e| anyhow::anyhow!("{e} ({})", admin.user))?;
    let file = std::env::temp_dir().join(format!("cw-infile-{}.csv", std::process::id()));
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("{i},value number {i}\n"));
    }
    std::fs::write(&file, &text)?;
    let run = |port: u16, table: &str| {
        let sql = format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(40)); \
             LOAD DATA LOCAL INFILE '{}' INTO TABLE {table} FIELDS TERMINATED BY ','; \
             SELECT COUNT(*), SUM(id), MAX(v) FROM {table}; DROP TABLE {table};",
            file.display()
        );
        topo.mysql_batch(port, "APP", &["--local-infile=1"], &sql)
    };
    let direct = run(topo.primary_port, "rinfile_direct")?;
    let routed = run(router, "rinfile_routed")?;
    std::fs::remove_file(&file)?;
    assert_eq!(direct, routed);
    assert!(routed.contains("20000\t199990000"), "{routed}");
    Ok(())
}
