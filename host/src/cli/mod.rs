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
//! - `render.rs`: `pagewright render`, one page to files through the executor, and `batch.rs`, a
//!   list of pages (`--urls`) with a progress bar and a summary;
//! - `plugin.rs`: `pagewright plugin check`, `run` and `upload`;
//! - `new.rs` and `templates/`: `pagewright plugin new`, a plugin project in one of four languages.

mod batch;
mod new;
mod parts;
mod plugin;
mod render;
mod serve;

pub use new::Language;
pub use parts::{BrowserArgs, PluginArgs, PoolArgs};
pub use plugin::{NewArgs, PluginCommand, RunArgs, UploadArgs};
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
    /// Render pages to files without a server: one (`pagewright render URL --screenshot out.png`)
    /// or a list (`pagewright render --urls urls.txt --out shots/`).
    Render(RenderArgs),
    /// Plugin components: start one (`new`), check it or run it on a page here (`check`, `run`: no
    /// server needed), or upload it to a server (`upload`, with its admin token).
    #[command(subcommand)]
    Plugin(PluginCommand),
}

impl Cli {
    /// What is logged when `RUST_LOG` does not say. chromiumoxide's handler warns about every event
    /// it cannot decode (Chromium 156 sends one kind on each navigation) and errors when a browser
    /// goes away, which the supervisor reports itself. A one-shot command (`render`, `plugin ...`)
    /// shows warnings and a plugin's own lines, not the services starting and stopping.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Serve(_) => "info,chromiumoxide::handler=off",
            Command::Render(_) | Command::Plugin(_) => {
                "warn,plugin=info,chromiumoxide::handler=off"
            }
        }
    }
}

/// Runs a parsed command line: what `main` does after setting up logging.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::run_server(args.settings()?).await,
        Command::Render(args) => render::run(args).await,
        Command::Plugin(PluginCommand::Check { file }) => plugin::check(&file).await,
        Command::Plugin(PluginCommand::Run(args)) => plugin::run(args).await,
        Command::Plugin(PluginCommand::Upload(args)) => plugin::upload(args).await,
        Command::Plugin(PluginCommand::New(args)) => new::create(&args),
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
