//! Reads a live ProxySQL's configuration over its admin interface (the
//! MySQL protocol, e.g. `mysql://admin:admin@127.0.0.1:6032`).
//!
//! It reads the `runtime_` tables by default: what ProxySQL runs now,
//! servers the monitor moved included; [`Tables::Memory`] reads the tables
//! an operator edits (`mysql_servers`, ...), which may hold changes not yet
//! loaded to runtime. Each table is read with `SELECT *`, in pages of
//! [`PAGE`] rows (`LIMIT ... OFFSET ...`). The router's own backend client
//! does the talking (`backend::connect`, `backend::query`): it already
//! logs in to MySQL and reads text results, so no other client library is
//! needed. A DSN with a path (`mysql://u:p@host:port/schema`) logs in to
//! that schema, which lets the tests read tables of ProxySQL's shapes off
//! a MySQL server.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::model::Proxysql;
use crate::backend::connect::{self, Endpoint, Login, REQUIRED};
use crate::backend::query::simple_query;
use crate::error::Error;
use causeway_wire::CapabilityFlags;

/// Rows read per query (the backend client's bound on one result is
/// 1000 rows).
pub const PAGE: usize = 500;

/// Which copy of the tables to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tables {
    /// `runtime_mysql_servers`, ...: what ProxySQL runs.
    #[default]
    Runtime,
    /// `mysql_servers`, ...: what the operator configured in memory.
    Memory,
}

/// Where the admin interface is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Admin user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Host.
    pub host: String,
    /// Port (default 6032).
    pub port: u16,
    /// A schema to log in to (for tests against MySQL).
    pub database: Option<String>,
}

/// Whether `arg` names an admin interface rather than a file.
pub fn is_dsn(arg: &str) -> bool {
    arg.starts_with("mysql://")
}

/// Parses `mysql://user:password@host:port[/schema]`; `%XX` escapes in
/// the user and password are decoded.
pub fn parse_dsn(text: &str) -> Result<Dsn, String> {
    let rest = text
        .strip_prefix("mysql://")
        .ok_or("an admin DSN starts with mysql://")?;
    let (auth, rest) = rest
        .rsplit_once('@')
        .ok_or("an admin DSN needs user:password@ before the host")?;
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, database) = match rest.split_once('/') {
        Some((h, db)) if !db.is_empty() => (h, Some(db.to_string())),
        Some((h, _)) => (h, None),
        None => (rest, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number"))?,
        ),
        None => (hostport, 6032),
    };
    if host.is_empty() || user.is_empty() {
        return Err("an admin DSN needs a user and a host".into());
    }
    Ok(Dsn {
        user: unescape(user)?,
        password: unescape(password)?,
        host: host.trim_matches(['[', ']']).to_string(),
        port,
        database,
    })
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or("a % escape is cut short")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape %{hex}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the DSN is not UTF-8 once unescaped".to_string())
}

/// Tables read; the first five must exist, the others are read when they
/// do (older ProxySQL versions lack some).
const TABLES: &[(&str, bool)] = &[
    ("mysql_servers", true),
    ("mysql_users", true),
    ("mysql_query_rules", true),
    ("mysql_replication_hostgroups", true),
    ("global_variables", true),
    ("mysql_galera_hostgroups", false),
    ("mysql_group_replication_hostgroups", false),
    ("mysql_aws_aurora_hostgroups", false),
    ("mysql_query_rules_fast_routing", false),
];

/// Reads everything the converter needs.
pub async fn read(dsn: &Dsn, tables: Tables) -> Result<Proxysql, String> {
    let ep = Endpoint {
        name: format!("{}:{}", dsn.host, dsn.port),
        host: dsn.host.clone(),
        port: dsn.port,
        connect_timeout: Duration::from_secs(10),
        tls: None,
        compression: None,
    };
    let fail = |what: &str, e: Error| format!("{what} {}:{}: {}", dsn.host, dsn.port, describe(&e));
    let mut conn = connect::connect(&ep)
        .await
        .map_err(|e| fail("connecting to", e))?;
    let caps = REQUIRED | CapabilityFlags::TRANSACTIONS | CapabilityFlags::DEPRECATE_EOF;
    let login = Login {
        user: Bytes::copy_from_slice(dsn.user.as_bytes()),
        database: dsn
            .database
            .as_ref()
            .map(|d| Bytes::copy_from_slice(d.as_bytes())),
        // utf8mb4_general_ci: ProxySQL's admin and MySQL both know it.
        charset: 45,
        capabilities: caps,
        max_packet_size: 1 << 24,
        connect_attrs: Vec::new(),
    };
    connect::login(&mut conn, &login, dsn.password.as_bytes(), None, None)
        .await
        .map_err(|e| fail("logging in to", e))?;
    let timeout = Duration::from_secs(30);
    let mut out = Proxysql::default();
    for &(table, required) in TABLES {
        let name = match tables {
            Tables::Runtime => format!("runtime_{table}"),
            Tables::Memory => table.to_string(),
        };
        let mut rows = Vec::new();
        let mut missing = false;
        loop {
            let sql = format!("SELECT * FROM {name} LIMIT {PAGE} OFFSET {}", rows.len());
            let page = match simple_query(&mut conn.io, caps, &sql, timeout).await {
                Ok(page) => page,
                Err(e) if !required => {
                    missing = matches!(e, Error::BackendRefused(_));
                    if missing {
                        break;
                    }
                    return Err(format!("reading {name}: {}", describe(&e)));
                }
                Err(e) => return Err(format!("reading {name}: {}", describe(&e))),
            };
            let n = page.rows.len();
            for values in page.rows {
                let row: BTreeMap<String, Option<String>> =
                    page.columns.iter().cloned().zip(values).collect();
                rows.push(row);
            }
            if n < PAGE {
                break;
            }
        }
        if !missing {
            out.add_rows(table, &name, rows);
        }
    }
    let _ = conn.io.write_packet(0, &[0x01]).await;
    Ok(out)
}

/// An error in words, with the server's own message for an ERR.
fn describe(e: &Error) -> String {
    match e {
        Error::BackendRefused(err) => format!(
            "ERR {}: {}",
            err.code,
            String::from_utf8_lossy(&err.message)
        ),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_with_defaults_and_escapes() {
        let d = parse_dsn("mysql://admin:admin@127.0.0.1:6032").unwrap();
        assert_eq!(
            (
                d.user.as_str(),
                d.password.as_str(),
                d.host.as_str(),
                d.port
            ),
            ("admin", "admin", "127.0.0.1", 6032)
        );
        assert_eq!(d.database, None);
        let d = parse_dsn("mysql://radmin:p%40ss@db.example:7032/proxysql_tables").unwrap();
        assert_eq!(d.password, "p@ss");
        assert_eq!(d.port, 7032);
        assert_eq!(d.database.as_deref(), Some("proxysql_tables"));
        assert_eq!(parse_dsn("mysql://a:b@h").unwrap().port, 6032);
        for bad in [
            "http://a:b@h",
            "mysql://h:6032",
            "mysql://a:b@h:port",
            "mysql://a:b@",
            "mysql://a:%4@h",
        ] {
            assert!(parse_dsn(bad).is_err(), "{bad}");
        }
        assert!(is_dsn("mysql://x") && !is_dsn("/etc/proxysql.cnf"));
    }
}
