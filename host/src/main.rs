//! The `pagewright` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;
use pagewright::config::{Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let settings = args.validate()?;
            pagewright::run_server(settings).await
        }
    }
}
