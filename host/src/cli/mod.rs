//! cli: the command line. clap parses arguments into flags (`ServeArgs`, `RenderArgs`, ...), which
//! are checked against each other and the machine once and turned into each part's own settings
//! (ripgrep's low-level arguments into high-level settings). Nothing below the wiring imports this
//! module: the parts see their settings, never a flag.
//!
//! Every flag is also an environment variable so the same binary runs from a shell, a unit file or a
//! container without a wrapper script. Defaults are the parts' own, chosen to work out of the box on
//! a small machine; each says where its number comes from.
//!
//! - `serve.rs`: `pagewright serve` and its flags, into [`Settings`];
//! - `parts.rs`: the flag groups `serve` and `render` share (browser, pool, plugins);
//! - `render.rs`: `pagewright render`, one page to files through the executor;
//! - `plugin.rs`: `pagewright plugin check` and `upload`.

mod parts;
mod plugin;
mod render;
mod serve;

pub use parts::{BrowserArgs, PluginArgs, PoolArgs};
pub use plugin::{PluginCommand, UploadArgs};
pub use render::RenderArgs;
pub use serve::{ConfigError, QueueOrder, ServeArgs};

use clap::{Parser, Subcommand};

use crate::Settings;

/// pagewright: a render platform over a shared headless Chromium.
#[derive(Debug, Parser)]
#[command(name = "pagewright", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written (to stderr): `text` for people, `json` (one object a line) for
    /// log collectors.
    #[arg(
        long,
        global = true,
        env = "PAGEWRIGHT_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP render service.
    Serve(Box<ServeArgs>),
    /// Render one page to a file without a server: `pagewright render URL --screenshot out.png`.
    Render(RenderArgs),
    /// Plugin components: check one here (`check`, no server needed), or upload one to a server
    /// (`upload`, with its admin token).
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// Runs a parsed command line: what `main` does after setting up logging.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::run_server(args.settings()?).await,
        Command::Render(args) => render::run(args).await,
        Command::Plugin(PluginCommand::Check { file }) => plugin::check(&file).await,
        Command::Plugin(PluginCommand::Upload(args)) => plugin::upload(args).await,
    }
}

/// The settings `pagewright serve` would run with, for `argv` (the program name first, then
/// `serve` and its flags): what the tests and the bench start servers from.
pub fn serve_settings<I, T>(argv: I) -> anyhow::Result<Settings>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(argv)?.command {
        Command::Serve(args) => Ok(args.settings()?),
        _ => anyhow::bail!("the arguments are not `pagewright serve ...`"),
    }
}
