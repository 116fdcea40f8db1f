//! The admin tables: their shapes, and their rows read from the router's
//! state at query time. Only the tables a query names are filled.

use std::sync::Arc;

use crate::admin::engine::{format_time, Kind, Schema, Table, Value};
use crate::metrics::Series;
use crate::shared::Shared;

use Kind::{Int, Real, Text};

/// `servers`: every configured server, its role in force and state.
pub static SERVERS: Schema = Schema {
    name: "servers",
    about: "servers: hostgroup, role in force, state and why, lag, GTID distance, missing acknowledged GTIDs",
    columns: &[
        ("name", Text),
        ("address", Text),
        ("hostgroup", Text),
        ("role", Text),
        ("writer", Int),
        ("state", Text),
        ("why", Text),
        ("lag_ms", Int),
        ("gtid_distance", Int),
        ("catchup_ms", Int),
        ("reader_connected", Int),
        ("missing_acknowledged", Text),
    ],
};

/// `pools`: backend connections per server.
pub static POOLS: Schema = Schema {
    name: "pools",
    about: "backend connections per server: in use, idle, opened, failed, queue waits",
    columns: &[
        ("server", Text),
        ("in_use", Int),
        ("idle", Int),
        ("opened", Int),
        ("failed", Int),
        ("queue_waits", Int),
        ("queue_timeouts", Int),
        ("waiting", Int),
        ("max_connections", Int),
    ],
};

/// `sessions`: the processlist.
pub static SESSIONS: Schema = Schema {
    name: "sessions",
    about: "client sessions (the processlist): statement, time, where it runs, pinned or multiplexed and why",
    columns: &[
        ("id", Int),
        ("user", Text),
        ("client", Text),
        ("schema", Text),
        ("tls", Int),
        ("command", Text),
        ("statement", Text),
        ("time_ms", Int),
        ("server", Text),
        ("pinned", Text),
        ("multiplexed", Int),
        ("statements", Int),
    ],
};

/// `query_digests`: statements by digest.
pub static QUERY_DIGESTS: Schema = Schema {
    name: "query_digests",
    about: "statements by digest, schema, user and hostgroup: count, times, rows, errors, replica vs writer reads (RESET query_digests)",
    columns: &[
        ("digest", Text),
        ("schema", Text),
        ("user", Text),
        ("hostgroup", Text),
        ("count", Int),
        ("sum_ms", Real),
        ("min_ms", Real),
        ("max_ms", Real),
        ("p50_ms", Real),
        ("p99_ms", Real),
        ("rows_sent", Int),
        ("errors", Int),
        ("replica_reads", Int),
        ("writer_reads", Int),
        ("first_seen", Text),
        ("last_seen", Text),
    ],
};

/// `errors`: recent errors sent to clients, by kind.
pub static ERRORS: Schema = Schema {
    name: "errors",
    about: "errors sent to clients by kind, with counts (RESET errors)",
    columns: &[
        ("code", Int),
        ("sql_state", Text),
        ("kind", Text),
        ("origin", Text),
        ("last_message", Text),
        ("count", Int),
        ("first_seen", Text),
        ("last_seen", Text),
    ],
};

/// `config`: the configuration in force, flattened, secrets redacted.
pub static CONFIG: Schema = Schema {
    name: "config",
    about: "the configuration in force (secrets redacted), its source and revision",
    columns: &[
        ("key", Text),
        ("value", Text),
        ("source", Text),
        ("revision", Int),
        ("loaded_at", Text),
    ],
};

/// `causal_reads`: causal reads by scope, where served, why.
pub static CAUSAL_READS: Schema = Schema {
    name: "causal_reads",
    about: "causal reads by scope, where they were served and why",
    columns: &[
        ("scope", Text),
        ("served", Text),
        ("reason", Text),
        ("count", Int),
    ],
};

/// `causal_wait`: the histogram of causal-read waits.
pub static CAUSAL_WAIT: Schema = Schema {
    name: "causal_wait",
    about: "how long causal reads waited for a replica (cumulative histogram)",
    columns: &[("le_ms", Real), ("count", Int)],
};

/// `metrics`: every Prometheus sample, as scraped.
pub static METRICS: Schema = Schema {
    name: "metrics",
    about: "every metric sample the metrics endpoint serves",
    columns: &[("name", Text), ("labels", Text), ("value", Real)],
};

/// `paused`: the hostgroups an operator paused.
pub static PAUSED: Schema = Schema {
    name: "paused",
    about: "hostgroups paused by PAUSE (new statements wait for RESUME)",
    columns: &[("hostgroup", Text)],
};

/// `fleet`: the routers of the fleet (configuration from etcd).
pub static FLEET: Schema = Schema {
    name: "fleet",
    about:
        "live routers of the fleet (etcd): configuration revision in force, latest, last refused",
    columns: &[
        ("router_id", Text),
        ("address", Text),
        ("admin", Text),
        ("metrics", Text),
        ("version", Text),
        ("pid", Int),
        ("started", Text),
        ("config_revision", Int),
        ("latest_revision", Int),
        ("config_since", Text),
        ("on_latest", Int),
        ("reload_failed", Int),
        ("last_error", Text),
        ("problem", Text),
        ("this_router", Int),
        ("etcd_link", Text),
    ],
};

/// Every table, in `SHOW TABLES` order.
pub static ALL: &[&Schema] = &[
    &SERVERS,
    &POOLS,
    &SESSIONS,
    &QUERY_DIGESTS,
    &ERRORS,
    &CAUSAL_READS,
    &CAUSAL_WAIT,
    &CONFIG,
    &METRICS,
    &PAUSED,
    &FLEET,
];

/// Every table, those `sql` names filled from `shared`.
pub fn snapshot(shared: &Arc<Shared>, sql: &str) -> Vec<Table> {
    let lower = sql.to_ascii_lowercase();
    let mut metrics: Option<Vec<(String, Series)>> = None;
    let mut samples = || {
        metrics
            .get_or_insert_with(|| {
                crate::metrics::parse_all_series(&causeway_common::metrics_http::Render::render(
                    &crate::scrape::Live(shared.clone()),
                ))
            })
            .clone()
    };
    ALL.iter()
        .map(|&schema| {
            let rows = if !names(&lower, schema.name) {
                Vec::new()
            } else {
                match schema.name {
                    "servers" => servers(shared),
                    "pools" => pools(shared),
                    "sessions" => sessions(shared),
                    "query_digests" => query_digests(shared),
                    "errors" => errors(shared),
                    "config" => config(shared),
                    "causal_reads" => causal_reads(&samples()),
                    "causal_wait" => causal_wait(&samples()),
                    "metrics" => samples()
                        .into_iter()
                        .map(|(name, s)| vec![name.into(), labels_text(&s).into(), s.value.into()])
                        .collect(),
                    "fleet" => fleet(shared),
                    "paused" => shared
                        .ops
                        .paused()
                        .into_iter()
                        .map(|g| vec![g.into()])
                        .collect(),
                    _ => Vec::new(),
                }
            };
            Table { schema, rows }
        })
        .collect()
}

/// Whether `sql` (lower case) names `table` as a word.
fn names(sql: &str, table: &str) -> bool {
    sql.match_indices(table).any(|(at, _)| {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        !word(sql[..at].chars().next_back()) && !word(sql[at + table.len()..].chars().next())
    })
}

fn servers(shared: &Shared) -> Vec<Vec<Value>> {
    crate::status::servers(shared)
        .into_iter()
        .map(|s| {
            vec![
                s.name.into(),
                s.address.into(),
                s.hostgroup.into(),
                s.role_in_force.into(),
                s.writer.into(),
                s.state.name().into(),
                s.why.into(),
                s.lag_ms.into(),
                s.gtid_distance.into(),
                s.catchup_ms.into(),
                s.reader_connected.into(),
                s.missing_acknowledged.into(),
            ]
        })
        .collect()
}

fn pools(shared: &Shared) -> Vec<Vec<Value>> {
    crate::status::pools(shared)
        .into_iter()
        .map(|p| {
            vec![
                p.server.into(),
                p.in_use.into(),
                p.idle.into(),
                p.opened.into(),
                p.failed.into(),
                p.queue_waits.into(),
                p.queue_timeouts.into(),
                p.waiting.into(),
                p.max_connections.into(),
            ]
        })
        .collect()
}

fn sessions(shared: &Shared) -> Vec<Vec<Value>> {
    shared
        .sessions_snapshot()
        .into_iter()
        .map(|s| {
            vec![
                i64::from(s.id).into(),
                s.user.into(),
                s.client.to_string().into(),
                s.schema.into(),
                s.tls.into(),
                s.command.label().into(),
                s.statement.into(),
                s.time_ms.into(),
                s.server.into(),
                s.pinned.clone().into(),
                s.pinned.is_none().into(),
                s.statements.into(),
            ]
        })
        .collect()
}

fn query_digests(shared: &Shared) -> Vec<Vec<Value>> {
    shared
        .stats
        .digests
        .snapshot()
        .into_iter()
        .map(|d| {
            vec![
                d.digest.into(),
                d.schema.into(),
                d.user.into(),
                d.hostgroup.into(),
                d.count.into(),
                d.sum_ms.into(),
                d.min_ms.into(),
                d.max_ms.into(),
                d.p50_ms.into(),
                d.p99_ms.into(),
                d.rows_sent.into(),
                d.errors.into(),
                d.replica_reads.into(),
                d.writer_reads.into(),
                format_time(d.first_seen).into(),
                format_time(d.last_seen).into(),
            ]
        })
        .collect()
}

fn errors(shared: &Shared) -> Vec<Vec<Value>> {
    shared
        .stats
        .errors
        .snapshot()
        .into_iter()
        .map(|e| {
            vec![
                i64::from(e.code).into(),
                e.sql_state.into(),
                e.kind.into(),
                e.origin.label().into(),
                e.last_message.into(),
                e.count.into(),
                format_time(e.first_seen).into(),
                format_time(e.last_seen).into(),
            ]
        })
        .collect()
}

fn fleet(shared: &Shared) -> Vec<Vec<Value>> {
    use crate::fleet::state::{Link, Source};
    let snap = shared.fleet.snapshot();
    let me = match &snap.source {
        Source::Etcd { router_id, .. } => router_id.clone(),
        Source::File => return Vec::new(),
    };
    let secs = |s: u64| format_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
    let link = match &snap.link {
        Link::Unused => String::new(),
        Link::Up(t) => format!("up since {}", format_time(*t)),
        Link::Down(t, why) => format!("down since {}: {why}", format_time(*t)),
    };
    snap.rows
        .iter()
        .map(|r| {
            let own = r.reg.id == me;
            vec![
                r.reg.id.clone().into(),
                r.reg.address.clone().into(),
                Value::from(r.reg.admin.clone().unwrap_or_default()),
                Value::from(r.reg.metrics.clone().unwrap_or_default()),
                r.reg.version.clone().into(),
                u64::from(r.reg.pid).into(),
                secs(r.reg.started).into(),
                r.reg.config_revision.into(),
                r.latest.into(),
                secs(r.reg.config_since).into(),
                (!r.behind).into(),
                r.reload_failed.into(),
                r.reg.last_error.clone().unwrap_or_default().into(),
                r.problem().into(),
                own.into(),
                if own { link.clone() } else { String::new() }.into(),
            ]
        })
        .collect()
}

fn config(shared: &Shared) -> Vec<Vec<Value>> {
    let rt = shared.runtime();
    let (mut revision, loaded_at) = shared.revision();
    let source = match shared.fleet.etcd() {
        Some(e) => {
            revision = shared.fleet.applied_revision().max(0) as u64;
            format!("etcd:{}", e.key)
        }
        None => shared
            .config_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(built in)".to_string()),
    };
    let mut flat = Vec::new();
    if let Ok(v) = serde_json::to_value(&rt.config) {
        flatten("", &v, &mut flat);
    }
    flat.into_iter()
        .map(|(k, v)| {
            vec![
                k.into(),
                v.into(),
                source.as_str().into(),
                revision.into(),
                format_time(loaded_at).into(),
            ]
        })
        .collect()
}

/// `value` as dotted keys and text values (`users[0].name = "app"`).
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
    use serde_json::Value as J;
    match value {
        J::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        J::Array(a) if a.iter().any(|v| v.is_object()) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        J::Null => out.push((prefix.to_string(), None)),
        J::String(s) => out.push((prefix.to_string(), Some(s.clone()))),
        other => out.push((prefix.to_string(), Some(other.to_string()))),
    }
}

/// A series' labels as the exposition writes them (`a="x",b="y"`).
fn labels_text(s: &Series) -> String {
    s.labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", crate::scrape::escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The series of metric `name` among `samples`.
fn named<'a>(samples: &'a [(String, Series)], name: &'a str) -> impl Iterator<Item = &'a Series> {
    samples
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, s)| s)
}

fn causal_reads(samples: &[(String, Series)]) -> Vec<Vec<Value>> {
    let name = format!("{}_total", crate::metrics::CAUSAL_READS);
    named(samples, &name)
        .map(|s| {
            vec![
                s.label("scope").into(),
                s.label("served").into(),
                s.label("reason").into(),
                (s.value as i64).into(),
            ]
        })
        .collect()
}

fn causal_wait(samples: &[(String, Series)]) -> Vec<Vec<Value>> {
    let name = format!("{}_bucket", crate::metrics::CAUSAL_WAIT_SECONDS);
    named(samples, &name)
        .map(|s| {
            let le = s.label("le").parse::<f64>().ok().map(|v| v * 1000.0);
            vec![le.into(), (s.value as i64).into()]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_found_as_words() {
        assert!(names("select * from servers", "servers"));
        assert!(names("select * from servers,pools", "pools"));
        assert!(!names("select * from my_servers", "servers"));
        assert!(!names("select * from serversx", "servers"));
    }

    #[test]
    fn the_exposition_parses_into_samples_with_labels() {
        let text = "# HELP x y\n# TYPE x counter\n\
                    causeway_router_causal_reads_total{scope=\"session\",served=\"replica\",reason=\"applied\"} 12\n\
                    plain 3.5\n\
                    causeway_router_causal_wait_seconds_bucket{le=\"0.005\"} 4\n# EOF\n";
        let s = crate::metrics::parse_all_series(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].1.label("served"), "replica");
        assert_eq!(s[0].1.label("scope"), "session");
        assert_eq!(s[0].1.label("nope"), "");
        assert_eq!(
            labels_text(&s[0].1),
            "scope=\"session\",served=\"replica\",reason=\"applied\""
        );
        assert_eq!(s[1].0, "plain");
        assert_eq!(s[1].1.value, 3.5);
        let reads = causal_reads(&s);
        assert_eq!(
            reads,
            vec![vec![
                "session".into(),
                "replica".into(),
                "applied".into(),
                12i64.into()
            ]]
        );
        assert_eq!(causal_wait(&s), vec![vec![5.0.into(), 4i64.into()]]);
    }

    #[test]
    fn configuration_flattens_to_dotted_keys() {
        let v =
            serde_json::json!({"a": {"b": 1, "c": "x"}, "users": [{"name": "app"}], "l": [1, 2]});
        let mut out = Vec::new();
        flatten("", &v, &mut out);
        out.sort();
        assert_eq!(
            out,
            vec![
                ("a.b".to_string(), Some("1".to_string())),
                ("a.c".to_string(), Some("x".to_string())),
                ("l".to_string(), Some("[1,2]".to_string())),
                ("users[0].name".to_string(), Some("app".to_string())),
            ]
        );
    }
}
