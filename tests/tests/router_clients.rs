//! Real client libraries and the mysql CLI through a router get the same
//! results as direct: a router in front of the primary alone where a test
//! writes and reads back (read-your-writes across the split is the causal
//! reads' job), the sandbox's router (read/write split) otherwise.

use anyhow::Result;
use causeway_e2e::router::{background_router, opts, run_python_client};
use causeway_e2e::{run_node_client, Topology};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row, Value};

/// Everything a connection sees for a fixed suite, as text, with `table`
/// replaced by `T` so two runs on different tables compare equal.
async fn transcript(conn: &mut Conn, table: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut log = |s: String| out.push(s.replace(table, "T"));
    conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
        .await?;
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(40), \
         d DECIMAL(10,3), f FLOAT, j JSON, b VARBINARY(64), ts TIMESTAMP(6) NULL, u BIGINT UNSIGNED)"
    ))
    .await?;
    for i in 0..40u64 {
        conn.exec_drop(
            format!("INSERT INTO {table} (v, d, f, j, b, ts, u) VALUES (?, ?, ?, ?, ?, ?, ?)"),
            (
                format!("row {i}"),
                format!("{i}.125"),
                i as f32 / 3.0,
                format!("{{\"k\": {i}}}"),
                vec![i as u8, 0, 255],
                format!("2024-01-01 00:00:{:02}.{:06}", i % 60, i * 7),
                u64::MAX - i,
            ),
        )
        .await?;
        log(format!(
            "insert: affected {} id {:?}",
            conn.affected_rows(),
            conn.last_insert_id()
        ));
    }
    // Text protocol, with metadata.
    let mut result = conn
        .query_iter(format!("SELECT * FROM {table} ORDER BY id"))
        .await?;
    let columns = result.columns();
    log(format!("text columns: {columns:?}"));
    let rows: Vec<Row> = result.collect().await?;
    for row in rows {
        log(format!("text row: {:?}", row.unwrap()));
    }
    // Binary protocol (prepared statements), with NULL and every type.
    let stmt = conn
        .prep(format!(
            "SELECT id, v, d, f, j, b, ts, u, NULL FROM {table} WHERE id > ? AND v LIKE ?"
        ))
        .await?;
    log(format!(
        "stmt params {} columns {:?}",
        stmt.num_params(),
        stmt.columns()
    ));
    let rows: Vec<Row> = conn.exec(&stmt, (5, "row%")).await?;
    for row in rows {
        log(format!("binary row: {:?}", row.unwrap()));
    }
    conn.close(stmt).await?;
    // Multi-statements: several results from one COM_QUERY.
    let mut multi = conn
        .query_iter(format!(
            "SELECT COUNT(*) FROM {table}; UPDATE {table} SET v = 'x' WHERE id < 3; SELECT 'a', 2"
        ))
        .await?;
    while !multi.is_empty() {
        let rows: Vec<Row> = multi.collect().await?;
        log(format!(
            "multi result: {:?} affected {}",
            rows.into_iter().map(Row::unwrap).collect::<Vec<_>>(),
            multi.affected_rows()
        ));
    }
    drop(multi);
    // Stored procedure: two result sets and a final OK (multi-results).
    conn.query_drop(format!("DROP PROCEDURE IF EXISTS {table}_p"))
        .await?;
    conn.query_drop(format!(
        "CREATE PROCEDURE {table}_p(IN n INT) BEGIN SELECT n AS first; SELECT id FROM {table} WHERE id <= n; END"
    ))
    .await?;
    let mut call = conn.exec_iter(format!("CALL {table}_p(?)"), (3,)).await?;
    while !call.is_empty() {
        let rows: Vec<Row> = call.collect().await?;
        log(format!(
            "call result: {:?}",
            rows.into_iter().map(Row::unwrap).collect::<Vec<_>>()
        ));
    }
    drop(call);
    // Errors: same code, state and message.
    for sql in [
        format!("SELECT * FROM {table}_missing"),
        "SELEKT 1".to_string(),
        format!("INSERT INTO {table} (id) VALUES (1)"),
    ] {
        let err = conn.query_drop(&sql).await.unwrap_err();
        log(format!("error: {err}"));
    }
    let err = conn.prep("SELECT nope FROM dual").await.unwrap_err();
    log(format!("prepare error: {err}"));
    // Warnings and info.
    conn.query_drop("SELECT CAST('1x' AS SIGNED)").await?;
    log(format!("warnings: {}", conn.get_warnings()));
    let warnings: Vec<(String, u32, String)> = conn.query("SHOW WARNINGS").await?;
    log(format!("show warnings: {warnings:?}"));
    conn.ping().await?;
    conn.reset().await?;
    let v: Option<Value> = conn.query_first("SELECT @@session.autocommit").await?;
    log(format!("after reset: {v:?}"));
    conn.query_drop(format!("DROP PROCEDURE {table}_p")).await?;
    conn.query_drop(format!("DROP TABLE {table}")).await?;
    Ok(out)
}

async fn compare_mysql_async(tls: bool) -> Result<()> {
    let topo = Topology::get()?;
    let passthrough = background_router(topo.router_config()?)?;
    let router = passthrough.port;
    let suffix = if tls { "tls" } else { "plain" };
    let mut direct = Conn::new(opts(&topo, topo.primary_port, "APP", tls)?).await?;
    let mut routed = Conn::new(opts(&topo, router, "APP", tls)?).await?;
    let a = transcript(&mut direct, &format!("rc_direct_{suffix}")).await?;
    let b = transcript(&mut routed, &format!("rc_routed_{suffix}")).await?;
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    // The server version is the backend's; the connection id is the router's.
    assert_eq!(direct.server_version(), routed.server_version());
    direct.disconnect().await?;
    routed.disconnect().await?;
    Ok(())
}

#[tokio::test]
async fn mysql_async_over_tls_sees_the_same_as_direct() -> Result<()> {
    compare_mysql_async(true).await
}

#[tokio::test]
async fn mysql_async_over_plain_tcp_sees_the_same_as_direct() -> Result<()> {
    compare_mysql_async(false).await
}

#[test]
fn node_mysql2_sees_the_same_as_direct() -> Result<()> {
    let topo = Topology::get()?;
    let passthrough = background_router(topo.router_config()?)?;
    let who = topo.user("APP")?;
    for tls in ["1", "0"] {
        let run = |port: u16, table: &str| {
            run_node_client(
                "router_suite.mjs",
                &topo.client_env(
                    port,
                    &who,
                    &[("MYSQL_TLS", tls.to_string()), ("TABLE", table.to_string())],
                ),
            )
        };
        let direct = run(topo.primary_port, &format!("rn_direct_{tls}"))?;
        let routed = run(passthrough.port, &format!("rn_routed_{tls}"))?;
        assert_eq!(direct, routed, "tls={tls}");
        assert_eq!(routed["encrypted"], serde_json::json!(tls == "1"));
        assert_eq!(routed["binary"]["rows"].as_array().map(Vec::len), Some(40));
        assert_eq!(routed["error"]["errno"], serde_json::json!(1146));
    }
    Ok(())
}

#[test]
fn python_pymysql_sees_the_same_as_direct() -> Result<()> {
    let topo = Topology::get()?;
    let passthrough = background_router(topo.router_config()?)?;
    let who = topo.user("APP")?;
    for tls in ["1", "0"] {
        let run = |port: u16, table: &str| {
            run_python_client(
                "router_suite.py",
                &topo.client_env(
                    port,
                    &who,
                    &[("MYSQL_TLS", tls.to_string()), ("TABLE", table.to_string())],
                ),
            )
        };
        let direct = run(topo.primary_port, &format!("rp_direct_{tls}"))?;
        let routed = run(passthrough.port, &format!("rp_routed_{tls}"))?;
        assert_eq!(direct, routed, "tls={tls}");
        assert_eq!(routed["encrypted"], serde_json::json!(tls == "1"));
        assert_eq!(routed["streamed_sum"], serde_json::json!(1_250_025_000u64));
    }
    Ok(())
}

#[test]
fn node_mysql2_reads_its_own_gtid_through_the_router() -> Result<()> {
    let topo = Topology::get()?;
    let who = topo.user("APP")?;
    let out = run_node_client(
        "write_own_gtid.mjs",
        &topo.client_env(
            topo.router_port()?,
            &who,
            &[("ROW_ID", format!("router-{}", std::process::id()))],
        ),
    )?;
    assert_eq!(out["affectedRows"], serde_json::json!(1));
    let gtids = out["gtids"].as_array().cloned().unwrap_or_default();
    assert_eq!(gtids.len(), 1, "{out}");
    Ok(())
}

#[test]
fn mysql_cli_sees_the_same_as_direct() -> Result<()> {
    let topo = Topology::get()?;
    let router = topo.router_port()?;
    let sql = "SELECT 1 AS a, 'two' AS b, NULL AS c, 4.5 AS d; \
               SELECT @@version_comment IS NOT NULL; \
               SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'mysql'; \
               SHOW VARIABLES LIKE 'max_allowed_packet'; \
               SELECT CONCAT('x', REPEAT('é', 3));";
    for mode in [
        "--ssl-mode=REQUIRED",
        "--ssl-mode=DISABLED",
        "--ssl-mode=PREFERRED",
    ] {
        let extra = [mode, "--get-server-public-key"];
        let direct = topo.mysql_batch(topo.primary_port, "APP", &extra, sql)?;
        let routed = topo.mysql_batch(router, "APP", &extra, sql)?;
        assert_eq!(direct, routed, "{mode}");
    }
    // TLS really is on with REQUIRED (the router's leg), and off when disabled.
    let status = topo.mysql_cli(&[
        "--no-defaults",
        "-h127.0.0.1",
        "-P",
        &router.to_string(),
        &format!("-u{}", topo.user("APP")?.user),
        &format!("-p{}", topo.user("APP")?.password),
        "--commands",
        "--ssl-mode=REQUIRED",
        "-e",
        "status",
    ])?;
    let text = String::from_utf8_lossy(&status.stdout);
    // COM_STATISTICS answers the "Uptime" line; the id is the router's.
    assert!(text.contains("Cipher in use is TLS"), "{text}");
    assert!(text.contains("Uptime:"), "{text}");
    // The router presents the configured certificate (the primary's, signed
    // by the sandbox CA), so a verifying client accepts it.
    let ca = format!("--ssl-ca={}", topo.primary_data().join("ca.pem").display());
    let out = topo.mysql_batch(router, "APP", &["--ssl-mode=VERIFY_CA", &ca], "SELECT 1")?;
    assert_eq!(out, "1\n1\n");
    // An error reads the same.
    let fail = |port: u16| -> Result<String> {
        let out = topo.mysql_cli(&[
            "--no-defaults",
            "-h127.0.0.1",
            "-P",
            &port.to_string(),
            &format!("-u{}", topo.user("APP")?.user),
            &format!("-p{}", topo.user("APP")?.password),
            "causeway",
            "-e",
            "SELECT * FROM no_such_table_here",
        ])?;
        assert!(!out.status.success());
        Ok(String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("ERROR"))
            .collect())
    };
    assert_eq!(fail(topo.primary_port)?, fail(router)?);
    Ok(())
}

#[tokio::test]
async fn rows_larger_than_16_mib_pass_both_ways() -> Result<()> {
    let topo = Topology::get()?;
    let passthrough = background_router(topo.router_config()?)?;
    let mut admin = topo.conn(topo.primary_port, "ADMIN").await?;
    admin
        .query_drop("SET GLOBAL max_allowed_packet = 67108864")
        .await?;
    let router = passthrough.port;
    let mut conn = Conn::new(opts(&topo, router, "APP", true)?).await?;
    conn.query_drop("DROP TABLE IF EXISTS router_big").await?;
    conn.query_drop("CREATE TABLE router_big (id INT PRIMARY KEY, b LONGBLOB)")
        .await?;
    // 20 MiB up (client packets split into 16 MiB chunks) and down.
    let big: Vec<u8> = (0..20 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    conn.exec_drop("INSERT INTO router_big VALUES (1, ?)", (big.clone(),))
        .await?;
    let back: Option<Vec<u8>> = conn
        .exec_first("SELECT b FROM router_big WHERE id = ?", (1,))
        .await?;
    assert!(
        back.as_deref() == Some(&big[..]),
        "binary protocol round trip"
    );
    let back: Option<Vec<u8>> = conn.query_first("SELECT b FROM router_big").await?;
    assert!(
        back.as_deref() == Some(&big[..]),
        "text protocol round trip"
    );
    let len: Option<u64> = conn
        .query_first("SELECT LENGTH(REPEAT('a', 17000000))")
        .await?;
    assert_eq!(len, Some(17_000_000));
    conn.query_drop("DROP TABLE router_big").await?;
    conn.disconnect().await?;
    Ok(())
}

/// Peak resident memory of a process, from /proc.
fn peak_rss_kib(pid: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
}

#[tokio::test]
async fn a_1_gib_result_streams_through_in_bounded_memory() -> Result<()> {
    let topo = Topology::get()?;
    let pid_file = std::path::Path::new(topo.var("CAUSEWAY_SANDBOX_DIR")?).join("pids/router.pid");
    let pid = std::fs::read_to_string(pid_file)?.trim().to_string();
    let mut conn = Conn::new(opts(&topo, topo.router_port()?, "APP", false)?).await?;
    conn.query_drop("SET SESSION cte_max_recursion_depth = 2000000")
        .await?;
    // 1,048,576 rows of 1 KiB: 1 GiB of row data, read row by row.
    let mut result = conn
        .query_iter(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1048576) \
             SELECT n, REPEAT('x', 1024) FROM s",
        )
        .await?;
    let mut rows = 0u64;
    let mut bytes = 0u64;
    result
        .for_each(|row: Row| {
            let (n, x): (u64, Vec<u8>) = mysql_async::from_row(row);
            rows += 1;
            bytes += x.len() as u64;
            assert_eq!(n, rows);
        })
        .await?;
    drop(result);
    assert_eq!(rows, 1 << 20);
    assert_eq!(bytes, 1 << 30);
    // The router never held more than a few MiB of it (its peak includes
    // every earlier test's sessions, e.g. the 20 MiB rows).
    let peak = peak_rss_kib(&pid)?;
    assert!(peak < 256 * 1024, "router peak RSS {peak} KiB");
    Ok(())
}
