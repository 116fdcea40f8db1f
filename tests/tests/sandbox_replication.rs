//! The sandbox is a real GTID topology: a write on the primary, whose GTID
//! a real client library (node's mysql2) reads from `session_track_gtids=
//! OWN_GTID` in the OK packet, becomes visible in `@@gtid_executed` of both
//! replicas, with its row.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use causeway_e2e::{run_node_client, Topology};
use mysql_async::prelude::*;

#[tokio::test]
async fn write_gtid_from_ok_packet_reaches_both_replicas() -> Result<()> {
    let topo = Topology::get()?;
    ensure!(
        topo.replica_ports.len() == 2,
        "the sandbox has two replicas"
    );
    let app = topo.user("APP")?;
    let id = format!(
        "first-{}-{}",
        std::process::id(),
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos()
    );
    let out = run_node_client(
        "write_own_gtid.mjs",
        &[
            ("MYSQL_HOST", topo.host.clone()),
            ("MYSQL_PORT", topo.primary_port.to_string()),
            ("MYSQL_USER", app.user.clone()),
            ("MYSQL_PASSWORD", app.password.clone()),
            ("MYSQL_DATABASE", topo.var("CAUSEWAY_DATABASE")?.to_string()),
            ("ROW_ID", id.clone()),
        ],
    )?;
    ensure!(
        out["affectedRows"] == 1,
        "the INSERT affected {}",
        out["affectedRows"]
    );
    let gtids = out["gtids"].as_array().context("no gtids array")?;
    ensure!(gtids.len() == 1, "expected one tracked GTID, got {gtids:?}");
    let gtid = gtids[0]
        .as_str()
        .context("GTID is not a string")?
        .to_string();

    // The GTID is one transaction of the primary's own server UUID, and the
    // primary has it.
    let mut primary = topo.conn(topo.primary_port, "APP").await?;
    let uuid: String = primary
        .query_first("SELECT @@server_uuid")
        .await?
        .context("no server_uuid")?;
    let (src, gno) = gtid.rsplit_once(':').context("GTID without ':'")?;
    ensure!(src == uuid, "GTID {gtid} is not from the primary {uuid}");
    ensure!(gno.parse::<u64>()? >= 1, "bad gno in {gtid}");
    let on_primary: Option<i64> = primary
        .exec_first("SELECT GTID_SUBSET(?, @@global.gtid_executed)", (&gtid,))
        .await?;
    ensure!(
        on_primary == Some(1),
        "{gtid} not in the primary's gtid_executed"
    );
    primary.disconnect().await?;

    for &port in &topo.replica_ports {
        let mut replica = topo.conn(port, "APP").await?;
        let waited: Option<i64> = replica
            .exec_first("SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 30)", (&gtid,))
            .await?;
        ensure!(
            waited == Some(0),
            "replica :{port} did not apply {gtid} in 30 s"
        );
        let subset: Option<i64> = replica
            .exec_first("SELECT GTID_SUBSET(?, @@global.gtid_executed)", (&gtid,))
            .await?;
        ensure!(subset == Some(1), "{gtid} not in gtid_executed of :{port}");
        let n: Option<i64> = replica
            .exec_first("SELECT n FROM e2e_first WHERE id = ?", (&id,))
            .await?;
        ensure!(n == Some(1), "row {id} missing on replica :{port}");
        let read_only: Option<(i64, i64)> = replica
            .query_first("SELECT @@global.read_only, @@global.super_read_only")
            .await?;
        ensure!(read_only == Some((1, 1)), "replica :{port} is writable");
        replica.disconnect().await?;
    }
    Ok(())
}
