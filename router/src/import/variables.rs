//! ProxySQL's global variables (`mysql-*`, `admin-*`) and its tables with
//! no counterpart, applied to a converted [`Config`]: pure.

use std::collections::BTreeSet;
use std::time::Duration;

use super::model::{Note, Proxysql};
use crate::config::{Config, Secret};

/// Applies the variables Causeway has an equivalent for, and lists every
/// other variable and every row of a table it has none for.
pub fn apply(p: &Proxysql, config: &mut Config, not: &mut Vec<Note>, diff: &mut Vec<Note>) {
    variables(p, config, not, diff);
    others(p, not);
}

fn variables(p: &Proxysql, config: &mut Config, not: &mut Vec<Note>, diff: &mut Vec<Note>) {
    let mut handled: BTreeSet<&str> = BTreeSet::new();
    let mut get = |name: &'static str| {
        handled.insert(name);
        p.variable(name)
            .map(|v| (v.value.trim().to_string(), v.origin.clone()))
    };
    let ms = |v: &str| v.parse::<u64>().ok().map(Duration::from_millis);
    let yes = |v: &str| matches!(v.to_ascii_lowercase().as_str(), "1" | "true");
    let m = &mut config.monitor;
    if let Some((v, _)) = get("mysql-monitor_enabled") {
        m.enabled = yes(&v);
    }
    m.user = get("mysql-monitor_username").map_or("monitor".into(), |v| v.0);
    m.password = Some(Secret(
        get("mysql-monitor_password").map_or("monitor".into(), |v| v.0),
    ));
    // One check does everything in Causeway: it runs as often as the
    // most frequent of ProxySQL's (defaults: ping 8 s, read_only 1 s,
    // lag 10 s).
    let mut intervals = Vec::new();
    for (name, default) in [
        ("mysql-monitor_ping_interval", 8000),
        ("mysql-monitor_read_only_interval", 1000),
        ("mysql-monitor_replication_lag_interval", 10000),
    ] {
        let v = get(name)
            .and_then(|(v, _)| ms(&v))
            .unwrap_or(Duration::from_millis(default));
        intervals.push(v);
    }
    let interval = intervals.iter().copied().filter(|d| !d.is_zero()).min();
    let interval = interval.unwrap_or(Duration::from_secs(1));
    m.interval = interval;
    if intervals.iter().any(|i| *i != interval) {
        diff.push(Note {
            origin: "mysql-monitor_*_interval".into(),
            what: format!(
                "Causeway checks connect, read_only and lag together, every {}",
                humantime::format_duration(interval)
            ),
        });
    }
    let m = &mut config.monitor;
    if let Some(t) = get("mysql-monitor_connect_timeout").and_then(|(v, _)| ms(&v)) {
        m.connect_timeout = t;
    }
    let timeouts: Vec<Duration> = [
        "mysql-monitor_ping_timeout",
        "mysql-monitor_read_only_timeout",
        "mysql-monitor_replication_lag_timeout",
    ]
    .into_iter()
    .filter_map(|n| get(n).and_then(|(v, _)| ms(&v)))
    .collect();
    if let Some(t) = timeouts.into_iter().filter(|d| !d.is_zero()).max() {
        m.query_timeout = t;
    }
    if let Some(n) = get("mysql-monitor_ping_max_failures").and_then(|(v, _)| v.parse().ok()) {
        m.shun_after_errors = u32::max(n, 1);
    }
    let also = get("mysql-monitor_writer_is_also_reader").is_none_or(|(v, _)| yes(&v));
    if !p.replication.is_empty() {
        config.routing.writer_is_also_reader = also;
    }
    if let Some((v, origin)) = get("mysql-interfaces") {
        let mut addrs = v.split(';').map(str::trim).filter(|a| !a.is_empty());
        match addrs.next().map(|a| (a, a.parse())) {
            Some((_, Ok(addr))) => config.frontend.listen = addr,
            Some((a, Err(_))) => not.push(Note {
                origin: origin.clone(),
                what: format!("interface {a}: Causeway listens on one TCP address"),
            }),
            None => {}
        }
        for a in addrs {
            not.push(Note {
                origin: origin.clone(),
                what: format!("interface {a}: Causeway listens on one TCP address"),
            });
        }
    }
    if let Some(n) = get("mysql-max_connections").and_then(|(v, _)| v.parse().ok()) {
        config.frontend.max_connections = n;
    }
    if let Some(t) = get("mysql-wait_timeout").and_then(|(v, _)| ms(&v)) {
        if !t.is_zero() {
            config.frontend.idle_timeout = t;
        }
    }
    if let Some(t) = get("mysql-connect_timeout_server").and_then(|(v, _)| ms(&v)) {
        if !t.is_zero() {
            config.backend.connect_timeout = t;
        }
    }
    if let Some(n) = get("mysql-max_allowed_packet").and_then(|(v, _)| v.parse().ok()) {
        config.frontend.max_packet_size = usize::max(n, 1024);
    }
    for v in &p.variables {
        if handled.contains(v.name.as_str()) {
            continue;
        }
        let secret = v.name.contains("password") || v.name.contains("credentials");
        let value = if secret {
            "(not shown)"
        } else {
            v.value.as_str()
        };
        let why = match v.name.as_str() {
            "mysql-threads" => "use causeway-router --threads".to_string(),
            n if n.starts_with("admin-") => {
                "ProxySQL's admin interface: Causeway's is configured in [admin]".to_string()
            }
            _ => "ProxySQL-only variable".to_string(),
        };
        not.push(Note {
            origin: v.origin.clone(),
            what: format!("{} = {value}: {why}", v.name),
        });
    }
}

fn others(p: &Proxysql, not: &mut Vec<Note>) {
    for (table, row) in &p.other {
        let why = match table.as_str() {
            "mysql_galera_hostgroups" => "Galera clusters: no equivalent",
            "mysql_group_replication_hostgroups" => "group replication: no equivalent",
            "mysql_aws_aurora_hostgroups" => "Aurora: no equivalent",
            "mysql_query_rules_fast_routing" => "fast routing by user and schema: not converted",
            _ => "no equivalent",
        };
        not.push(Note {
            origin: row.origin.clone(),
            what: format!("{table}: {why}"),
        });
    }
}
