//! What the metrics endpoint serves: the registry's counters and
//! histograms ([`crate::metrics`]), plus gauges read from the shared state
//! at scrape time (pools, server health, views).

use causeway_common::metrics_http::Render;

use crate::health::{Lag, ServerHealth, Status};
use crate::metrics::*;
use crate::shared::Shared;

/// The registry plus what is read at scrape time: pools and server health.
#[derive(Debug)]
pub struct Live(pub std::sync::Arc<Shared>);

impl Render for Live {
    fn render(&self) -> String {
        use std::fmt::Write;
        let shared = &self.0;
        let mut out = shared.metrics.render();
        // The registry ends with "# EOF"; live gauges go before it.
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
        let pools = shared.pools.stats();
        gauge(
            &mut out,
            POOL_CONNECTIONS,
            "backend connections by server and state",
        );
        for p in &pools {
            let s = escape(&p.server);
            let _ = writeln!(
                out,
                "{POOL_CONNECTIONS}{{server=\"{s}\",state=\"in_use\"}} {}",
                p.open - p.idle.min(p.open)
            );
            let _ = writeln!(
                out,
                "{POOL_CONNECTIONS}{{server=\"{s}\",state=\"idle\"}} {}",
                p.idle
            );
        }
        gauge(
            &mut out,
            POOL_WAITING,
            "statements waiting for a backend connection, by server",
        );
        for p in &pools {
            let _ = writeln!(
                out,
                "{POOL_WAITING}{{server=\"{}\"}} {}",
                escape(&p.server),
                p.waiting
            );
        }
        gauge(
            &mut out,
            POOL_CONNECT_FAILURES,
            "consecutive failed connects by server",
        );
        for p in &pools {
            let _ = writeln!(
                out,
                "{POOL_CONNECT_FAILURES}{{server=\"{}\"}} {}",
                escape(&p.server),
                p.failures
            );
        }
        let health = shared.monitor.snapshot();
        let rt = shared.runtime();
        let unknown = ServerHealth::default();
        let rows: Vec<_> = rt
            .servers
            .iter()
            .map(|s| {
                (
                    escape(&s.name),
                    health.get(&s.name).unwrap_or(&unknown).clone(),
                )
            })
            .collect();
        gauge(
            &mut out,
            SERVER_UP,
            "1 when the server is usable (not shunned)",
        );
        for (s, h) in &rows {
            let up = u8::from(!matches!(h.status, Status::Shunned { .. }));
            let _ = writeln!(out, "{SERVER_UP}{{server=\"{s}\"}} {up}");
        }
        gauge(&mut out, SERVER_READ_ONLY, "1 when the server is read-only");
        for (s, h) in &rows {
            if let Some(ro) = h.read_only {
                let _ = writeln!(out, "{SERVER_READ_ONLY}{{server=\"{s}\"}} {}", u8::from(ro));
            }
        }
        gauge(
            &mut out,
            SERVER_LAG_SECONDS,
            "replication lag in seconds (-1: broken)",
        );
        for (s, h) in &rows {
            let lag = match h.lag {
                Lag::Seconds(n) => n as i64,
                Lag::Broken => -1,
                _ => continue,
            };
            let _ = writeln!(out, "{SERVER_LAG_SECONDS}{{server=\"{s}\"}} {lag}");
        }
        gauge(
            &mut out,
            SERVER_CHECK_FAILURES,
            "health checks in a row the server did not answer",
        );
        for (s, h) in &rows {
            let _ = writeln!(
                out,
                "{SERVER_CHECK_FAILURES}{{server=\"{s}\"}} {}",
                h.consecutive_errors
            );
        }
        gauge(
            &mut out,
            MONITOR_MISCONFIGURED,
            "1 while the server refuses the monitor's login or queries (a configuration error; not shunned)",
        );
        for (s, h) in &rows {
            let _ = writeln!(
                out,
                "{MONITOR_MISCONFIGURED}{{server=\"{s}\"}} {}",
                u8::from(h.misconfigured.is_some())
            );
        }
        render_writers(shared, &mut out);
        render_views(shared, &mut out);
        out.push_str("# EOF\n");
        out
    }
}

/// Per server: elected writer, fenced; per writer group: statements
/// waiting for a writer, acknowledged GTIDs the writer (or the server
/// writes wait for) lacks.
fn render_writers(shared: &Shared, out: &mut String) {
    use std::fmt::Write;
    let cur = shared.current();
    let (rt, m) = (&cur.rt, &cur.members);
    gauge(out, SERVER_WRITER, "1 for its cluster's elected writer");
    for (id, s) in rt.servers.with_ids() {
        let on = m.writer.contains(&Some(id));
        let _ = writeln!(
            out,
            "{SERVER_WRITER}{{server=\"{}\"}} {}",
            escape(&s.name),
            u8::from(on)
        );
    }
    gauge(
        out,
        SERVER_FENCED,
        "1 while writable but not the writer: it gets no statement",
    );
    for (id, s) in rt.servers.with_ids() {
        let on = m.fenced.contains(&id);
        let _ = writeln!(
            out,
            "{SERVER_FENCED}{{server=\"{}\"}} {}",
            escape(&s.name),
            u8::from(on)
        );
    }
    let waiting = shared.writers.waiting();
    let lost = shared.writers.lost();
    let sizes = shared.writers.sizes();
    gauge(
        out,
        ACKNOWLEDGED_INTERVALS,
        "intervals of the GTID set the router acknowledged, by writer hostgroup",
    );
    gauge(
        out,
        ACKNOWLEDGED_USERS,
        "users with an acknowledged GTID set of their own, by writer hostgroup",
    );
    gauge(
        out,
        WRITER_WAITING,
        "statements waiting for a writer, by writer hostgroup",
    );
    gauge(
        out,
        ACKNOWLEDGED_MISSING,
        "acknowledged GTIDs the writer lacks (lost, by policy) or the server writes wait for lacks",
    );
    for (g, group) in rt.groups.with_ids() {
        if group.role != crate::config::Role::Writer {
            continue;
        }
        let name = escape(&group.name);
        let n = waiting.get(&group.name).copied().unwrap_or(0);
        let _ = writeln!(out, "{WRITER_WAITING}{{hostgroup=\"{name}\"}} {n}");
        let (intervals, users) = sizes.get(&group.name).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "{ACKNOWLEDGED_INTERVALS}{{hostgroup=\"{name}\"}} {intervals}"
        );
        let _ = writeln!(out, "{ACKNOWLEDGED_USERS}{{hostgroup=\"{name}\"}} {users}");
        let missing: u128 = lost
            .get(&group.name)
            .map(|gap| gap.count())
            .into_iter()
            .chain(
                m.catching_up
                    .iter()
                    .filter(|(cg, ..)| *cg == g)
                    .map(|(_, _, gap)| gap.count())
                    .min(),
            )
            .sum();
        let _ = writeln!(
            out,
            "{ACKNOWLEDGED_MISSING}{{hostgroup=\"{name}\"}} {missing}"
        );
    }
}

/// The HELP and TYPE lines of a gauge rendered at scrape time.
fn gauge(out: &mut String, name: &str, help: &str) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// Per-server view gauges: age, distance from the cluster's primary,
/// reader stream up.
fn render_views(shared: &Shared, out: &mut String) {
    use std::fmt::Write;
    let cur = shared.current();
    let rt = &cur.rt;
    let members = &cur.members;
    let views = shared.views.read();
    let now = std::time::Instant::now();
    let seconds =
        |out: &mut String,
         name: &str,
         help: &str,
         of: &dyn Fn(&crate::views::ServerView) -> Option<std::time::Duration>| {
            gauge(out, name, help);
            for s in &rt.servers {
                if let Some(d) = views.get(&s.name).and_then(of) {
                    let _ = writeln!(
                        out,
                        "{name}{{server=\"{}\"}} {:.6}",
                        escape(&s.name),
                        d.as_secs_f64()
                    );
                }
            }
        };
    seconds(
        out,
        VIEW_AGE_SECONDS,
        "seconds since the server's view was confirmed",
        &|v| v.age(now),
    );
    gauge(
        out,
        VIEW_GTID_DISTANCE,
        "GTIDs the cluster's primary has that the server's view lacks",
    );
    for s in &rt.servers {
        let primary = members.members[s.cluster]
            .first()
            .and_then(|&p| views.get(&rt.servers[p].name));
        if let (Some(p), Some(v)) = (primary, views.get(&s.name)) {
            let _ = writeln!(
                out,
                "{VIEW_GTID_DISTANCE}{{server=\"{}\"}} {}",
                escape(&s.name),
                p.set.difference(&v.set).count()
            );
        }
    }
    seconds(
        out,
        VIEW_CATCH_UP_SECONDS,
        "moving average of the seconds the primary's GTIDs took to reach the server's view",
        &|v| v.catch_up,
    );
    seconds(
        out,
        WRITER_READ_SECONDS,
        "moving average of the seconds causal reads sent to the writer took",
        &|v| v.read_cost,
    );
    gauge(out, READER_CONNECTED, "1 while the reader stream is up");
    for s in rt.servers.iter().filter(|s| s.reader.is_some()) {
        let up = views.get(&s.name).is_some_and(|v| v.connected);
        let _ = writeln!(
            out,
            "{READER_CONNECTED}{{server=\"{}\"}} {}",
            escape(&s.name),
            u8::from(up)
        );
    }
}

/// A label value with `\\`, `"` and newlines escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
