//! Shared support for the end-to-end tests: finds or starts the sandbox.
