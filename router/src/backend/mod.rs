//! The router as a MySQL client: connecting to servers, logging in, pools.

pub mod connect;
pub mod pool;
pub mod query;
pub mod stmts;
