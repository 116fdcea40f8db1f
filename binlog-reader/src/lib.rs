//! The Causeway GTID reader: runs beside one mysqld, follows its binlog and
//! streams the GTIDs that server has made *visible* to every router.
//!
//! ```text
//!   source (replica connection) --GTID events--> tracker (pure) --deltas--> hub --> subscribers
//!                                                  ^                                  native / ProxySQL
//!   control connection: WAIT_FOR_EXECUTED_GTID_SET(pending),
//!     then GTID_SUBTRACT(pending, gtid_executed) --+
//! ```
//! See [`tracker`] for why a binlog GTID is not announced until
//! `@@global.gtid_executed` contains it.

/// What this reader was built from (`--version`, the `build_info` gauge).
pub const BUILD: causeway_common::build_info::BuildInfo = causeway_common::build_info::BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("CAUSEWAY_GIT_COMMIT"),
    profile: env!("CAUSEWAY_BUILD_PROFILE"),
};

/// `--version`'s text after the program's name: `0.1.0 (commit 9d2e37e, release)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CAUSEWAY_GIT_COMMIT"),
    ", ",
    env!("CAUSEWAY_BUILD_PROFILE"),
    ")"
);

pub mod config;
pub mod follow;
pub mod hub;
pub mod metrics;
pub mod publish;
pub mod source;
pub mod tracker;
