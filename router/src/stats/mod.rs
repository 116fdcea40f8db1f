//! What the router records about the statements it serves, for the admin
//! interface and the query log; collected by the sessions, cheap on their
//! path (one digest, one hash, a few short locks per statement; nothing
//! allocated for a digest already known).
//!
//! | part | what |
//! |---|---|
//! | [`digests`] | per (digest, schema, user, hostgroup): count, time, p50/p99, rows, errors, replica vs writer reads |
//! | [`histogram`] | the fixed log-bucket latency histogram of a digest (pure) |
//! | [`errors`] | the ERR packets clients were sent, by code and kind |
//! | [`activity`] | what each live session does now (the processlist) |
//! | [`querylog`] | the JSON-lines query log, written by a background thread |
//!
//! ```text
//! session: statement begins ──> Activity (statement, since)
//!          routed ──> Activity (server)        ERR sent ──> Errors
//!          statement ends ──> Digests (Sample), QueryLog (LogLine, sampled), Activity (idle)
//! admin:   snapshot() of each ──> rows
//! ```

pub mod activity;
pub mod digests;
pub mod errors;
pub mod histogram;
pub mod querylog;

use crate::config::Config;
use crate::metrics::Metrics;

pub use activity::{Activity, Command, SessionRow};
pub use digests::{DigestRow, Digests, Sample, Served};
pub use errors::{ErrorRow, Errors, Origin, Sent};
pub use querylog::{CausalNote, LogLine, QueryLog};

/// The router's statistics, shared by every session.
#[derive(Debug)]
pub struct Stats {
    /// Query digests (`[stats] digests`).
    pub digests: Digests,
    /// Errors sent to clients.
    pub errors: Errors,
    /// The query log (`[query_log]`).
    pub query_log: QueryLog,
}

impl Stats {
    /// Statistics as `config` sets them (the query log's file opened).
    pub fn new(config: &Config, metrics: &Metrics) -> std::io::Result<Stats> {
        let stats = Stats {
            digests: Digests::new(config.stats.max_digests),
            errors: Errors::default(),
            query_log: QueryLog::new(metrics.query_log_dropped.clone()),
        };
        stats.configure(config)?;
        Ok(stats)
    }

    /// Puts the `[stats]` and `[query_log]` of `config` in force (at start
    /// and on reload; a reload opens the query log's file again). Whether
    /// digests are collected is read from the configuration in force by
    /// each statement.
    pub fn configure(&self, config: &Config) -> std::io::Result<()> {
        self.query_log.configure(&config.query_log)?;
        self.digests.set_max(config.stats.max_digests);
        Ok(())
    }
}
