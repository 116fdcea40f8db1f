//! The demo's watcher: subscribes to every reader of the sandbox, writes a
//! row through the router with a real client (node's mysql2, which reads the
//! GTID from the OK packet), and reports when each server's reader announced
//! that GTID as visible, and what each server then returns for the row.
//! Run by `scripts/demo`.

#![allow(clippy::print_stdout)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use causeway_e2e::reader::NativeSubscriber;
use causeway_e2e::{run_node_client, Topology};
use causeway_gtid::delta::binary::Message;
use causeway_gtid::{Gtid, GtidSet};
use mysql_async::prelude::*;

#[tokio::main]
async fn main() -> Result<()> {
    let topo = Topology::get()?;
    let names = ["primary", "replica1", "replica2"];
    let addrs = topo.reader_addrs()?;
    let token = topo.reader_token()?;
    let mut subs = Vec::new();
    for addr in &addrs {
        let mut s = NativeSubscriber::connect(addr, &token).await?;
        s.next(Duration::from_secs(10)).await?.context("hello")?;
        s.next(Duration::from_secs(10)).await?.context("snapshot")?;
        subs.push(s);
    }
    // Every reader is followed from now on; each delta is stamped with the
    // wall-clock time it arrived, so the announcement can be compared with
    // the moment the client got its OK.
    let (tx, rx) = tokio::sync::watch::channel::<Option<GtidSet>>(None);
    let mut tasks = Vec::new();
    for mut s in subs {
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen_at = Vec::new();
            loop {
                if let Some(want) = rx.borrow().clone() {
                    if let Some((at, _)) = seen_at
                        .iter()
                        .find(|(_, v): &&(SystemTime, GtidSet)| want.is_subset(v))
                    {
                        return anyhow::Ok(*at);
                    }
                }
                tokio::select! {
                    msg = s.next(Duration::from_secs(10)) => {
                        if let Some(Message::Delta(_) | Message::Snapshot(_)) = msg? {
                            seen_at.push((SystemTime::now(), s.view.clone()));
                        }
                    }
                    _ = rx.changed() => {}
                }
            }
        }));
    }

    let router_port: u16 = topo.var("CAUSEWAY_ROUTER_PORT")?.parse()?;
    let app = topo.user("APP")?;
    let id = format!(
        "demo-{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    println!("\n== A write through the router (127.0.0.1:{router_port}), by node's mysql2");
    let out = run_node_client(
        "write_own_gtid.mjs",
        &[
            ("MYSQL_HOST", topo.host.clone()),
            ("MYSQL_PORT", router_port.to_string()),
            ("MYSQL_USER", app.user.clone()),
            ("MYSQL_PASSWORD", app.password.clone()),
            ("MYSQL_DATABASE", topo.var("CAUSEWAY_DATABASE")?.to_string()),
            ("ROW_ID", id.clone()),
        ],
    )?;
    let gtid = out["gtids"][0]
        .as_str()
        .context("the OK packet carried no GTID")?
        .to_string();
    let ok_at =
        UNIX_EPOCH + Duration::from_secs_f64(out["okAt"].as_f64().context("no okAt")? / 1000.0);
    println!("INSERT INTO e2e_first VALUES ('{id}', 1)");
    println!("the OK packet says this session wrote {gtid}");
    let mut want = GtidSet::default();
    want.insert(Gtid::parse(&gtid)?);
    tx.send(Some(want))?;

    println!("\n== Each reader announces it once it is visible on its server");
    for (i, t) in tasks.into_iter().enumerate() {
        let at = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .with_context(|| format!("the reader of {} never announced {gtid}", names[i]))???;
        let port = topo.server_ports()[i];
        let mut c = topo.conn(port, "APP").await?;
        let n: Option<i64> = c
            .exec_first("SELECT n FROM e2e_first WHERE id = ?", (&id,))
            .await?;
        ensure!(n == Some(1), "{} announced {gtid} but has no row", names[i]);
        let when = match at.duration_since(ok_at) {
            Ok(d) => format!("{:.1} ms after", d.as_secs_f64() * 1e3),
            Err(e) => format!("{:.1} ms before", e.duration().as_secs_f64() * 1e3),
        };
        println!(
            "{:<9} (:{port}) its reader announced it {when} the client's OK; the row is there (n = 1)",
            names[i]
        );
    }
    println!(
        "\nA router that knows these views can send this session's next read to any\n\
         replica listed above without a stale read; the causal routing comes next."
    );
    Ok(())
}
