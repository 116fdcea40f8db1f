//! `causeway-reader`: runs beside one mysqld, follows its binlog and
//! publishes the GTIDs that server has made visible.

use clap::Parser;

/// Command line of the reader.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("causeway-reader: not built yet (issue 5)")
}
