//! The router's modules stand on three floors, and every `use crate::...`
//! points down or sideways, never up, without cycles (ARCHITECTURE.md draws
//! them):
//!
//! 1. ground: configuration types and the pure deciders — no sockets, no
//!    tasks: what a statement is, where it goes, what a session is made of,
//!    what a connection must run to serve it;
//! 2. state, and the framing it is built on: the configuration in force,
//!    views, pools, health, metrics, one framed connection;
//! 3. the tasks that serve clients: listener and handshake, the session
//!    driver, KILL, the metrics endpoint.
//!
//! The session driver is one type whose `impl` is split over several files
//! (`session/{driver,query,routing,conns,leave,forward,commands,causal,prepared,observe}.rs`);
//! they count as one module here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const GROUND: &[&str] = &[
    "ids",
    "acked",
    "error",
    "health",
    "failover",
    "sqlscan",
    "classify",
    "causal",
    "route",
    "rules",
    "config",
    "config::observe",
    "config::frontend",
    "config::monitor",
    "session::state",
    "session::track",
    "session::replay",
    "session::plan",
    "session::effects",
    "backend::stmts",
    "session::connid",
    "config::admin",
    "admin::engine",
    "history",
    "stats::histogram",
    "config::fleet",
    "fleet::view",
    "fleet::diff",
    "import::libconfig",
    "import::model",
    "import::flatten",
    "import::convert",
    "import::emit",
    "import::variables",
];

const STATE: &[&str] = &[
    "frontend::gate",
    "io",
    "tls",
    "backend",
    "backend::connect",
    "backend::query",
    "backend::pool",
    "runtime",
    "views",
    "global",
    "monitor",
    "metrics",
    "shared",
    "shared::election",
    "writers",
    "ops",
    "status",
    "stats",
    "stats::digests",
    "stats::errors",
    "stats::activity",
    "stats::querylog",
    "fleet::state",
    "import",
    "import::admin",
];

const TOP: &[&str] = &[
    "lib",
    "frontend",
    "frontend::listener",
    "frontend::handshake",
    "frontend::auth",
    "session",
    "session::driver",
    "session::command",
    "session::kill",
    "scrape",
    "admin",
    "admin::commands",
    "admin::sql",
    "admin::tables",
    "dashboard",
    "fleet",
    "fleet::etcd",
    "fleet::agent",
    "fleet::cli",
];

/// Files that are part of the session driver's one type.
const DRIVER_PARTS: &[&str] = &[
    "session::conns",
    "session::leave",
    "session::routing",
    "session::commands",
    "session::forward",
    "session::causal",
    "session::prepared",
    "session::observe",
    "session::query",
];

fn floor(m: &str) -> Option<usize> {
    [GROUND, STATE, TOP].iter().position(|f| f.contains(&m))
}

/// Module name of a source file (`session/state.rs` -> `session::state`).
fn module_of(rel: &Path) -> String {
    let s = rel.with_extension("").to_string_lossy().replace('/', "::");
    let s = s.strip_suffix("::mod").map(str::to_string).unwrap_or(s);
    if DRIVER_PARTS.contains(&s.as_str()) {
        "session::driver".into()
    } else {
        s
    }
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).expect("router/src").flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            let name = rel.to_string_lossy();
            if name.ends_with("_tests.rs") || name == "main.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("readable source");
            // Code only: not the unit tests, not comments (doc links).
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            out.push((module_of(rel), code));
        }
    }
}

/// The longest known module that `path` (after `crate::`) names.
fn resolve(path: &str, known: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|k| parts[..k].join("::"))
        .map(|m| {
            if DRIVER_PARTS.contains(&m.as_str()) {
                "session::driver".to_string()
            } else {
                m
            }
        })
        .find(|m| known.contains(m))
}

fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let known: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, code) in &files {
        let entry = deps.entry(m.clone()).or_default();
        let parent = match m.rsplit_once("::") {
            Some((p, _)) => p.to_string(),
            None if m == "session" => "session".to_string(),
            None => String::new(),
        };
        for (prefix, base) in [("crate::", String::new()), ("super::", parent)] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let full = if base.is_empty() {
                    path
                } else {
                    format!("{base}::{path}")
                };
                if let Some(d) = resolve(full.trim_end_matches(':'), &known) {
                    if d != *m {
                        entry.insert(d);
                    }
                }
            }
        }
    }
    deps
}

#[test]
fn every_module_has_a_floor() {
    let deps = dependencies();
    let missing: Vec<&String> = deps.keys().filter(|m| floor(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules without a floor in this test (and in ARCHITECTURE.md): {missing:?}"
    );
}

#[test]
fn dependencies_point_down_or_sideways() {
    let deps = dependencies();
    let mut up = Vec::new();
    for (m, ds) in &deps {
        let Some(f) = floor(m) else { continue };
        for d in ds {
            // `lib` re-exports; a module below naming it is a way up.
            if floor(d).is_some_and(|g| g > f) || (d == "lib" && m != "lib") {
                up.push(format!("{m} (floor {}) -> {d}", f + 1));
            }
        }
    }
    assert!(
        up.is_empty(),
        "dependencies pointing up:\n{}",
        up.join("\n")
    );
}

#[test]
fn there_are_no_cycles() {
    let deps = dependencies();
    fn visit(
        m: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|p| p == m) {
            return Some(format!("{} -> {m}", path[at..].join(" -> ")));
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in deps.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, deps, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in deps.keys() {
        if let Some(c) = visit(m, &deps, &mut Vec::new(), &mut done) {
            panic!("a cycle: {c}");
        }
    }
}

#[test]
fn the_ground_floor_does_no_io() {
    // No sockets, no tasks, no timers below the state floor.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    for (m, code) in &files {
        if floor(m) != Some(0) {
            continue;
        }
        for word in ["tokio::", "TcpStream", "async fn"] {
            assert!(!code.contains(word), "{m} uses {word}");
        }
    }
}
