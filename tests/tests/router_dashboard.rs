//! The operator's views of a router, against real servers:
//!
//! - the Grafana dashboard shipped in `router/dist/` names only metrics a
//!   real scrape of the router has (and only labels those metrics carry);
//! - `/dashboard.json` shows the sandbox's servers, their views and where
//!   reads went;
//! - the dashboard page in a real headless Chromium (Debian's, through
//!   chromedriver) renders a router that knows nothing yet, shows the
//!   sandbox's three servers, and, without a reload, shows replica1 falling
//!   behind once its applier is stopped while the primary takes writes; a
//!   screenshot is kept under the target directory and checked to be a real
//!   image. That test stops an applier, so it runs on a sandbox of its own
//!   (`Topology::isolated("dashboard")`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use causeway_e2e::browser::{png_stats, Browser};
use causeway_e2e::router::{opts, start_router};
use causeway_e2e::{http_get, workspace_root, Topology};
use causeway_router::causal::Scope;
use causeway_router::Shared;
use mysql_async::prelude::*;
use mysql_async::Conn;
use serde_json::{json, Value};

/// Serves `/metrics` and the dashboard of `shared` on an ephemeral port;
/// returns `http://127.0.0.1:port`.
async fn serve_http(shared: Arc<Shared>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(causeway_router::dashboard::serve(listener, shared));
    Ok(format!("http://{addr}"))
}

/// Blocking HTTP off the runtime's threads.
async fn get(url: String) -> Result<String> {
    tokio::task::spawn_blocking(move || http_get(&url)).await?
}

/// Metric names a scrape declares (`# TYPE`) or has series of, and per
/// name the label names its series carry.
fn scraped(text: &str) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut names = BTreeSet::new();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                names.insert(name.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..end].to_string();
        let set = labels.entry(name.clone()).or_default();
        if let Some(inner) = line[end..].strip_prefix('{') {
            for kv in inner.split("\",") {
                if let Some((k, _)) = kv.split_once('=') {
                    set.insert(k.trim_start_matches(',').to_string());
                }
            }
        }
        names.insert(name);
    }
    (names, labels)
}

/// Every PromQL expression of a Grafana dashboard: panel targets (rows
/// nested or not) and template variable queries.
fn expressions(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.clone(), e.to_string()));
                }
            }
            panels(&p["panels"], out);
        }
    }
    panels(&dash["panels"], &mut out);
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        if v["type"] == "query" {
            if let Some(q) = q {
                out.push((
                    format!("${}", v["name"].as_str().unwrap_or("")),
                    q.to_string(),
                ));
            }
        }
    }
    out
}

/// The metric names an expression names (`causeway_...` identifiers), and
/// the label names it groups by or matches on.
fn names_in(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if expr[i..].starts_with("causeway_") && (i == 0 || !ident(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !ident(bytes[j]))
                .unwrap_or(bytes.len());
            metrics.insert(expr[i..end].to_string());
            // Its matchers: {name=~"..", other="..."}
            if let Some(inner) = expr[end..].strip_prefix('{') {
                let close = inner.find('}').unwrap_or(inner.len());
                let mut in_str = false;
                let mut cur = String::new();
                for c in inner[..close].chars() {
                    match c {
                        '"' => in_str = !in_str,
                        _ if in_str => {}
                        '=' | '!' | '~' => {
                            if !cur.trim().is_empty() {
                                labels.insert(cur.trim().to_string());
                            }
                            cur.clear();
                        }
                        ',' => cur.clear(),
                        c => cur.push(c),
                    }
                }
            }
            i = end;
            continue;
        }
        i += 1;
    }
    for kw in ["by (", "by(", "without (", "without("] {
        for (at, _) in expr.match_indices(kw) {
            let rest = &expr[at + kw.len()..];
            let close = rest.find(')').unwrap_or(rest.len());
            labels.extend(
                rest[..close]
                    .split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
        }
    }
    if expr.starts_with("label_values(") {
        if let Some(l) = expr.trim_end_matches(')').rsplit(',').next() {
            labels.insert(l.trim().to_string());
        }
    }
    (metrics, labels)
}

/// Whether the scrape has metric `name`: a series of that name, or a family
/// declared under it once its suffix is taken off.
fn has_metric(names: &BTreeSet<String>, name: &str) -> bool {
    names.contains(name)
        || ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .any(|base| names.contains(base))
}

/// Some traffic through a router: writes, causal reads, a transaction, a
/// refused hint, so that every family has series.
async fn traffic(topo: &Topology, port: u16) -> Result<()> {
    let mut c = Conn::new(opts(topo, port, "APP", true)?).await?;
    c.query_drop("CREATE TABLE IF NOT EXISTS causeway.dashboard_probe (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await?;
    for i in 0..20 {
        c.exec_drop("INSERT INTO causeway.dashboard_probe (v) VALUES (?)", (i,))
            .await?;
        let _: Option<u64> = c
            .query_first("SELECT COUNT(*) FROM causeway.dashboard_probe")
            .await?;
    }
    c.query_drop("BEGIN").await?;
    let _: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM causeway.dashboard_probe")
        .await?;
    c.query_drop("COMMIT").await?;
    let refused = c
        .query_drop("/* causeway: hostgroup=nowhere */ SELECT 1")
        .await;
    ensure!(
        refused.is_err(),
        "a hint naming no hostgroup was not refused"
    );
    c.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_names_only_metrics_and_labels_a_real_scrape_has() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.causal_config(Scope::Session)?).await?;
    let base = serve_http(router.shared.clone()).await?;
    traffic(&topo, router.port).await?;
    let text = get(format!("{base}/metrics")).await?;
    let (names, labels) = scraped(&text);

    let path = workspace_root().join("router/dist/grafana-causeway.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    ensure!(dash["title"].is_string() && dash["uid"].is_string());
    let exprs = expressions(&dash);
    ensure!(exprs.len() >= 30, "only {} expressions", exprs.len());
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for (panel, expr) in &exprs {
        let (metrics, wanted) = names_in(expr);
        if metrics.is_empty() {
            problems.push(format!("{panel}: names no causeway metric: {expr}"));
        }
        for m in &metrics {
            named.insert(m.clone());
            if !has_metric(&names, m) {
                problems.push(format!("{panel}: {m} is not in the scrape"));
            }
        }
        // `instance` is Prometheus's own; `le` is every bucket's.
        for l in wanted
            .iter()
            .filter(|l| !matches!(l.as_str(), "instance" | "le"))
        {
            let carried = metrics
                .iter()
                .any(|m| labels.get(m.as_str()).is_some_and(|s| s.contains(l)));
            if !carried {
                problems.push(format!(
                    "{panel}: no series of {metrics:?} carries label {l}: {expr}"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "router/dist/grafana-causeway.json:\n{}\n\nscrape:\n{text}",
        problems.join("\n")
    );
    // It covers the families the issue asks for.
    for m in [
        "causeway_router_queries_total",
        "causeway_router_causal_reads_total",
        "causeway_router_causal_wait_seconds_bucket",
        "causeway_router_pool_connections",
        "causeway_router_server_up",
        "causeway_router_server_fenced",
        "causeway_router_acknowledged_missing_gtids",
        "causeway_router_errors_total",
        "causeway_router_writer_waits_total",
        "causeway_router_view_gtid_distance",
    ] {
        assert!(
            named.contains(m),
            "the Grafana dashboard has no panel on {m}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_document_shows_the_sandbox() -> Result<()> {
    let topo = Topology::get()?;
    let router = start_router(topo.causal_config(Scope::Session)?).await?;
    let base = serve_http(router.shared.clone()).await?;
    traffic(&topo, router.port).await?;
    let page = get(format!("{base}/dashboard")).await?;
    ensure!(page.contains("<title>Causeway router</title>"), "{page}");
    // Readers connect and a few samples are taken.
    let started = Instant::now();
    let doc = loop {
        let doc: Value = serde_json::from_str(&get(format!("{base}/dashboard.json")).await?)?;
        let servers = doc["servers"].as_array().cloned().unwrap_or_default();
        let ready = servers.len() == 3
            && servers.iter().all(|s| s["reader_connected"] == json!(true))
            && doc["history"]["t"].as_array().is_some_and(|t| t.len() >= 2);
        if ready {
            break doc;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the dashboard never showed three servers with their readers: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let servers = doc["servers"].as_array().context("servers")?;
    let names: Vec<&str> = servers.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["primary", "replica1", "replica2"]);
    assert_eq!(servers[0]["writer"], true);
    assert_eq!(servers[0]["role_in_force"], "primary");
    assert_eq!(servers[1]["role_in_force"], "replicas");
    for s in servers {
        assert_eq!(s["state"], "online", "{s}");
        assert!(s["gtid_distance"].is_u64(), "{s}");
        let port = s["address"]
            .as_str()
            .and_then(|a| a.rsplit_once(':'))
            .map(|p| p.1);
        assert!(
            topo.server_ports()
                .iter()
                .any(|p| Some(p.to_string().as_str()) == port),
            "{s}"
        );
    }
    assert_eq!(doc["pools"].as_array().map(Vec::len), Some(3));
    ensure!(
        doc["reads"]["replica"].as_u64().unwrap_or(0)
            + doc["reads"]["primary"].as_u64().unwrap_or(0)
            >= 20,
        "the causal reads were not counted: {:#}",
        doc["reads"]
    );
    ensure!(
        doc["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "hint")),
        "the refused hint was not counted: {:#}",
        doc["errors"]
    );
    // The costliest digests, most total time first: the probe's reads.
    let digests = doc["digests"].as_array().context("no digests")?;
    // (Per hostgroup: a causal read may be served by the primary.)
    let probes: u64 = digests
        .iter()
        .filter(|d| d["digest"] == "SELECT COUNT(*) FROM causeway.dashboard_probe")
        .filter_map(|d| d["count"].as_u64())
        .sum();
    ensure!(
        probes >= 20,
        "the probe's reads are not among the top digests: {digests:#?}"
    );
    let totals: Vec<f64> = digests
        .iter()
        .filter_map(|d| d["total_ms"].as_f64())
        .collect();
    ensure!(
        totals.len() == digests.len() && totals.windows(2).all(|w| w[0] >= w[1]),
        "not most total time first: {totals:?}"
    );
    Ok(())
}

/// The servers rows as the page shows them: name, state, distance.
const ROWS: &str = "return Array.from(document.querySelectorAll('tr[data-server]')).map(r => \
    ({name: r.dataset.server, state: r.dataset.state, distance: r.dataset.distance, \
      text: r.innerText}));";

/// What the page shows now: rows, polls since load, the live indicator.
fn look(browser: &Browser) -> Result<Value> {
    let script =
format!(
            "const rows = (() => {{ {ROWS} }})(); return {{rows, polls: Number(document.body.dataset.polls || 0), \
             live: document.getElementById('live-text').textContent, text: document.body.innerText, \
             marker: window.__marker || null}};"
        );
    tokio::task::block_in_place(|| browser.execute(&script, json!([])))
}

fn distance(view: &Value, server: &str) -> Option<u64> {
    view["rows"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == server)?["distance"]
        .as_str()?
        .parse()
        .ok()
}

/// Polls the page until `ok` holds, for at most `limit`.
async fn until(
    browser: &Browser,
    limit: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let started = Instant::now();
    loop {
        let view = look(browser)?;
        if ok(&view) {
            return Ok(view);
        }
        if started.elapsed() > limit {
            bail!("the page did not show {what} within {limit:?}; it shows:\n{view:#}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn writes_on_primary(topo: &Topology, n: usize) -> Result<()> {
    let mut c = Conn::new(opts(topo, topo.primary_port, "ADMIN", false)?).await?;
    c.query_drop("CREATE TABLE IF NOT EXISTS causeway.dashboard_probe (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await?;
    for i in 0..n {
        c.exec_drop(
            "INSERT INTO causeway.dashboard_probe (v) VALUES (?)",
            (i as i64,),
        )
        .await?;
    }
    c.disconnect().await?;
    Ok(())
}

async fn on_replica1(topo: &Topology, sql: &str) -> Result<()> {
    let mut c = Conn::new(opts(topo, topo.replica_ports[0], "ADMIN", false)?).await?;
    c.query_drop(sql).await.with_context(|| sql.to_string())?;
    c.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_servers_and_a_replica_falling_behind() -> Result<()> {
    let topo = Topology::isolated("dashboard")?;
    // A run that failed half-way may have left the applier stopped.
    on_replica1(&topo, "START REPLICA SQL_THREAD").await?;
    let browser = tokio::task::block_in_place(|| Browser::start(1400, 1300))?;

    // A router that knows nothing yet (its servers answer nobody): the page
    // renders all the same.
    let mut empty_cfg = topo.split_config()?;
    empty_cfg.monitor.enabled = false;
    for (i, s) in empty_cfg.servers.iter_mut().enumerate() {
        s.port = 9 + i as u16; // discard, and ports nothing listens on
    }
    let empty = causeway_router::Router::bind(empty_cfg, None).await?;
    let empty_base = serve_http(empty.shared()).await?;
    tokio::task::block_in_place(|| browser.goto(&format!("{empty_base}/dashboard")))?;
    let view = until(&browser, Duration::from_secs(15), "an empty router", |v| {
        v["polls"].as_u64() >= Some(1) && v["rows"].as_array().is_some_and(|r| r.len() == 3)
    })
    .await?;
    let text = view["text"].as_str().unwrap_or("");
    for shown in [
        "no causal read yet",
        "no digest yet",
        "no statement routed yet",
        "no samples yet",
    ] {
        ensure!(
            text.contains(shown),
            "the empty page lacks {shown:?}:\n{text}"
        );
    }

    screenshot(&browser, "dashboard-empty.png")?;

    let res = stalled_replica(&topo, &browser).await;
    // Whatever happened, replica1 applies again.
    let restarted = on_replica1(&topo, "START REPLICA SQL_THREAD").await;
    res?;
    restarted
}

async fn stalled_replica(topo: &Topology, browser: &Browser) -> Result<()> {
    let router = start_router(topo.causal_config(Scope::Session)?).await?;
    let base = serve_http(router.shared.clone()).await?;
    tokio::task::block_in_place(|| browser.goto(&format!("{base}/dashboard")))?;
    tokio::task::block_in_place(|| {
        browser.execute("window.__marker = 'not reloaded'; return null;", json!([]))
    })?;

    // The three servers, with their views (the readers connected).
    let view = until(
        browser,
        Duration::from_secs(30),
        "three servers in sync",
        |v| {
            let names: Vec<&str> = v["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["name"].as_str())
                .collect();
            // The monitor elected the writer, the readers sent their views.
            let writer = v["rows"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("writer"));
            names == ["primary", "replica1", "replica2"]
                && writer
                && ["primary", "replica1", "replica2"]
                    .iter()
                    .all(|s| distance(v, s) == Some(0))
        },
    )
    .await?;
    let text = view["text"].as_str().unwrap_or("");
    for shown in ["primary", "replica1", "replica2", "online", "writer"] {
        ensure!(text.contains(shown), "the page lacks {shown:?}:\n{text}");
    }
    let polls_before = view["polls"].as_u64().unwrap_or(0);

    // replica1's applier stops; the primary takes writes.
    on_replica1(topo, "STOP REPLICA SQL_THREAD").await?;
    let stopped = Instant::now();
    writes_on_primary(topo, 30).await?;
    let behind = until(browser, Duration::from_secs(10), "replica1 behind", |v| {
        distance(v, "replica1").is_some_and(|d| d >= 30) && distance(v, "replica2") == Some(0)
    })
    .await?;
    let first = distance(&behind, "replica1").unwrap_or(0);
    let shown_after = stopped.elapsed();
    let row = behind["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "replica1"))
        .cloned()
        .unwrap_or_default();
    let row_text = row["text"].as_str().unwrap_or("");
    for shown in ["behind primary", "stopped"] {
        ensure!(
            row_text.contains(shown),
            "replica1's row does not say {shown:?}: {row_text:?}"
        );
    }
    // More writes: the distance grows on the page.
    writes_on_primary(topo, 20).await?;
    let grown = until(
        browser,
        Duration::from_secs(10),
        "replica1 further behind",
        |v| distance(v, "replica1").is_some_and(|d| d >= first + 20),
    )
    .await?;
    ensure!(
        grown["marker"] == "not reloaded",
        "the page was reloaded: {grown:#}"
    );
    ensure!(
        grown["polls"].as_u64().unwrap_or(0) > polls_before,
        "the page stopped polling: {grown:#}"
    );
    // Let a sparkline point or two land before the picture.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let path = screenshot(browser, "dashboard.png")?;
    eprintln!(
        "replica1 shown {first} transactions behind {shown_after:?} after its applier stopped; \
         screenshot {}",
        path.display()
    );
    Ok(())
}

/// Saves a screenshot of the page as `name` under the target directory
/// and checks it is a real picture, not a blank window.
fn screenshot(browser: &Browser, name: &str) -> Result<std::path::PathBuf> {
    let png = tokio::task::block_in_place(|| browser.screenshot())?;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, &png)?;
    let stats = png_stats(&png).with_context(|| format!("{}", path.display()))?;
    ensure!(
        stats.width >= 800 && stats.height >= 600,
        "a small screenshot: {stats:?} ({})",
        path.display()
    );
    ensure!(
        stats.colours >= 32 && stats.not_background >= 0.05,
        "the screenshot looks blank: {stats:?} ({})",
        path.display()
    );
    Ok(path)
}
