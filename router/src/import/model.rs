//! ProxySQL's configuration as rows of its admin tables, whichever way it
//! was read: from `proxysql.cnf` ([`Proxysql::from_cnf`]) or from the
//! admin interface ([`Proxysql::from_tables`]). Pure.
//!
//! Rows keep ProxySQL's column names (`hostgroup_id`, `hostname`,
//! `destination_hostgroup`, ...) and their values as text, with NULL left
//! out, so both sources give the converter the same thing. The config file
//! spells a few columns differently (`address`, `hostgroup`); they are
//! renamed here as ProxySQL's own loader does.

use std::collections::BTreeMap;

use super::libconfig::{self, Kind, Value};

/// One row of a ProxySQL table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Where it came from, for messages: `mysql_servers[2] (line 40)`.
    pub origin: String,
    /// Column name to value; NULL columns are absent.
    pub fields: BTreeMap<String, String>,
}

impl Row {
    /// A column's text, when set.
    pub fn text(&self, column: &str) -> Option<&str> {
        self.fields
            .get(column)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A column as an integer, when set and numeric.
    pub fn int(&self, column: &str) -> Option<i64> {
        self.text(column).and_then(|s| s.trim().parse().ok())
    }

    /// A column as an integer, `default` when unset, NULL or negative
    /// (ProxySQL's "no change" is -1 in the file and NULL in the tables).
    pub fn int_or(&self, column: &str, default: i64) -> i64 {
        self.int(column).filter(|v| *v >= 0).unwrap_or(default)
    }
}

/// One ProxySQL global variable (`mysql-monitor_username`, `admin-...`).
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Its full name, with the `mysql-` or `admin-` prefix.
    pub name: String,
    /// Its value as text.
    pub value: String,
    /// Where it came from.
    pub origin: String,
}

/// Something of the ProxySQL configuration, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The table row or variable (`mysql_query_rules[3] (line 80)`).
    pub origin: String,
    /// What was not converted, or differs, and why.
    pub what: String,
}

/// Everything read from one ProxySQL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proxysql {
    /// `mysql_servers`.
    pub servers: Vec<Row>,
    /// `mysql_users`.
    pub users: Vec<Row>,
    /// `mysql_query_rules`.
    pub rules: Vec<Row>,
    /// `mysql_replication_hostgroups`.
    pub replication: Vec<Row>,
    /// Global variables.
    pub variables: Vec<Variable>,
    /// Rows of every other table (Galera, group replication, fast routing,
    /// scheduler, ...), and top-level file settings, by table or setting name:
    /// nothing in Causeway reads them, and each is listed as not converted.
    pub other: Vec<(String, Row)>,
}

/// Column names the config file may spell another way.
fn column_name(table: &str, key: &str) -> String {
    match (table, key) {
        ("mysql_servers", "address") => "hostname".into(),
        ("mysql_servers", "hostgroup") => "hostgroup_id".into(),
        _ => key.to_string(),
    }
}

/// Top-level settings of the file that only tell ProxySQL where its own
/// files are: nothing to convert, nothing lost.
const FILE_ONLY: &[&str] = &["datadir", "errorlog", "logfile"];

impl Proxysql {
    /// Reads a `proxysql.cnf` text.
    pub fn from_cnf(text: &str) -> Result<Proxysql, libconfig::ParseError> {
        let root = libconfig::parse(text)?;
        let mut out = Proxysql::default();
        for (name, value) in root.settings() {
            let origin = |i: usize, v: &Value| format!("{name}[{i}] (line {})", v.line);
            match name.as_str() {
                "mysql_variables" | "admin_variables" => {
                    let prefix = name.trim_end_matches("_variables");
                    for (key, v) in value.settings() {
                        out.variables.push(Variable {
                            name: format!("{prefix}-{key}"),
                            value: v.as_text().unwrap_or_default(),
                            origin: format!("{name}.{key} (line {})", v.line),
                        });
                    }
                }
                "mysql_servers"
                | "mysql_users"
                | "mysql_query_rules"
                | "mysql_replication_hostgroups" => {
                    for (i, v) in value.elements().iter().enumerate() {
                        let row = row_of(name, v, origin(i, v));
                        match name.as_str() {
                            "mysql_servers" => out.servers.push(row),
                            "mysql_users" => out.users.push(row),
                            "mysql_query_rules" => out.rules.push(row),
                            _ => out.replication.push(row),
                        }
                    }
                }
                n if FILE_ONLY.contains(&n) => {}
                _ => match &value.kind {
                    Kind::List(items) | Kind::Array(items) => {
                        for (i, v) in items.iter().enumerate() {
                            out.other
                                .push((name.clone(), row_of(name, v, origin(i, v))));
                        }
                    }
                    _ => {
                        let mut row = row_of(name, value, format!("{name} (line {})", value.line));
                        if let Some(text) = value.as_text() {
                            row.fields.insert(name.clone(), text);
                        }
                        out.other.push((name.clone(), row));
                    }
                },
            }
        }
        Ok(out)
    }

    /// Builds from rows read off the admin interface: `table` is the
    /// table's name without a `runtime_` prefix; each row maps column
    /// names to values (NULL as `None`).
    pub fn add_rows(
        &mut self,
        table: &str,
        source: &str,
        rows: Vec<BTreeMap<String, Option<String>>>,
    ) {
        for (i, r) in rows.into_iter().enumerate() {
            let fields: BTreeMap<String, String> =
                r.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
            if table == "global_variables" {
                let name = fields.get("variable_name").cloned().unwrap_or_default();
                let value = fields.get("variable_value").cloned().unwrap_or_default();
                self.variables.push(Variable {
                    origin: format!("{source} {name}"),
                    name,
                    value,
                });
                continue;
            }
            let row = Row {
                origin: format!("{source} row {}", i + 1),
                fields,
            };
            match table {
                "mysql_servers" => self.servers.push(row),
                "mysql_users" => self.users.push(row),
                "mysql_query_rules" => self.rules.push(row),
                "mysql_replication_hostgroups" => self.replication.push(row),
                _ => self.other.push((table.to_string(), row)),
            }
        }
    }

    /// A global variable's value (the last one given).
    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().rev().find(|v| v.name == name)
    }
}

fn row_of(table: &str, v: &Value, origin: String) -> Row {
    let fields = v
        .settings()
        .iter()
        .filter_map(|(k, v)| Some((column_name(table, k), v.as_text()?)))
        .collect();
    Row { origin, fields }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_columns_are_named_as_the_tables_name_them() {
        let p = Proxysql::from_cnf(
            "datadir=\"/var/lib/proxysql\"\n\
             mysql_variables={ monitor_username=\"mon\" threads=4 }\n\
             mysql_servers=( { address=\"db1\", port=3306, hostgroup=10 } )\n\
             mysql_galera_hostgroups=( { writer_hostgroup=1 } )\n\
             restart_on_missing_heartbeats=10\n",
        )
        .unwrap();
        assert_eq!(p.servers[0].text("hostname"), Some("db1"));
        assert_eq!(p.servers[0].int("hostgroup_id"), Some(10));
        assert_eq!(p.servers[0].origin, "mysql_servers[0] (line 3)");
        assert_eq!(p.variable("mysql-monitor_username").unwrap().value, "mon");
        assert_eq!(p.variable("mysql-threads").unwrap().value, "4");
        let others: Vec<&str> = p.other.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            others,
            ["mysql_galera_hostgroups", "restart_on_missing_heartbeats"]
        );
    }

    #[test]
    fn admin_rows_drop_nulls_and_variables_go_apart() {
        let mut p = Proxysql::default();
        let row = |pairs: &[(&str, Option<&str>)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect::<BTreeMap<_, _>>()
        };
        p.add_rows(
            "mysql_query_rules",
            "runtime_mysql_query_rules",
            vec![row(&[("rule_id", Some("1")), ("flagOUT", None)])],
        );
        p.add_rows(
            "global_variables",
            "runtime_global_variables",
            vec![row(&[
                ("variable_name", Some("mysql-threads")),
                ("variable_value", Some("8")),
            ])],
        );
        assert_eq!(p.rules[0].int("rule_id"), Some(1));
        assert_eq!(p.rules[0].int_or("flagOUT", -1), -1);
        assert_eq!(p.variable("mysql-threads").unwrap().value, "8");
    }
}
