//! What Causeway's two programs, the reader and the router, share that has
//! nothing to do with MySQL: one implementation each of
//!
//! | module | what |
//! |---|---|
//! | [`build_info`](mod@build_info) | a program's version, git commit and build profile; the `build_info` gauge |
//! | [`config`] | a TOML file into a serde struct, errors as `path:line:column: message` |
//! | [`secret`] | [`secret::Secret`] (never printed) and reading one from inline / env / file |
//! | [`logging`] | the `tracing` subscriber: `RUST_LOG` filter, text or JSON lines |
//! | [`tls`] | a rustls server configuration from PEM files |
//! | [`metrics_http`] | the plain HTTP endpoint that serves Prometheus text |
//! | [`signal`] | waiting for SIGTERM |
//!
//! Each module has its own error type, so a caller handles exactly the
//! failures of the function it called.

pub mod build_info;
pub mod config;
pub mod logging;
pub mod metrics_http;
pub mod secret;
pub mod signal;
pub mod tls;
