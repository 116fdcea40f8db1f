//! `causeway-router import-proxysql`: a ProxySQL configuration (its
//! `proxysql.cnf`, or a live admin interface) turned into an equivalent
//! Causeway configuration, with everything that has no equivalent listed.
//!
//! ```text
//!  proxysql.cnf --libconfig--> model::Proxysql <--admin (SELECT over the admin interface)
//!                                    |
//!                              convert (+ flatten: query rules and flagIN/flagOUT chains)
//!                                    |
//!                              Conversion { config, not_converted, differences } --emit--> TOML
//! ```
//! `libconfig`, `model`, `flatten`, `convert`, `variables` and `emit` are pure (the
//! ground floor); `admin` and this module's [`load`] do the reading.

pub mod admin;
pub mod convert;
pub mod emit;
pub mod flatten;
pub mod libconfig;
pub mod model;
pub mod variables;

use std::path::PathBuf;

pub use self::admin::Tables;
pub use self::convert::{Conversion, Options};

/// Why nothing could be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not valid libconfig.
    #[error("{path}:{}:{}: {}", .error.line, .error.column, .error.message)]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: libconfig::ParseError,
    },
    /// The DSN is malformed.
    #[error("admin DSN: {0}")]
    Dsn(String),
    /// The admin interface could not be read.
    #[error("admin interface: {0}")]
    Admin(String),
    /// The output could not be written.
    #[error("writing the output: {0}")]
    Write(#[source] std::io::Error),
}

/// Reads `source`: a `proxysql.cnf` path, or a `mysql://` admin DSN (on
/// a runtime of its own: call it outside any). Returns the tables and how
/// to name the source in the output's header.
pub fn load(source: &str, tables: Tables) -> Result<(model::Proxysql, String), ImportError> {
    if admin::is_dsn(source) {
        let dsn = admin::parse_dsn(source).map_err(ImportError::Dsn)?;
        let name = format!(
            "admin interface {}:{}, {} tables",
            dsn.host,
            dsn.port,
            match tables {
                Tables::Runtime => "runtime",
                Tables::Memory => "memory",
            }
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ImportError::Admin(e.to_string()))?;
        let p = rt
            .block_on(admin::read(&dsn, tables))
            .map_err(ImportError::Admin)?;
        return Ok((p, name));
    }
    let path = PathBuf::from(source);
    let text = std::fs::read_to_string(&path).map_err(|error| ImportError::Read {
        path: path.clone(),
        error,
    })?;
    let p = model::Proxysql::from_cnf(&text).map_err(|error| ImportError::Parse {
        path: path.clone(),
        error,
    })?;
    Ok((p, path.display().to_string()))
}

/// `causeway-router import-proxysql`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A proxysql.cnf file, or a ProxySQL admin interface:
    /// mysql://user:password@host:6032 (a /schema path logs in to it).
    pub source: String,
    /// Write the configuration here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// From an admin interface, read the tables an operator edits
    /// (mysql_servers, ...) instead of the runtime_ ones.
    #[arg(long)]
    pub memory_tables: bool,
    /// reader_token_file for every server given a reader (its gtid_port).
    #[arg(long)]
    pub reader_token_file: Option<PathBuf>,
}

/// Runs the subcommand: the TOML goes to `--output` or standard output, a
/// summary of what was not converted to standard error.
pub fn run(args: &Args) -> Result<(), ImportError> {
    use std::io::Write as _;
    let opts = Options {
        reader_token_file: args.reader_token_file.clone(),
    };
    let tables = if args.memory_tables {
        Tables::Memory
    } else {
        Tables::Runtime
    };
    let (proxysql, name) = load(&args.source, tables)?;
    let conv = convert::convert(&proxysql, &opts);
    let text = emit::emit(&conv, &name);
    match &args.output {
        Some(path) => std::fs::write(path, &text).map_err(ImportError::Write)?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(ImportError::Write)?,
    }
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "converted: {} hostgroups, {} servers, {} users, {} query rules; \
         {} items not converted, {} with differences (listed at the end of the output)",
        conv.config.hostgroups.len(),
        conv.config.servers.len(),
        conv.config.users.len(),
        conv.config.query_rules.len(),
        conv.not_converted.len(),
        conv.differences.len()
    );
    Ok(())
}
