//! What an admin statement asks for (pure).
//!
//! ```text
//! SELECT / WITH / VALUES / EXPLAIN ... --> Query (SQLite, over snapshot tables)
//! SHOW TABLES | SHOW VERSION            --> Show
//! KILL [CONNECTION | QUERY] id          --> Kill
//! DRAIN | OFFLINE | ONLINE SERVER name  --> Server
//! PAUSE | RESUME [HOSTGROUP] name       --> Pause
//! RELOAD [CONFIG]                       --> Reload
//! RESET query_digests | errors          --> Reset
//! SET ..., USE ..., BEGIN, COMMIT, ...  --> Ignored (what drivers send)
//! INSERT, UPDATE, DELETE, CREATE, ...   --> ReadOnly
//! anything else                         --> Unknown
//! ```

use crate::ops::ServerOp;
use crate::session::kill::{self, KillTarget};

/// An admin statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// A read of the tables, run by SQLite (the text, trailing `;` gone).
    Query(String),
    /// `SHOW TABLES`.
    ShowTables,
    /// `SHOW VERSION`.
    ShowVersion,
    /// `KILL`.
    Kill(KillTarget),
    /// `DRAIN SERVER` (`Some(Draining)`), `OFFLINE SERVER`, `ONLINE SERVER`
    /// (`None`).
    Server(String, Option<ServerOp>),
    /// `PAUSE` (`true`) or `RESUME` a hostgroup.
    Pause(String, bool),
    /// `RELOAD`.
    Reload,
    /// `RESET` of a resettable table.
    Reset(Resettable),
    /// Statements drivers send that mean nothing here.
    Ignored,
    /// A write: the tables are read-only.
    ReadOnly(String),
    /// Not an admin statement.
    Unknown(String),
}

/// Tables `RESET` clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resettable {
    /// `query_digests`.
    QueryDigests,
    /// `errors`.
    Errors,
}

/// Reads an admin statement.
pub fn parse(sql: &str) -> Statement {
    let text = crate::classify::skip_comments_and_space(sql);
    let text = text.trim_end().trim_end_matches(';').trim_end();
    let mut words = text.split_ascii_whitespace();
    let first = words.next().unwrap_or("").to_ascii_lowercase();
    let second = words.next().unwrap_or("").to_ascii_lowercase();
    let rest_after = |n: usize| -> String {
        let mut t = text;
        for _ in 0..n {
            t = t.trim_start();
            let end = t.find(|c: char| c.is_ascii_whitespace()).unwrap_or(t.len());
            t = &t[end..];
        }
        unquote(t.trim())
    };
    match first.as_str() {
        "select" | "with" | "values" | "explain" | "(" => Statement::Query(text.to_string()),
        "" => Statement::Ignored,
        "show" => match (second.as_str(), words.next()) {
            ("tables", None) => Statement::ShowTables,
            ("version", None) => Statement::ShowVersion,
            _ => Statement::Unknown(text.to_string()),
        },
        "kill" => match kill::parse(text.as_bytes()) {
            Some(t) => Statement::Kill(t),
            None => Statement::Unknown(text.to_string()),
        },
        "drain" | "offline" | "online" if second == "server" => {
            let name = rest_after(2);
            if name.is_empty() {
                return Statement::Unknown(text.to_string());
            }
            let op = match first.as_str() {
                "drain" => Some(ServerOp::Draining),
                "offline" => Some(ServerOp::Offline),
                _ => None,
            };
            Statement::Server(name, op)
        }
        "pause" | "resume" => {
            let name = if second == "hostgroup" {
                rest_after(2)
            } else {
                rest_after(1)
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Statement::Unknown(text.to_string());
            }
            Statement::Pause(name, first == "pause")
        }
        "reload" if matches!(second.as_str(), "" | "config") && words.next().is_none() => {
            Statement::Reload
        }
        "reset" if words.next().is_none() => match unquote(&second).as_str() {
            "query_digests" => Statement::Reset(Resettable::QueryDigests),
            "errors" => Statement::Reset(Resettable::Errors),
            _ => Statement::Unknown(text.to_string()),
        },
        "set" | "use" | "begin" | "commit" | "rollback" | "start" => Statement::Ignored,
        "insert" | "update" | "delete" | "replace" | "create" | "drop" | "alter" | "truncate"
        | "load" | "save" | "attach" | "detach" | "pragma" | "vacuum" | "reindex" => {
            Statement::ReadOnly(first)
        }
        _ => Statement::Unknown(text.to_string()),
    }
}

/// A name as written: quotes (`'`, `"`, `` ` ``) around it removed.
fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    if b.len() >= 2 && matches!(b[0], b'\'' | b'"' | b'`') && b[b.len() - 1] == b[0] {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// `sql` with each `@@[session.|global.|local.]name` outside literals and
/// quoted names replaced by the SQL literal `value(name)` returns, and
/// what was replaced (literal, original text) so result columns can get
/// their original names back. `Err(name)`: an unknown variable.
pub fn substitute_variables(
    sql: &str,
    value: impl Fn(&str) -> Option<String>,
) -> Result<(String, Vec<(String, String)>), String> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut done = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'@' if b.get(i + 1) == Some(&b'@') => {
                let start = i;
                i += 2;
                let name_start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                let full = &sql[name_start..i];
                let lower = full.to_ascii_lowercase();
                let name = ["session.", "global.", "local."]
                    .iter()
                    .find_map(|p| lower.strip_prefix(p))
                    .unwrap_or(&lower)
                    .to_string();
                let Some(v) = value(&name) else {
                    return Err(name);
                };
                let literal = if !v.is_empty() && v.parse::<i64>().is_ok() {
                    v
                } else {
                    format!("'{}'", v.replace('\'', "''"))
                };
                out.push_str(&sql[copied..start]);
                out.push_str(&literal);
                done.push((literal, sql[start..i].to_string()));
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Ok((out, done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_recognised_in_any_case_with_comments_and_semicolons() {
        assert_eq!(
            parse("  select * from servers ;"),
            Statement::Query("select * from servers".into())
        );
        assert_eq!(
            parse("/* x */ WITH a AS (SELECT 1) SELECT * FROM a"),
            Statement::Query("WITH a AS (SELECT 1) SELECT * FROM a".into())
        );
        assert_eq!(parse("show TABLES"), Statement::ShowTables);
        assert_eq!(parse("SHOW VERSION;"), Statement::ShowVersion);
        assert_eq!(
            parse("kill query 12"),
            Statement::Kill(KillTarget::Query(12))
        );
        assert_eq!(parse("KILL 7"), Statement::Kill(KillTarget::Connection(7)));
        assert_eq!(
            parse("DRAIN SERVER `replica1`"),
            Statement::Server("replica1".into(), Some(ServerOp::Draining))
        );
        assert_eq!(
            parse("offline server '127.0.0.1:3306'"),
            Statement::Server("127.0.0.1:3306".into(), Some(ServerOp::Offline))
        );
        assert_eq!(
            parse("ONLINE SERVER replica1"),
            Statement::Server("replica1".into(), None)
        );
        assert_eq!(
            parse("PAUSE HOSTGROUP replicas"),
            Statement::Pause("replicas".into(), true)
        );
        assert_eq!(
            parse("resume primary"),
            Statement::Pause("primary".into(), false)
        );
        assert_eq!(parse("RELOAD"), Statement::Reload);
        assert_eq!(parse("reload config;"), Statement::Reload);
        assert_eq!(
            parse("RESET query_digests"),
            Statement::Reset(Resettable::QueryDigests)
        );
        assert_eq!(parse("SET NAMES utf8mb4"), Statement::Ignored);
        assert_eq!(
            parse("DELETE FROM servers"),
            Statement::ReadOnly("delete".into())
        );
        assert_eq!(
            parse("pragma query_only = 0"),
            Statement::ReadOnly("pragma".into())
        );
        assert!(matches!(parse("DRAIN SERVER"), Statement::Unknown(_)));
        assert!(matches!(parse("PAUSE a b"), Statement::Unknown(_)));
        assert!(matches!(parse("RESET everything"), Statement::Unknown(_)));
        assert!(matches!(parse("SHOW PROCESSLIST"), Statement::Unknown(_)));
        assert!(matches!(parse("frobnicate"), Statement::Unknown(_)));
    }

    #[test]
    fn variables_become_literals_outside_quotes_only() {
        let v = |n: &str| match n {
            "version_comment" => Some("Causeway's admin".to_string()),
            "max_allowed_packet" => Some("67108864".to_string()),
            _ => None,
        };
        let (sql, done) = substitute_variables("select @@version_comment limit 1", v).unwrap();
        assert_eq!(sql, "select 'Causeway''s admin' limit 1");
        assert_eq!(
            done,
            vec![("'Causeway''s admin'".into(), "@@version_comment".into())]
        );
        let (sql, _) =
            substitute_variables("SELECT @@SESSION.max_allowed_packet, '@@x', `@@y`", v).unwrap();
        assert_eq!(sql, "SELECT 67108864, '@@x', `@@y`");
        assert_eq!(
            substitute_variables("select @@nope", v),
            Err("nope".to_string())
        );
    }
}
