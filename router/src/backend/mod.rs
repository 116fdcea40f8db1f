//! The router as a MySQL client: connecting to the backend and logging in.

pub mod connect;
