//! The `pagewright` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime failed: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = pagewright::cli::Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.default_log_filter()));
    // Logs go to stderr, leaving stdout to what a command prints (`render`, `plugin check`).
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match cli.log_format {
        pagewright::cli::LogFormat::Text => logs.boxed(),
        // One JSON object per line, for log collectors.
        pagewright::cli::LogFormat::Json => logs.json().boxed(),
    };
    // Traces, when the OTEL_* variables ask for them. Made before the runtime's work starts: the
    // exporter's thread has a blocking client of its own.
    let telemetry = match pagewright::telemetry::Telemetry::from_env() {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Each layer filters for itself: `RUST_LOG` says what is logged, not what is traced, and the
    // traces are pagewright's own spans and events.
    let traced = Targets::new().with_target("pagewright", Level::INFO);
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(
            telemetry
                .as_ref()
                .map(|telemetry| telemetry.layer().with_filter(traced)),
        )
        .init();
    if let Some(telemetry) = &telemetry {
        tracing::info!(
            endpoint = telemetry.endpoint(),
            "exporting traces over OTLP"
        );
    }
    let outcome = runtime.block_on(pagewright::cli::run(cli));
    drop(runtime);
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the chain of causes on one line, without a backtrace.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
