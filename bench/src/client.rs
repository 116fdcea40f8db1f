//! Client logins for the connection benchmarks: a full MySQL login as the
//! sandbox's APP user without TLS, and what a failure was.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use mysql_async::{Opts, OptsBuilder};

/// Options for a login as the APP user (`CAUSEWAY_APP_USER`,
/// `CAUSEWAY_APP_PASSWORD`, into `CAUSEWAY_DATABASE`, from the sandbox's
/// topology.env) to 127.0.0.1:`port`, over plain TCP. The login is the
/// handshake and caching_sha2_password authentication, nothing more:
/// `max_allowed_packet` and `wait_timeout` are given, so mysql_async does
/// not query them after the login, and it never moves to the server's Unix
/// socket (which would bypass a router on this host).
pub fn app_opts(port: u16) -> Result<Opts> {
    let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
    Ok(OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(var("CAUSEWAY_APP_USER")?))
        .pass(Some(var("CAUSEWAY_APP_PASSWORD")?))
        .db_name(std::env::var("CAUSEWAY_DATABASE").ok())
        .prefer_socket(false)
        .max_allowed_packet(Some(64 << 20))
        .wait_timeout(Some(28800))
        .into())
}

/// What a failed login or statement was, as a short label: the server's
/// error code (`ERR 1040`), the I/O error kind, or the driver's complaint.
pub fn failure_kind(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("ERR {}", s.code),
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => format!("io {:?}", io.kind()),
        mysql_async::Error::Io(other) => format!("io {other}"),
        mysql_async::Error::Driver(d) => format!("driver {d}"),
        other => other.to_string(),
    }
}

/// Failures counted by kind, with the first message of each.
#[derive(Debug, Default)]
pub struct Failures {
    /// kind -> (count, first message)
    pub by_kind: BTreeMap<String, (u64, String)>,
}

impl Failures {
    /// Counts one failure.
    pub fn add(&mut self, kind: String, message: impl FnOnce() -> String) {
        self.by_kind.entry(kind).or_insert_with(|| (0, message())).0 += 1;
    }

    /// Adds `n` failures of `kind`.
    pub fn add_n(&mut self, kind: &str, n: u64, message: &str) {
        self.by_kind
            .entry(kind.to_string())
            .or_insert_with(|| (0, message.to_string()))
            .0 += n;
    }

    /// Folds `other` into this one.
    pub fn merge(&mut self, other: Failures) {
        for (kind, (n, msg)) in other.by_kind {
            self.add_n(&kind, n, &msg);
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.by_kind.values().map(|(n, _)| n).sum()
    }

    /// `kind: count` pairs on one line, or "none".
    pub fn summary(&self) -> String {
        if self.by_kind.is_empty() {
            return "none".into();
        }
        self.by_kind
            .iter()
            .map(|(k, (n, _))| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
