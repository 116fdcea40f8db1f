//! What each admin statement does, and its answer. Every command that
//! changes something is logged with the operator's name and address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_wire::ErrPacket;
use tracing::{info, warn};

use crate::admin::engine::{self, Answer, Kind, Limits};
use crate::admin::sql::{self, Resettable, Statement};
use crate::admin::tables;
use crate::error::Error;
use crate::ops::ServerOp;
use crate::shared::Shared;

/// What a statement answers.
#[derive(Debug)]
pub enum Reply {
    /// OK, with an info message.
    Ok(String),
    /// A result set.
    Rows(Answer),
    /// An error; the session goes on.
    Err(ErrPacket),
}

/// Runs admin statement `text` for operator `user` (session `id`, from
/// `peer`).
pub async fn execute(
    shared: &Arc<Shared>,
    user: &str,
    id: u32,
    peer: SocketAddr,
    text: &str,
) -> Reply {
    match sql::parse(text) {
        Statement::Query(q) => query(shared, user, id, q).await,
        Statement::ShowTables => Reply::Rows(text_rows(
            &["table", "about"],
            tables::ALL
                .iter()
                .map(|t| vec![t.name.to_string(), t.about.to_string()])
                .collect(),
        )),
        Statement::ShowVersion => Reply::Rows(text_rows(
            &["version", "commit", "profile"],
            vec![vec![
                crate::BUILD.version.to_string(),
                crate::BUILD.commit.to_string(),
                crate::BUILD.profile.to_string(),
            ]],
        )),
        Statement::Kill(target) => {
            info!(operator = user, peer = %peer, ?target, "admin: KILL");
            match crate::session::kill::execute(shared, None, target).await {
                Ok(()) => Reply::Ok(String::new()),
                Err(Error::BackendRefused(err)) => Reply::Err(err),
                Err(e) => Reply::Err(ErrPacket::new(1105, *b"HY000", e.report().to_string())),
            }
        }
        Statement::Server(name, op) => server(shared, user, peer, &name, op).await,
        Statement::Pause(group, pause) => {
            if shared.runtime().group_named(&group).is_none() {
                return Reply::Err(unknown("hostgroup", &group));
            }
            let changed = shared.ops.set_paused(&group, pause);
            let verb = if pause { "PAUSE" } else { "RESUME" };
            warn!(operator = user, peer = %peer, hostgroup = %group, changed, "admin: {verb}");
            Reply::Ok(match (pause, changed) {
                (true, true) => format!(
                    "hostgroup {group} paused: its new statements wait for RESUME \
                     (statements running and open transactions go on)"
                ),
                (false, true) => format!("hostgroup {group} resumed"),
                (true, false) => format!("hostgroup {group} was already paused"),
                (false, false) => format!("hostgroup {group} was not paused"),
            })
        }
        Statement::Reload => reload(shared, user, peer).await,
        Statement::Reset(what) => {
            info!(operator = user, peer = %peer, ?what, "admin: RESET");
            match what {
                Resettable::QueryDigests => shared.stats.digests.reset(),
                Resettable::Errors => shared.stats.errors.reset(),
            }
            Reply::Ok(String::new())
        }
        Statement::Ignored => Reply::Ok(String::new()),
        Statement::ReadOnly(_) => {
            Reply::Err(crate::admin::engine_err(&engine::EngineError::ReadOnly))
        }
        Statement::Unknown(t) => Reply::Err(ErrPacket::new(
            1064,
            *b"42000",
            format!(
                "Not an admin statement: {:?}. The admin interface takes SELECT over its tables \
                 (SHOW TABLES), KILL [CONNECTION|QUERY] id, DRAIN|OFFLINE|ONLINE SERVER name, \
                 PAUSE|RESUME hostgroup, RELOAD, RESET query_digests|errors, SHOW VERSION",
                t.chars().take(80).collect::<String>()
            ),
        )),
    }
}

async fn query(shared: &Arc<Shared>, user: &str, id: u32, q: String) -> Reply {
    let (q, replaced) = match sql::substitute_variables(&q, variable) {
        Ok(x) => x,
        Err(name) => {
            return Reply::Err(ErrPacket::new(
                1193,
                *b"HY000",
                format!("Unknown system variable '{name}'"),
            ))
        }
    };
    let cfg = &shared.config.admin;
    let limits = Limits {
        timeout: cfg.query_timeout,
        max_rows: 1_000_000,
        max_bytes: 64 << 20,
    };
    let session = engine::Session {
        user: user.to_string(),
        id,
        version: variable("version").unwrap_or_default(),
    };
    let shared = shared.clone();
    let res = tokio::task::spawn_blocking(move || {
        let tables = tables::snapshot(&shared, &q);
        engine::run(&tables, &q, &session, limits)
    })
    .await;
    match res {
        Ok(Ok(mut answer)) => {
            // `@@x` shows under its own name, as in MySQL.
            for (name, _) in &mut answer.columns {
                if let Some((_, original)) = replaced.iter().find(|(lit, _)| lit == name) {
                    *name = original.clone();
                }
            }
            Reply::Rows(answer)
        }
        Ok(Err(e)) => Reply::Err(crate::admin::engine_err(&e)),
        Err(e) => Reply::Err(ErrPacket::new(
            1105,
            *b"HY000",
            format!("the query failed: {e}"),
        )),
    }
}

/// The system variables clients ask for when they connect.
fn variable(name: &str) -> Option<String> {
    let v = match name {
        "version" => format!("8.4.0-causeway-admin-{}", env!("CARGO_PKG_VERSION")),
        "version_comment" => "Causeway router admin interface".into(),
        "max_allowed_packet" => (1u64 << 20).to_string(),
        "autocommit" | "auto_increment_increment" => "1".into(),
        "sql_mode" | "init_connect" => String::new(),
        "character_set_client"
        | "character_set_connection"
        | "character_set_results"
        | "character_set_server"
        | "character_set_database" => "utf8mb4".into(),
        "collation_connection" | "collation_server" | "collation_database" => {
            "utf8mb4_0900_ai_ci".into()
        }
        "time_zone" => "SYSTEM".into(),
        "system_time_zone" => "UTC".into(),
        "transaction_isolation" | "tx_isolation" => "REPEATABLE-READ".into(),
        "transaction_read_only" | "tx_read_only" | "read_only" => "1".into(),
        "lower_case_table_names" => "0".into(),
        "wait_timeout" | "interactive_timeout" => "28800".into(),
        "net_write_timeout" => "60".into(),
        "net_buffer_length" => "16384".into(),
        "license" => "Apache-2.0".into(),
        "performance_schema" | "query_cache_size" => "0".into(),
        "have_ssl" | "have_openssl" => "YES".into(),
        _ => return None,
    };
    Some(v)
}

async fn server(
    shared: &Arc<Shared>,
    user: &str,
    peer: SocketAddr,
    name: &str,
    op: Option<ServerOp>,
) -> Reply {
    let cur = shared.current();
    let Some(sid) = cur.rt.server_named(name) else {
        return Reply::Err(unknown("server", name));
    };
    let changed = shared.ops.set_server(name, op);
    let pool = cur.pool(sid).clone();
    let closed = pool.set_offline(op == Some(ServerOp::Offline));
    let closing = closed.len();
    for c in closed {
        tokio::spawn(c.quit());
    }
    let verb = op.map_or("online", ServerOp::name);
    warn!(operator = user, peer = %peer, server = name, changed, "admin: server set {verb}");
    // The election follows at once; the answer waits for it, so a
    // statement sent after this one already sees the change.
    let serving = |shared: &Shared| {
        let c = shared.current();
        c.members.members.iter().any(|m| m.contains(&sid))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while serving(shared) == op.is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_use = pool.in_use();
    // The server was its cluster's writer, and the cluster has none now.
    let cluster = cur.rt.servers[sid].cluster;
    let group = &cur.rt.groups[cluster];
    let writer_of =
        |c: &crate::shared::Current| c.members.writer.get(cluster.index()).copied().flatten();
    let alone =
        op.is_some() && writer_of(&cur) == Some(sid) && writer_of(&shared.current()).is_none();
    let mut info = match op {
        Some(ServerOp::Draining) => format!(
            "server {name} draining: no new statements; {in_use} connection(s) in use finish \
             there (servers.state shows drained when none is)"
        ),
        Some(ServerOp::Offline) => format!(
            "server {name} offline: no new statements; {closing} idle connection(s) closed, \
             {in_use} in use finish there"
        ),
        None => format!("server {name} online"),
    };
    if alone {
        info.push_str(&format!(
            "; hostgroup {} has no writer now: its writes wait for one ([hostgroups.failover] \
             window)",
            group.name
        ));
    }
    if !changed {
        info = format!("server {name} was already {verb}");
    }
    Reply::Ok(info)
}

async fn reload(shared: &Arc<Shared>, user: &str, peer: SocketAddr) -> Reply {
    warn!(operator = user, peer = %peer, "admin: RELOAD");
    let etcd = shared.fleet.etcd();
    let res = match &etcd {
        Some(etcd) => crate::fleet::agent::refetch(shared, etcd).await,
        None => shared.reload().await,
    };
    match res {
        Ok(()) => {
            // With a fleet, the etcd revision of the document in force.
            let revision = match etcd {
                Some(_) => shared.fleet.applied_revision().max(0) as u64,
                None => shared.revision().0,
            };
            Reply::Rows(text_rows(
                &["status", "problem"],
                vec![vec![
                    "reloaded".into(),
                    format!("revision {revision} in force"),
                ]],
            ))
        }
        Err(e) => {
            let problems: Vec<String> =
                match e.downcast_ref::<causeway_common::config::ConfigError>() {
                    Some(causeway_common::config::ConfigError::Invalid(list)) => list.clone(),
                    _ => vec![format!("{e:#}")],
                };
            Reply::Rows(text_rows(
                &["status", "problem"],
                problems
                    .into_iter()
                    .map(|p| vec!["refused".to_string(), p])
                    .collect(),
            ))
        }
    }
}

fn unknown(what: &str, name: &str) -> ErrPacket {
    ErrPacket::new(
        1105,
        *b"HY000",
        format!("no {what} named {name:?} in the configuration in force"),
    )
}

fn text_rows(columns: &[&str], rows: Vec<Vec<String>>) -> Answer {
    Answer {
        columns: columns
            .iter()
            .map(|c| (c.to_string(), Kind::Text))
            .collect(),
        rows: rows
            .into_iter()
            .map(|r| r.into_iter().map(Some).collect())
            .collect(),
    }
}
