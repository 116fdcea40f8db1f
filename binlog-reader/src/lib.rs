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

causeway_common::build_info!();

pub mod config;
pub mod follow;
pub mod hub;
pub mod metrics;
pub mod publish;
pub mod source;
pub mod tracker;
