//! sysbench (Debian's, linked with libmariadb, whose caching_sha2_password
//! plugin logs in through the router) runs oltp_read_write and
//! oltp_point_select through the sandbox's router, with server-side
//! prepared statements and with `--db-ps-mode=disable`, over plain TCP and
//! TLS, without a single error.

use std::path::Path;

use anyhow::{Context, Result};
use causeway_e2e::Topology;

/// sysbench on this test's tables.
fn sysbench(topo: &Topology, port: u16, dir: &Path, args: &[&str]) -> Result<String> {
    topo.sysbench(
        port,
        dir,
        &[
            &[
                "--mysql-db=causeway_sysbench",
                "--tables=2",
                "--table-size=2000",
            ][..],
            args,
        ]
        .concat(),
    )
}

#[test]
fn sysbench_runs_through_the_router() -> Result<()> {
    let topo = Topology::get()?;
    let router = topo.router_port()?;
    // sysbench's --mysql-ssl=on reads these three files from its working folder.
    let dir = std::env::temp_dir().join(format!("cw-sysbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let data = topo.primary_data();
    std::fs::copy(data.join("ca.pem"), dir.join("cacert.pem"))?;
    std::fs::copy(data.join("client-cert.pem"), dir.join("client-cert.pem"))?;
    std::fs::copy(data.join("client-key.pem"), dir.join("client-key.pem"))?;
    topo.mysql_batch(
        topo.primary_port,
        "APP",
        &[],
        "DROP DATABASE IF EXISTS causeway_sysbench; CREATE DATABASE causeway_sysbench",
    )?;
    sysbench(&topo, router, &dir, &["oltp_read_write", "prepare"])?;
    for (test, ps, ssl) in [
        ("oltp_read_write", "auto", "off"),
        ("oltp_read_write", "disable", "on"),
        ("oltp_point_select", "auto", "on"),
        ("oltp_point_select", "disable", "off"),
    ] {
        let out = sysbench(
            &topo,
            router,
            &dir,
            &[
                &format!("--db-ps-mode={ps}"),
                &format!("--mysql-ssl={ssl}"),
                "--threads=4",
                "--time=2",
                test,
                "run",
            ],
        )?;
        let what = format!("{test} ps={ps} ssl={ssl}");
        let count = |label: &str| -> Result<u64> {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("{what}: no {label} in\n{out}"))
        };
        let queries = count("queries:")?;
        assert!(queries > 100, "{what}: {queries} queries");
        // sysbench ignores deadlocks and lock wait timeouts (1213, 1205) by
        // default; oltp_read_write's random updates from 4 threads meet a
        // few directly against MySQL too. Anything beyond that is an error.
        let ignored = count("ignored errors:")?;
        if test == "oltp_read_write" {
            let trx = count("transactions:")?;
            assert!(
                ignored * 50 <= trx,
                "{what}: {ignored} ignored errors in {trx} transactions:\n{out}"
            );
        } else {
            assert_eq!(ignored, 0, "{what}:\n{out}");
        }
    }
    sysbench(&topo, router, &dir, &["oltp_read_write", "cleanup"])?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
