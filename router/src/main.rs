//! `causeway-router`: speaks MySQL to applications and routes their queries.

use clap::Parser;

/// Command line of the router.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("causeway-router: not built yet (issue 4)")
}
