//! The `pagewright` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;
use pagewright::config::{Cli, Command, PluginCommand};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime failed: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the chain of causes on one line, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // chromiumoxide's handler warns about every event it cannot decode (Chromium 156 sends
            // one kind on each navigation) and errors when a browser goes away; the supervisor
            // reports browser deaths itself. `RUST_LOG` overrides this.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,chromiumoxide::handler=off")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let settings = args.validate()?;
            pagewright::run_server(settings).await
        }
        Command::Render(args) => pagewright::run_render(args).await,
        Command::Plugin(PluginCommand::Check { file }) => pagewright::run_plugin_check(&file).await,
        Command::Plugin(PluginCommand::Upload(args)) => pagewright::run_plugin_upload(args).await,
    }
}
