//! [`PluginError`]: every way loading or running a plugin fails, each named so the API can answer with
//! its own code and status.

use std::time::Duration;

use crate::page::PageError;

/// Which case of the WIT `error` a plugin returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestErrorKind {
    InvalidInput,
    Timeout,
    Navigation,
    NotFound,
    Script,
    TooLarge,
    Crashed,
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("no plugin named `{0}`")]
    NotFound(String),
    #[error("plugin `{plugin}` is not {role}")]
    MissingRole { plugin: String, role: &'static str },
    #[error("`{name}` is not a usable plugin: {reason}")]
    Invalid { name: String, reason: String },
    #[error("`{name}` is {what}; only uploaded plugins can be replaced or deleted")]
    Protected { name: String, what: &'static str },
    #[error(
        "{reference} exists with different contents; versions cannot be changed, upload a new one"
    )]
    VersionExists { reference: String },
    #[error("the upload is refused: {0}")]
    BadUpload(String),
    #[error("the manifest is refused: {0}")]
    BadManifest(String),
    #[error("the plugin's limits are refused: {0}")]
    Limits(String),
    #[error("this plugin host keeps no uploads: it has no store")]
    NoStore,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the server is shutting down and no longer changes its plugins")]
    Closed,
    #[error("{0}")]
    Storage(String),
    #[error("setting up the plugin engine failed: {0}")]
    Engine(String),
    #[error("starting the plugin workers failed: {0}")]
    Workers(#[source] std::io::Error),
    #[error("plugin `{plugin}` ran out of fuel (its budget is {budget} units)")]
    OutOfFuel { plugin: String, budget: u64 },
    #[error("plugin `{plugin}` did not finish within {}", humanize(*limit))]
    Timeout { plugin: String, limit: Duration },
    #[error("plugin `{plugin}` went over its memory limit of {} MiB", limit >> 20)]
    MemoryLimit { plugin: String, limit: usize },
    #[error(
        "plugin `{plugin}` could not get memory: the server's {} MiB for plugins is in use",
        limit >> 20
    )]
    ServerMemory { plugin: String, limit: usize },
    #[error("plugin `{plugin}` returned {size} bytes, above the limit of {limit}")]
    OutputTooLarge {
        plugin: String,
        size: usize,
        limit: usize,
    },
    #[error("plugin `{plugin}` trapped: {message}")]
    Trapped { plugin: String, message: String },
    #[error("plugin `{plugin}` failed: {message}")]
    Failed {
        plugin: String,
        kind: GuestErrorKind,
        message: String,
    },
    /// A page operation failed and the plugin passed the error on (or the job's time ran out in
    /// one): the page's error, said to have happened in the plugin.
    #[error("in plugin `{plugin}`: {error}")]
    Page {
        plugin: String,
        #[source]
        error: PageError,
    },
    #[error("no plugin instance came free within the job's deadline")]
    Busy,
    #[error("the plugin worker running this job stopped")]
    WorkerLost,
}

impl PluginError {
    /// Should the job's page be closed rather than reused? A plugin that trapped, ran out of fuel or
    /// returned an error left the page as any job would (the reset undoes its changes); a timeout or a
    /// page failure may have left it mid-navigation or spinning.
    pub fn spoils_page(&self) -> bool {
        match self {
            Self::Page { error, .. } => error.spoils_page(),
            Self::Timeout { .. } | Self::WorkerLost => true,
            Self::Failed { kind, .. } => {
                matches!(kind, GuestErrorKind::Timeout | GuestErrorKind::Crashed)
            }
            _ => false,
        }
    }
}

fn humanize(duration: Duration) -> String {
    if duration.as_millis().is_multiple_of(1000) {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}
