//! The live dashboard, served by the router's HTTP listener beside
//! `/metrics` (the metrics port):
//!
//! | path | what |
//! |---|---|
//! | `GET /dashboard`, `GET /` | one HTML page, CSS, JavaScript and SVG inline: no external asset |
//! | `GET /dashboard.json` | the [`Document`] the page polls every second |
//!
//! ```text
//! browser --GET /dashboard--> page --every 1 s: GET dashboard.json--> document(shared)
//!   servers, pools:     status::{servers, pools}   (the admin tables read the same rows)
//!   history:            shared.history             (status::sample, one sample a second, 5 min)
//!   reads, errors:      the metrics registry       (causal_reads, queries, errors families)
//!   digests:            top_digests()              (shared.stats.digests, the 10 costliest)
//! ```
//! The page draws whatever the document holds and says so when it holds
//! nothing yet (a router just started, no reader, no traffic).

use std::sync::{Arc, PoisonError};

use causeway_common::metrics_http::{self, Page, Pages};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::config::Role;
use crate::history::History;
use crate::metrics::{CAUSAL_READS, ERRORS, QUERIES};
use crate::scrape::Live;
use crate::shared::Shared;
use crate::status::{self, PoolRow, ServerRow};

/// The page, as shipped.
const PAGE: &str = include_str!("page.html");

/// Serves `/metrics` and the dashboard on `listener` until the task is
/// dropped (what `causeway-router` runs on `metrics.listen`).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    metrics_http::serve_with(
        listener,
        Arc::new(Live(shared.clone())),
        Arc::new(Site(shared)),
    )
    .await
}

/// The dashboard's paths, for [`metrics_http::serve_with`].
#[derive(Debug)]
pub struct Site(pub Arc<Shared>);

impl Pages for Site {
    fn serves(&self, path: &str) -> bool {
        matches!(path, "/" | "/dashboard" | "/dashboard.json")
    }

    fn page(&self, path: &str) -> Option<Page> {
        match path {
            "/" | "/dashboard" => Some(Page {
                content_type: "text/html; charset=utf-8",
                body: PAGE.as_bytes().to_vec(),
            }),
            "/dashboard.json" => Some(Page {
                content_type: "application/json",
                // Serializing plain structs of strings and numbers cannot fail.
                body: serde_json::to_vec(&document(&self.0)).unwrap_or_default(),
            }),
            _ => None,
        }
    }
}

/// What `/dashboard.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// The router itself.
    pub router: RouterInfo,
    /// Every configured server ([`status::servers`]).
    pub servers: Vec<ServerRow>,
    /// Every configured server's pool ([`status::pools`]).
    pub pools: Vec<PoolRow>,
    /// The last minutes, one point a second.
    pub history: HistoryDoc,
    /// Where reads went.
    pub reads: Reads,
    /// Errors the router sent to clients, by kind, since start.
    pub errors: Vec<Count>,
    /// The costliest statement digests ([`top_digests`]).
    pub digests: Vec<DigestRow>,
}

/// The router as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct RouterInfo {
    /// Its version.
    pub version: &'static str,
    /// Wall clock of this document, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Client sessions logged in now.
    pub sessions: usize,
    /// Hostgroups an operator paused.
    pub paused: Vec<String>,
    /// Milliseconds between two history points.
    pub sample_every_ms: u64,
}

/// The history as series, aligned on `t`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistoryDoc {
    /// When each point was taken, milliseconds since the Unix epoch.
    pub t: Vec<u64>,
    /// Per server (configured now), its series.
    pub servers: Vec<ServerSeries>,
    /// Causal reads served by a replica, per second (per point).
    pub replica_reads: Vec<u64>,
    /// Causal reads sent to the primary instead, per point.
    pub primary_reads: Vec<u64>,
    /// Statements routed, per point.
    pub statements: Vec<u64>,
}

/// One server's series (`null` where it was not known).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerSeries {
    /// The server.
    pub name: String,
    /// GTID distance to its writer.
    pub distance: Vec<Option<u64>>,
    /// Replication lag in milliseconds.
    pub lag_ms: Vec<Option<u64>>,
    /// Connections in use.
    pub in_use: Vec<Option<usize>>,
}

/// Where reads went, since the router started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reads {
    /// Causal reads served by a replica.
    pub replica: u64,
    /// Causal reads sent to the primary.
    pub primary: u64,
    /// Causal reads by scope, where served and why.
    pub causal: Vec<CausalCount>,
    /// Statements by route and hostgroup.
    pub routes: Vec<RouteCount>,
}

/// Causal reads of one scope, served in one place for one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CausalCount {
    /// eventual, session, user, router, token, global.
    pub scope: String,
    /// replica or primary.
    pub served: String,
    /// Why (caught_up, not_caught_up, slow_catch_up, ...).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// Statements of one route to one hostgroup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteCount {
    /// Why they went there (read, write, transaction, ...).
    pub route: String,
    /// The hostgroup.
    pub hostgroup: String,
    /// `writer` or `reader` (empty for a hostgroup no longer configured).
    pub role: &'static str,
    /// How many.
    pub count: u64,
}

/// Something counted, by kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    /// What.
    pub kind: String,
    /// How many.
    pub count: u64,
}

/// One statement digest, as the dashboard lists the costliest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestRow {
    /// The normalized statement text.
    pub digest: String,
    /// Its schema.
    pub schema: String,
    /// The user who ran it.
    pub user: String,
    /// Where it was routed.
    pub hostgroup: String,
    /// Executions.
    pub count: u64,
    /// Total time, in milliseconds.
    pub total_ms: f64,
    /// 99th percentile, in milliseconds, when known.
    pub p99_ms: Option<f64>,
    /// Rows sent to clients.
    pub rows_sent: u64,
    /// Executions that ended in an error.
    pub errors: u64,
}

/// The costliest statement digests (most total time first, at most 10),
/// for the dashboard.
pub fn top_digests(shared: &Shared) -> Vec<DigestRow> {
    shared
        .stats
        .digests
        .top(10)
        .into_iter()
        .map(|d| DigestRow {
            digest: d.digest,
            schema: d.schema,
            user: d.user,
            hostgroup: d.hostgroup,
            count: d.count,
            total_ms: d.sum_ms,
            p99_ms: Some(d.p99_ms),
            rows_sent: d.rows_sent,
            errors: d.errors,
        })
        .collect()
}

/// The document as of now.
pub fn document(shared: &Shared) -> Document {
    let cur = shared.current();
    let history = shared
        .history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let names: Vec<String> = cur.rt.servers.iter().map(|s| s.name.clone()).collect();
    let role = |g: &str| match cur.rt.group_named(g).map(|g| cur.rt.groups[g].role) {
        Some(Role::Writer) => "writer",
        Some(Role::Reader) => "reader",
        None => "",
    };
    let [causal, queries, errors] = shared.metrics.values_of([
        &format!("{CAUSAL_READS}_total"),
        &format!("{QUERIES}_total"),
        &format!("{ERRORS}_total"),
    ]);
    let causal: Vec<CausalCount> = causal
        .into_iter()
        .map(|s| CausalCount {
            scope: s.label("scope").to_string(),
            served: s.label("served").to_string(),
            reason: s.label("reason").to_string(),
            count: s.value as u64,
        })
        .collect();
    let routes = queries
        .into_iter()
        .filter(|s| s.value > 0.0)
        .map(|s| RouteCount {
            route: s.label("route").to_string(),
            role: role(s.label("hostgroup")),
            hostgroup: s.label("hostgroup").to_string(),
            count: s.value as u64,
        })
        .collect();
    let errors = errors
        .into_iter()
        .map(|s| Count {
            kind: s.label("kind").to_string(),
            count: s.value as u64,
        })
        .collect();
    Document {
        router: RouterInfo {
            version: env!("CARGO_PKG_VERSION"),
            now_ms: status::unix_ms(std::time::SystemTime::now()),
            sessions: shared.sessions.lock().map(|s| s.len()).unwrap_or(0),
            paused: shared.ops.paused(),
            sample_every_ms: status::SAMPLE_EVERY.as_millis() as u64,
        },
        servers: status::servers(shared),
        pools: status::pools(shared),
        history: series(&history, &names),
        reads: Reads {
            replica: count(&causal, "replica"),
            primary: count(&causal, "primary"),
            causal,
            routes,
        },
        errors,
        digests: top_digests(shared),
    }
}

fn count(causal: &[CausalCount], served: &str) -> u64 {
    causal
        .iter()
        .filter(|c| c.served == served)
        .map(|c| c.count)
        .sum()
}

/// The history as series aligned on its points, for the servers `names`
/// (those configured now); read counters become per-point increases (pure).
pub fn series(history: &History, names: &[String]) -> HistoryDoc {
    let samples: Vec<_> = history.samples().collect();
    let per_point = |f: fn(&crate::history::ReadTotals) -> u64| -> Vec<u64> {
        samples
            .iter()
            .enumerate()
            .map(|(i, s)| match i {
                0 => 0,
                _ => f(&s.reads).saturating_sub(f(&samples[i - 1].reads)),
            })
            .collect()
    };
    HistoryDoc {
        t: samples.iter().map(|s| s.at_ms).collect(),
        servers: names
            .iter()
            .map(|name| {
                let of = |s: &&crate::history::Sample| s.server(name).cloned();
                let points: Vec<_> = samples.iter().map(of).collect();
                ServerSeries {
                    name: name.clone(),
                    distance: points.iter().map(|p| p.as_ref()?.distance).collect(),
                    lag_ms: points.iter().map(|p| p.as_ref()?.lag_ms).collect(),
                    in_use: points.iter().map(|p| Some(p.as_ref()?.in_use)).collect(),
                }
            })
            .collect(),
        replica_reads: per_point(|r| r.replica),
        primary_reads: per_point(|r| r.primary),
        statements: per_point(|r| r.statements),
    }
}

#[cfg(test)]
#[path = "dashboard_tests.rs"]
mod tests;
