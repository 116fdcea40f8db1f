//! The query log (`[query_log]`): one JSON line per statement (a sample of
//! them; every one that ends in an error), saying where it was routed and
//! why, so a DBA can see why a read went where it went.
//!
//! ```text
//! session ──try_send(line)──> bounded channel ──> writer thread ──> file (appended)
//!            full: dropped, counted (causeway_router_query_log_dropped); never waits
//! reload ──> the file opened again (log rotation), or closed when disabled
//! ```
//!
//! A line:
//!
//! ```json
//! {"time":"2025-01-01T10:00:00.123Z","session":12,"user":"app","schema":"shop",
//!  "digest":"SELECT * FROM t WHERE id = ?","hostgroup":"replicas","server":"replica1",
//!  "route":"read","causal":{"scope":"session","served":"replica","reason":"caught_up"},
//!  "duration_ms":0.412,"rows":1,"error":null}
//! ```

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::QueryLogConfig;

/// Lines waiting for the writer at most.
pub const CHANNEL_LINES: usize = 8192;

/// Where a causal read went and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CausalNote {
    /// Its consistency scope (`session`, `user`, ...).
    pub scope: &'static str,
    /// `replica` or `primary`.
    pub served: &'static str,
    /// Why (`caught_up`, `not_caught_up`, `no_healthy_replica`, ...).
    pub reason: &'static str,
}

/// One statement's line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine<'a> {
    /// When it ended (RFC 3339, UTC, milliseconds).
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// The session's id.
    pub session: u32,
    /// The session's user.
    pub user: &'a str,
    /// Its default schema.
    pub schema: Option<&'a str>,
    /// The statement's digest.
    pub digest: &'a str,
    /// The hostgroup it ran in (none: refused or answered by the router).
    pub hostgroup: Option<&'a str>,
    /// The server it ran on.
    pub server: Option<&'a str>,
    /// Why it went there (`read`, `write`, `transaction`,
    /// `session_state`, `hint`, `rule`).
    pub route: Option<&'static str>,
    /// For a causal read: where it was served and why.
    pub causal: Option<CausalNote>,
    /// From its arrival to the end of its response.
    pub duration_ms: f64,
    /// Result-set rows sent.
    pub rows: u64,
    /// The code of the ERR it ended with.
    pub error: Option<u16>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

/// What the writer thread gets.
#[derive(Debug)]
enum Msg {
    Line(Vec<u8>),
    /// Look at the file to write to (a reload changed it).
    Wake,
}

/// The file the writer writes to next: a new one, or none (disabled).
#[derive(Debug)]
enum Target {
    Open(File),
    Close,
}

/// The query log, shared by every session.
#[derive(Debug)]
pub struct QueryLog {
    enabled: AtomicBool,
    /// A statement is logged when a draw below this comes (sample × 2^64).
    threshold: AtomicU64,
    /// The writer's channel, made when the log is first enabled (a
    /// reload hands the writer a new file, not a new channel).
    tx: OnceLock<mpsc::Sender<Msg>>,
    next: Arc<Mutex<Option<Target>>>,
    dropped: Counter,
}

impl QueryLog {
    /// A log that is off; lines it cannot take count in `dropped`.
    pub fn new(dropped: Counter) -> QueryLog {
        QueryLog {
            enabled: AtomicBool::new(false),
            threshold: AtomicU64::new(0),
            tx: OnceLock::new(),
            next: Arc::default(),
            dropped,
        }
    }

    /// Puts `c` in force: when enabled, `c.path` is opened (again: a
    /// reload after a log rotation starts a new file) for appending; an
    /// error leaves everything as it was.
    pub fn configure(&self, c: &QueryLogConfig) -> std::io::Result<()> {
        if !c.enabled {
            if self.enabled.swap(false, Ordering::Relaxed) {
                self.retarget(Target::Close);
            }
            return Ok(());
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&c.path)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("query_log.path {}: {e}", c.path.display()),
                )
            })?;
        let threshold = if c.sample >= 1.0 {
            u64::MAX
        } else {
            (c.sample.max(0.0) * u64::MAX as f64) as u64
        };
        self.threshold.store(threshold, Ordering::Relaxed);
        self.retarget(Target::Open(file));
        self.enabled.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Hands the writer its next file, starting the writer if none runs.
    fn retarget(&self, target: Target) {
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
        let sender = self.tx.get_or_init(|| {
            let (sender, rx) = mpsc::channel(CHANNEL_LINES);
            let next = self.next.clone();
            std::thread::Builder::new()
                .name("query-log".into())
                .spawn(move || write_lines(rx, &next))
                .map_err(|e| tracing::error!(error = %e, "the query log's writer did not start"))
                .ok();
            sender
        });
        // A full channel wakes the writer anyway.
        let _ = sender.try_send(Msg::Wake);
    }

    /// Whether the log is on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Whether a statement is logged: the log is on, and the statement
    /// ended in an error or `draw` (uniform over u64) falls in the sample.
    pub fn wants(&self, draw: u64, error: bool) -> bool {
        self.enabled() && (error || draw < self.threshold.load(Ordering::Relaxed))
    }

    /// Queues `line` for the writer; dropped (and counted) when the writer
    /// is behind by [`CHANNEL_LINES`] lines.
    pub fn write(&self, line: &LogLine<'_>) {
        let mut bytes = Vec::with_capacity(256);
        if serde_json::to_writer(&mut bytes, line).is_err() {
            return;
        }
        bytes.push(b'\n');
        let sent = self
            .tx
            .get()
            .is_some_and(|t| t.try_send(Msg::Line(bytes)).is_ok());
        if !sent {
            self.dropped.inc();
        }
    }
}

/// The writer: lines in the order they came, flushed whenever none is
/// waiting; a new file when [`QueryLog::configure`] put one in `next`.
/// Ends when the log is dropped.
fn write_lines(mut rx: mpsc::Receiver<Msg>, next: &Mutex<Option<Target>>) {
    let mut out: Option<std::io::BufWriter<File>> = None;
    let mut failed = false;
    while let Some(first) = rx.blocking_recv() {
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            if let Some(t) = next.lock().unwrap_or_else(|p| p.into_inner()).take() {
                if let Some(mut old) = out.take() {
                    let _ = old.flush();
                }
                out = match t {
                    Target::Open(f) => Some(std::io::BufWriter::with_capacity(64 << 10, f)),
                    Target::Close => None,
                };
                failed = false;
            }
            if let (Msg::Line(line), Some(w)) = (m, out.as_mut()) {
                if let Err(e) = w.write_all(&line) {
                    if !std::mem::replace(&mut failed, true) {
                        tracing::error!(error = %e, "the query log cannot be written");
                    }
                }
            }
            msg = rx.try_recv().ok();
        }
        if let Some(w) = out.as_mut() {
            let _ = w.flush();
        }
    }
    if let Some(mut w) = out {
        let _ = w.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(session: u32, error: Option<u16>) -> LogLine<'static> {
        LogLine {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500),
            session,
            user: "app",
            schema: Some("shop"),
            digest: "SELECT * FROM t WHERE id = ?",
            hostgroup: Some("replicas"),
            server: Some("replica1"),
            route: Some("read"),
            causal: Some(CausalNote {
                scope: "session",
                served: "replica",
                reason: "caught_up",
            }),
            duration_ms: 0.25,
            rows: 1,
            error,
        }
    }

    fn read_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..500 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= n {
                return text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("fewer than {n} lines in {}", path.display());
    }

    #[test]
    fn a_line_is_one_json_object() {
        let mut v = serde_json::to_vec(&line(3, Some(1062))).unwrap();
        v.push(b'\n');
        let j: serde_json::Value = serde_json::from_slice(&v).unwrap();
        assert_eq!(j["time"], "1970-01-01T00:00:01.500Z");
        assert_eq!(j["session"], 3);
        assert_eq!(j["digest"], "SELECT * FROM t WHERE id = ?");
        assert_eq!(j["causal"]["reason"], "caught_up");
        assert_eq!(j["error"], 1062);
        assert_eq!(j["duration_ms"], 0.25);
    }

    #[test]
    fn lines_are_written_sampled_and_the_file_reopened() {
        let dir = std::env::temp_dir().join(format!("causeway-qlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.log");
        let _ = std::fs::remove_file(&path);
        let dropped = Counter::default();
        let log = QueryLog::new(dropped.clone());
        assert!(!log.wants(0, true), "off by default");
        let mut c = QueryLogConfig {
            enabled: true,
            path: path.clone(),
            sample: 0.5,
        };
        log.configure(&c).unwrap();
        assert!(log.wants(0, false));
        assert!(!log.wants(u64::MAX - 1, false), "outside the sample");
        assert!(log.wants(u64::MAX - 1, true), "errors always");
        log.write(&line(1, None));
        log.write(&line(2, Some(1146)));
        let lines = read_lines(&path, 2);
        assert_eq!(lines[0]["session"], 1);
        assert_eq!(lines[1]["error"], 1146);
        // Rotated away: a reload opens the path again.
        let rotated = dir.join("q.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        c.sample = 1.0;
        log.configure(&c).unwrap();
        assert!(log.wants(u64::MAX - 1, false));
        log.write(&line(3, None));
        assert_eq!(read_lines(&path, 1)[0]["session"], 3);
        assert_eq!(read_lines(&rotated, 2).len(), 2);
        // Off: nothing more is wanted.
        c.enabled = false;
        log.configure(&c).unwrap();
        assert!(!log.wants(0, true));
        assert_eq!(dropped.get(), 0);
        // A path that cannot be opened is an error, and changes nothing.
        let bad = QueryLogConfig {
            enabled: true,
            path: dir.join("missing/dir/q.log"),
            sample: 1.0,
        };
        let err = log.configure(&bad).unwrap_err();
        assert!(err.to_string().contains("query_log.path"), "{err}");
        assert!(!log.enabled());
        // ... also while it logs: the file in force stays.
        c.enabled = true;
        log.configure(&c).unwrap();
        assert!(log.configure(&bad).is_err());
        assert!(
            log.enabled() && log.wants(0, true),
            "a refused change turned it off"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
