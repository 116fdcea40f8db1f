//! ProxySQL's tables ([`Proxysql`]) to a Causeway [`Config`]: pure.
//!
//! | ProxySQL | Causeway |
//! |---|---|
//! | hostgroup N | `[[hostgroups]] name = "hgN"` |
//! | `mysql_replication_hostgroups` | writer group, and a reader group naming it |
//! | other hostgroups | a user's default hostgroup: a writer group; otherwise a reader group without a writer (any of its servers takes whatever is routed there) |
//! | `mysql_servers` | `[[servers]]`: weight, max_connections, max_replication_lag, use_ssl, `gtid_port` as `reader` |
//! | `mysql_users` | `[[users]]`: password, default_hostgroup, max_connections |
//! | `mysql_query_rules` | `[[query_rules]]` ([`super::flatten`]), `gtid_from_hostgroup` as `consistency = "session"` and a consistent pair |
//! | `mysql-monitor_*`, a few `mysql-*` | `[monitor]`, `[frontend]`, `[backend]`, `[routing]` |
//!
//! A statement no rule routes goes to its user's default hostgroup in
//! ProxySQL, while Causeway sends plain reads to the reader group paired
//! with it: each such user gets a first, chained rule naming its default
//! hostgroup, so later rules override it exactly as in ProxySQL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use super::flatten::{self, Lit, Step};
pub use super::model::Note;
use super::model::{Proxysql, Row};
use crate::causal::Scope;
use crate::config::{
    BackendTls, BackendTlsMode, Config, ConsistentPair, HostgroupConfig, Role, ServerConfig,
    UserConfig,
};
use crate::config::{QueryRuleConfig, Secret};

/// Choices the ProxySQL configuration cannot make.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `reader_token_file` for every server given a `reader` (from its
    /// `gtid_port`).
    pub reader_token_file: Option<PathBuf>,
}

/// The converted configuration.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The configuration.
    pub config: Config,
    /// What has no equivalent: left out, listed.
    pub not_converted: Vec<Note>,
    /// What was converted but behaves a little differently.
    pub differences: Vec<Note>,
}

/// Hostgroup `id`'s name.
pub fn hostgroup_name(id: i64) -> String {
    format!("hg{id}")
}

/// Converts. Never fails: what cannot be converted is listed.
pub fn convert(p: &Proxysql, opts: &Options) -> Conversion {
    let mut c = Converter {
        p,
        opts,
        config: Config::default(),
        not: Vec::new(),
        diff: Vec::new(),
    };
    let pairs = c.replication();
    c.servers(&pairs);
    c.users();
    c.rules(&pairs);
    c.hostgroups(&pairs);
    super::variables::apply(p, &mut c.config, &mut c.not, &mut c.diff);
    Conversion {
        config: c.config,
        not_converted: c.not,
        differences: c.diff,
    }
}

struct Converter<'a> {
    p: &'a Proxysql,
    opts: &'a Options,
    config: Config,
    not: Vec<Note>,
    diff: Vec<Note>,
}

/// Writer hostgroup id to reader hostgroup id.
type Pairs = BTreeMap<i64, i64>;

impl Converter<'_> {
    fn not(&mut self, origin: &str, what: impl Into<String>) {
        self.not.push(Note {
            origin: origin.to_string(),
            what: what.into(),
        });
    }

    fn diff(&mut self, origin: &str, what: impl Into<String>) {
        self.diff.push(Note {
            origin: origin.to_string(),
            what: what.into(),
        });
    }

    fn replication(&mut self) -> Pairs {
        let mut pairs = Pairs::new();
        for r in &self.p.replication {
            let (Some(w), Some(rd)) = (r.int("writer_hostgroup"), r.int("reader_hostgroup")) else {
                self.not(&r.origin, "no writer_hostgroup or reader_hostgroup");
                continue;
            };
            let check = r.text("check_type").unwrap_or("read_only").to_lowercase();
            if !matches!(check.as_str(), "read_only" | "super_read_only") {
                self.diff(
                    &r.origin,
                    format!(
                        "check_type = {check}: Causeway tells writers from readers by read_only \
                         and super_read_only (innodb_read_only is not read)"
                    ),
                );
            }
            pairs.insert(w, rd);
        }
        pairs
    }

    fn servers(&mut self, pairs: &Pairs) {
        let mut seen: BTreeMap<(String, u16), i64> = BTreeMap::new();
        let all_plain = self.p.servers.iter().all(|s| s.int_or("use_ssl", 0) == 0);
        if all_plain && !self.p.servers.is_empty() {
            self.config.backend.tls.mode = BackendTlsMode::Disabled;
        }
        for s in &self.p.servers {
            let o = &s.origin;
            let (Some(host), Some(hg)) = (s.text("hostname"), s.int("hostgroup_id")) else {
                self.not(o, "no hostname or hostgroup_id");
                continue;
            };
            let Ok(port) = u16::try_from(s.int_or("port", 3306)) else {
                self.not(o, "port out of range");
                continue;
            };
            let key = (host.to_string(), port);
            if let Some(&first) = seen.get(&key) {
                if pairs.get(&first) == Some(&hg) || pairs.get(&hg) == Some(&first) {
                    self.diff(
                        o,
                        format!(
                            "{host}:{port} is in writer hostgroup and its reader hostgroup \
                             ({first} and {hg}): one Causeway server; the writer also takes \
                             reads with [routing] writer_is_also_reader"
                        ),
                    );
                    self.config.routing.writer_is_also_reader = true;
                } else {
                    self.not(
                        o,
                        format!(
                            "{host}:{port} is already in hostgroup {first}: a Causeway server \
                             belongs to one hostgroup (pair them with mysql_replication_hostgroups)"
                        ),
                    );
                }
                continue;
            }
            // The writer of a pair is written under the writer group even
            // when a reader row for it comes first.
            let hg = match pairs.iter().find(|(_, r)| **r == hg) {
                Some((w, _))
                    if self.p.servers.iter().any(|x| {
                        x.text("hostname") == Some(host)
                            && x.int_or("port", 3306) == i64::from(port)
                            && x.int("hostgroup_id") == Some(*w)
                    }) =>
                {
                    *w
                }
                _ => hg,
            };
            seen.insert(key, hg);
            let mut srv = ServerConfig {
                host: host.to_string(),
                port,
                hostgroup: hostgroup_name(hg),
                weight: u32::try_from(s.int_or("weight", 1)).unwrap_or(u32::MAX),
                ..ServerConfig::default()
            };
            let max = s.int_or("max_connections", 1000);
            if max == 0 {
                srv.weight = 0;
                self.diff(o, "max_connections = 0: weight 0 (no traffic)");
            } else {
                srv.max_connections = usize::try_from(max).unwrap_or(usize::MAX);
            }
            let lag = s.int_or("max_replication_lag", 0);
            if lag > 0 {
                srv.max_replication_lag = Some(Duration::from_secs(lag.unsigned_abs()));
            }
            let ssl = s.int_or("use_ssl", 0) != 0;
            if !all_plain && !ssl {
                srv.tls = Some(BackendTls {
                    mode: BackendTlsMode::Disabled,
                    ..BackendTls::default()
                });
            }
            let gtid_port = s.int_or("gtid_port", 0);
            if gtid_port > 0 {
                srv.reader = Some(format!("{host}:{gtid_port}"));
                srv.reader_token_file = self.opts.reader_token_file.clone();
            }
            match s.text("status").map(str::to_uppercase).as_deref() {
                None | Some("ONLINE") => {}
                Some("SHUNNED") => self.diff(o, "status SHUNNED: the monitor decides"),
                Some(st) => {
                    srv.weight = 0;
                    self.diff(o, format!("status {st}: weight 0 (no new traffic)"));
                }
            }
            if s.int_or("compression", 0) != 0 {
                self.not(
                    o,
                    "compression = 1: Causeway compresses all backend connections or none \
                     ([backend] compression)",
                );
            }
            if s.int_or("max_latency_ms", 0) != 0 {
                self.not(o, "max_latency_ms: no equivalent");
            }
            self.config.servers.push(srv);
        }
    }

    fn users(&mut self) {
        let mut names = BTreeSet::new();
        for u in &self.p.users {
            let o = &u.origin;
            let Some(name) = u.text("username") else {
                self.not(o, "no username");
                continue;
            };
            if u.int_or("active", 1) == 0 {
                self.not(o, format!("user {name}: inactive, not converted"));
                continue;
            }
            if u.int_or("frontend", 1) == 0 {
                self.not(o, format!("user {name}: backend-only row (frontend = 0)"));
                continue;
            }
            if !names.insert(name.to_string()) {
                self.not(o, format!("user {name}: defined twice, the first is kept"));
                continue;
            }
            let mut user = UserConfig {
                name: name.to_string(),
                default_hostgroup: Some(hostgroup_name(u.int_or("default_hostgroup", 0))),
                max_connections: usize::try_from(u.int_or("max_connections", 10000)).unwrap_or(0),
                ..UserConfig::default()
            };
            match u.text("password") {
                Some(pw) if pw.starts_with('*') && pw.len() == 41 => {
                    let env = format!(
                        "CAUSEWAY_PASSWORD_{}",
                        name.to_uppercase()
                            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                    );
                    self.not(
                        o,
                        format!(
                            "user {name}: the password is a mysql_native_password hash; \
                             Causeway needs the clear text (it logs in to the servers with it): \
                             it is read from ${env}"
                        ),
                    );
                    user.password_env = Some(env);
                }
                Some(pw) => user.password = Some(Secret(pw.to_string())),
                None => {}
            }
            for (col, what) in [
                ("use_ssl", "use_ssl = 1: Causeway requires TLS of all clients or none ([frontend.tls] required)"),
                ("schema_locked", "schema_locked: no equivalent"),
                ("fast_forward", "fast_forward: no equivalent (every session is routed)"),
            ] {
                if u.int_or(col, 0) != 0 {
                    self.not(o, format!("user {name}: {what}"));
                }
            }
            if u.int_or("transaction_persistent", 1) == 0 {
                self.diff(
                    o,
                    format!("user {name}: transaction_persistent = 0: Causeway always keeps a transaction on its connection"),
                );
            }
            if let Some(schema) = u.text("default_schema") {
                self.not(
                    o,
                    format!(
                        "user {name}: default_schema {schema}: clients name their schema at login"
                    ),
                );
            }
            if let Some(a) = u.text("attributes") {
                self.not(o, format!("user {name}: attributes {a}"));
            }
            self.config.users.push(user);
        }
    }

    fn rules(&mut self, pairs: &Pairs) {
        let mut rows: Vec<&Row> = Vec::new();
        for r in &self.p.rules {
            if r.int_or("active", 1) == 0 {
                self.not(
                    &r.origin,
                    "inactive rule, not converted (ProxySQL skips it too)",
                );
                continue;
            }
            rows.push(r);
        }
        rows.sort_by_key(|r| r.int("rule_id").unwrap_or(i64::MAX));
        let mut steps = Vec::new();
        let mut gtid: Vec<(i64, Option<i64>, String)> = Vec::new();
        for r in rows {
            let id = r.int("rule_id").unwrap_or(-1);
            let mut actions = QueryRuleConfig::default();
            let dest = r.int("destination_hostgroup").filter(|d| *d >= 0);
            actions.destination = dest.map(hostgroup_name);
            if let Some(t) = r.int("timeout").filter(|t| *t > 0) {
                actions.backend_timeout = Some(Duration::from_millis(t.unsigned_abs()));
            }
            if r.int("multiplex") == Some(0) {
                actions.multiplex = Some(false);
            }
            if let Some(from) = r.int("gtid_from_hostgroup").filter(|g| *g >= 0) {
                actions.consistency = Some(Scope::Session);
                gtid.push((from, dest, r.origin.clone()));
            }
            for (col, what) in [
                ("cache_ttl", "query cache (cache_ttl)"),
                ("cache_empty_result", "cache_empty_result"),
                ("cache_timeout", "cache_timeout"),
                ("mirror_hostgroup", "mirroring (mirror_hostgroup)"),
                ("mirror_flagOUT", "mirroring (mirror_flagOUT)"),
                (
                    "next_query_flagIN",
                    "next_query_flagIN (a flag for the next statement)",
                ),
                ("reconnect", "reconnect"),
                ("retries", "retries"),
                ("delay", "delay"),
                ("sticky_conn", "sticky_conn"),
                ("log", "log (use [query_log])"),
            ] {
                if r.int(col).is_some_and(|v| v >= 0) {
                    self.not(&r.origin, format!("rule {id}: {what}: no equivalent"));
                }
            }
            for (col, what) in [
                ("replace_pattern", "rewrite (replace_pattern)"),
                ("attributes", "attributes"),
            ] {
                if r.text(col).is_some() {
                    self.not(&r.origin, format!("rule {id}: {what}: no equivalent"));
                }
            }
            steps.push(Step {
                id,
                origin: r.origin.clone(),
                flag_in: r.int_or("flagIN", 0),
                flag_out: r.int("flagOUT").filter(|f| *f >= 0),
                apply: r.int_or("apply", 0) != 0,
                criteria: criteria(r),
                actions,
                comment: r.text("comment").map(str::to_string),
            });
        }
        let flat = flatten::flatten(&steps);
        for (origin, why) in flat.not_converted {
            self.not(&origin, why);
        }
        // Statements no rule routes go to the user's default hostgroup;
        // Causeway would send plain reads to a paired reader group.
        let paired: BTreeSet<String> = pairs
            .iter()
            .flat_map(|(w, r)| [hostgroup_name(*w), hostgroup_name(*r)])
            .collect();
        let mut rules = Vec::new();
        for u in &self.config.users {
            if !u
                .default_hostgroup
                .as_ref()
                .is_some_and(|d| paired.contains(d))
            {
                continue;
            }
            rules.push(QueryRuleConfig {
                name: Some(format!("default_hostgroup of {}", u.name)),
                user: Some(u.name.clone()),
                destination: u.default_hostgroup.clone(),
                chain: true,
                ..QueryRuleConfig::default()
            });
        }
        rules.extend(flat.rules);
        self.config.query_rules = rules;
        // gtid_from_hostgroup: reads in the destination must see the
        // session's writes in that hostgroup.
        for (from, dest, origin) in gtid {
            let Some(dest) = dest else {
                self.not(
                    &origin,
                    "gtid_from_hostgroup without destination_hostgroup: no reader group to pair",
                );
                continue;
            };
            let (reader, writer) = (hostgroup_name(dest), hostgroup_name(from));
            if !self
                .config
                .consistent_pairs
                .iter()
                .any(|p| p.reader == reader)
            {
                self.config.consistent_pairs.push(ConsistentPair {
                    reader,
                    writer,
                    scope: Scope::Eventual,
                    ..ConsistentPair::default()
                });
            }
        }
    }

    fn hostgroups(&mut self, pairs: &Pairs) {
        let mut ids = BTreeSet::new();
        let parse = |name: &str| name.strip_prefix("hg").and_then(|n| n.parse::<i64>().ok());
        ids.extend(
            self.config
                .servers
                .iter()
                .filter_map(|s| parse(&s.hostgroup)),
        );
        for u in &self.config.users {
            ids.extend(u.default_hostgroup.as_deref().and_then(parse));
        }
        for r in &self.config.query_rules {
            ids.extend(r.destination.as_deref().and_then(parse));
        }
        for p in &self.config.consistent_pairs {
            ids.extend([parse(&p.reader), parse(&p.writer)].into_iter().flatten());
        }
        ids.extend(pairs.keys().copied());
        ids.extend(pairs.values().copied());
        let defaults: BTreeSet<String> = self
            .config
            .users
            .iter()
            .filter_map(|u| u.default_hostgroup.clone())
            .collect();
        let gtid_writers: BTreeSet<String> = self
            .config
            .consistent_pairs
            .iter()
            .map(|p| p.writer.clone())
            .collect();
        for id in ids {
            let name = hostgroup_name(id);
            let writer_of = pairs.iter().find(|(_, r)| **r == id).map(|(w, _)| *w);
            let role = if pairs.contains_key(&id)
                || (writer_of.is_none()
                    && (defaults.contains(&name) || gtid_writers.contains(&name)))
            {
                Role::Writer
            } else {
                Role::Reader
            };
            let n = self
                .config
                .servers
                .iter()
                .filter(|s| s.hostgroup == name)
                .count();
            if role == Role::Writer && !pairs.contains_key(&id) && n > 1 {
                self.diff(
                    &format!("hostgroup {id}"),
                    format!(
                        "{n} servers in writer hostgroup {id} without mysql_replication_hostgroups: \
                         ProxySQL spreads its statements over all of them, Causeway sends them to \
                         the one writable server it elects"
                    ),
                );
            }
            self.config.hostgroups.push(HostgroupConfig {
                name,
                role,
                writer: writer_of.map(hostgroup_name),
                ..HostgroupConfig::default()
            });
        }
        // A consistent pair needs a reader and a writer group.
        let roles: BTreeMap<String, Role> = self
            .config
            .hostgroups
            .iter()
            .map(|h| (h.name.clone(), h.role))
            .collect();
        let mut kept = Vec::new();
        for p in std::mem::take(&mut self.config.consistent_pairs) {
            if roles.get(&p.reader) == Some(&Role::Reader)
                && roles.get(&p.writer) == Some(&Role::Writer)
            {
                kept.push(p);
            } else {
                self.not(
                    &format!("gtid_from_hostgroup {}", p.writer),
                    format!(
                        "reads in {} wait for writes in {}: one must be a reader group and the \
                         other a writer group; rules keep consistency = \"session\" without effect",
                        p.reader, p.writer
                    ),
                );
            }
        }
        self.config.consistent_pairs = kept;
        for p in &self.config.consistent_pairs {
            let without: Vec<String> = self
                .config
                .servers
                .iter()
                .filter(|s| s.hostgroup == p.reader && s.reader.is_none())
                .map(|s| s.name())
                .collect();
            if !without.is_empty() {
                self.diff.push(Note {
                    origin: "mysql_servers".into(),
                    what: format!(
                        "no gtid_port for {}: their reads causal to {} go to the writer",
                        without.join(", "),
                        p.writer
                    ),
                });
            }
        }
        if !self
            .config
            .hostgroups
            .iter()
            .any(|h| h.role == Role::Writer)
        {
            if let Some(first) = self.config.hostgroups.first_mut() {
                first.role = Role::Writer;
                first.writer = None;
                let name = first.name.clone();
                self.diff(
                    &name,
                    "no writer hostgroup: the first hostgroup takes writes",
                );
            }
        }
    }
}

/// A rule's match criteria as conditions.
fn criteria(r: &Row) -> Result<Vec<Lit>, String> {
    let mut lits = Vec::new();
    for (col, what) in [("error_msg", "error_msg"), ("OK_msg", "OK_msg")] {
        if r.text(col).is_some() {
            return Err(format!(
                "{what}: ProxySQL answers the statements it matches itself; Causeway runs them"
            ));
        }
    }
    for col in ["digest", "proxy_addr", "proxy_port"] {
        if r.text(col).is_some() {
            return Err(format!("matches on {col}, which Causeway does not have"));
        }
    }
    if let Some(u) = r.text("username") {
        lits.push(Lit::User(u.to_string(), true));
    }
    if let Some(s) = r.text("schemaname") {
        lits.push(Lit::Schema(s.to_string(), true));
    }
    if let Some(a) = r.text("client_addr") {
        if let Some(net) = client_network(a)? {
            lits.push(Lit::Client(net, true));
        }
    }
    let modifiers = r.text("re_modifiers").unwrap_or("CASELESS").to_uppercase();
    let regex = |p: &str| {
        if modifiers.contains("CASELESS") {
            p.to_string()
        } else {
            format!("(?-i){p}")
        }
    };
    let positive = r.int_or("negate_match_pattern", 0) == 0;
    if let Some(d) = r.text("match_digest") {
        lits.push(Lit::Digest(regex(d), positive));
    }
    if let Some(p) = r.text("match_pattern") {
        lits.push(Lit::Pattern(regex(p), positive));
    }
    Ok(lits)
}

/// ProxySQL's `client_addr` (an address, or a prefix ending in `%`) as a
/// network; `None` for `%` (everyone).
fn client_network(a: &str) -> Result<Option<String>, String> {
    let Some(prefix) = a.strip_suffix('%') else {
        return match a.parse::<std::net::IpAddr>() {
            Ok(_) => Ok(Some(a.to_string())),
            Err(_) => Err(format!("client_addr {a:?} is not an IP address")),
        };
    };
    if prefix.is_empty() {
        return Ok(None);
    }
    let octets: Vec<&str> = prefix.trim_end_matches('.').split('.').collect();
    let whole =
        prefix.ends_with('.') && octets.len() < 4 && octets.iter().all(|o| o.parse::<u8>().is_ok());
    if !whole {
        return Err(format!(
            "client_addr {a:?} is a text prefix that is not whole IPv4 octets"
        ));
    }
    let mut parts: Vec<String> = octets.iter().map(|o| o.to_string()).collect();
    let bits = 8 * parts.len();
    parts.resize(4, "0".into());
    Ok(Some(format!("{}/{bits}", parts.join("."))))
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
