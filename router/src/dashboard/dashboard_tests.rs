//! The dashboard's document from a router that has seen nothing, and from
//! a made-up history; the page it serves.

use std::path::Path;

use super::*;
use crate::config::Config;
use crate::history::{ReadTotals, Sample, ServerSample};

const CONFIG: &str = r#"
[[hostgroups]]
name = "primary"
[[hostgroups]]
name = "replicas"
role = "reader"
writer = "primary"
[[servers]]
name = "primary"
port = 1
hostgroup = "primary"
[[servers]]
name = "replica1"
port = 2
hostgroup = "replicas"
[[servers]]
name = "replica2"
port = 3
hostgroup = "replicas"
[[users]]
name = "app"
password = "pw"
[backend.tls]
mode = "disabled"
[monitor]
enabled = false
"#;

fn shared() -> Arc<Shared> {
    let cfg = Config::from_toml(CONFIG, Path::new("r.toml")).unwrap();
    Arc::new(Shared::new(cfg).unwrap())
}

fn sample(at_ms: u64, reads: (u64, u64, u64), servers: &[(&str, u64)]) -> Sample {
    Sample {
        at_ms,
        servers: servers
            .iter()
            .map(|&(name, d)| ServerSample {
                name: name.into(),
                distance: Some(d),
                lag_ms: Some(d * 10),
                applied: Some(100),
                in_use: 1,
            })
            .collect(),
        reads: ReadTotals {
            replica: reads.0,
            primary: reads.1,
            statements: reads.2,
        },
    }
}

#[test]
fn history_becomes_aligned_series_and_counters_become_increases() {
    let mut h = History::default();
    h.push(sample(1000, (10, 1, 50), &[("a", 0), ("b", 3)]));
    h.push(sample(2000, (15, 1, 70), &[("a", 0)]));
    h.push(sample(3000, (25, 4, 60), &[("a", 0), ("b", 9)]));
    let names = ["a".to_string(), "b".to_string(), "new".to_string()];
    let doc = series(&h, &names);
    assert_eq!(doc.t, [1000, 2000, 3000]);
    assert_eq!(doc.replica_reads, [0, 5, 10]);
    assert_eq!(doc.primary_reads, [0, 0, 3]);
    assert_eq!(doc.statements, [0, 20, 0], "a counter going back counts 0");
    assert_eq!(doc.servers.len(), 3);
    assert_eq!(doc.servers[1].name, "b");
    assert_eq!(doc.servers[1].distance, [Some(3), None, Some(9)]);
    assert_eq!(doc.servers[1].lag_ms, [Some(30), None, Some(90)]);
    assert_eq!(doc.servers[1].in_use, [Some(1), None, Some(1)]);
    assert_eq!(doc.servers[2].distance, [None, None, None]);
    assert_eq!(series(&History::default(), &names).t, Vec::<u64>::new());
}

#[tokio::test]
async fn a_router_that_saw_nothing_has_a_document_all_the_same() {
    let shared = shared();
    let doc = document(&shared);
    let json = serde_json::to_value(&doc).unwrap();
    let names: Vec<&str> = json["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["primary", "replica1", "replica2"]);
    assert_eq!(json["servers"][1]["state"], "online");
    assert_eq!(json["servers"][1]["gtid_distance"], serde_json::Value::Null);
    assert_eq!(json["pools"].as_array().unwrap().len(), 3);
    assert_eq!(json["pools"][2]["max_connections"], 1000);
    assert_eq!(json["history"]["t"], serde_json::json!([]));
    assert_eq!(json["history"]["servers"].as_array().unwrap().len(), 3);
    assert_eq!(json["reads"]["replica"], 0);
    assert_eq!(json["digests"], serde_json::json!([]));
    assert_eq!(json["router"]["sessions"], 0);
    assert_eq!(json["router"]["sample_every_ms"], 1000);
}

#[tokio::test]
async fn reads_and_errors_come_from_the_registry() {
    let shared = shared();
    let m = &shared.metrics;
    for _ in 0..3 {
        m.causal("session", "replica", "caught_up");
    }
    m.causal("session", "primary", "not_caught_up");
    m.routed("read", "replicas");
    m.routed("write", "primary");
    m.error("no_backend");
    shared.ops.set_paused("replicas", true);
    status::sample_now(&shared);
    let doc = document(&shared);
    assert_eq!((doc.reads.replica, doc.reads.primary), (3, 1));
    assert_eq!(doc.reads.causal.len(), 2);
    let read = doc.reads.routes.iter().find(|r| r.route == "read").unwrap();
    assert_eq!((read.hostgroup.as_str(), read.role), ("replicas", "reader"));
    let write = doc
        .reads
        .routes
        .iter()
        .find(|r| r.route == "write")
        .unwrap();
    assert_eq!(write.role, "writer");
    assert!(doc.reads.routes.iter().all(|r| r.count > 0));
    assert_eq!(doc.errors[0].kind, "no_backend");
    assert_eq!(doc.router.paused, ["replicas"]);
    assert_eq!(doc.history.t.len(), 1);
    assert_eq!(doc.history.servers[0].in_use, [Some(0)]);
}

#[tokio::test]
async fn the_site_serves_the_page_and_the_document() {
    let site = Site(shared());
    for path in ["/", "/dashboard", "/dashboard.json"] {
        assert!(site.serves(path), "{path}");
    }
    assert!(!site.serves("/metrics") && !site.serves("/dashboard.js"));
    assert_eq!(site.page("/nothing"), None);
    let page = site.page("/dashboard").unwrap();
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert_eq!(site.page("/").unwrap(), page);
    let json = site.page("/dashboard.json").unwrap();
    assert_eq!(json.content_type, "application/json");
    let doc: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert!(doc["servers"].is_array());
}

#[test]
fn the_page_needs_no_external_asset() {
    let page = PAGE.to_ascii_lowercase();
    assert!(page.starts_with("<!doctype html>"));
    for external in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "href='http",
        "url(http",
        "@import",
        "src=\"//",
        "href=\"//",
        "<link",
    ] {
        assert!(!page.contains(external), "the page loads {external}...");
    }
    // It polls the document relative to itself.
    assert!(PAGE.contains("'dashboard.json'"));
}
