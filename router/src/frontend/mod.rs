//! The router as a MySQL server: accepting clients, the handshake, TLS and
//! authentication against the configured users.

pub mod auth;
pub mod gate;
pub mod handshake;
pub mod listener;
