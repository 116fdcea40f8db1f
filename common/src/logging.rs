//! The `tracing` subscriber both programs install at start: the filter
//! from `RUST_LOG` (default `info`), text or JSON lines, colours only on a
//! terminal.

use std::io::IsTerminal;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The filter: `RUST_LOG` when set and valid, otherwise `info`.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The global subscriber could not be installed (one is already).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the log subscriber")]
pub struct InitError(#[source] Box<dyn std::error::Error + Send + Sync>);

/// Installs the global subscriber, writing text or (`json`) one JSON
/// object per line to `output`. Fails when one is installed already.
pub fn init(output: Output, json: bool) -> Result<(), InitError> {
    let (writer, ansi) = match output {
        Output::Stdout => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
        Output::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(writer)
        .with_ansi(ansi);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(InitError)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test in this crate that installs the global subscriber.
    #[test]
    fn init_installs_once() {
        init(Output::Stderr, true).unwrap();
        tracing::info!(check = 1, "logging installed");
        assert!(init(Output::Stderr, false).is_err());
    }
}
