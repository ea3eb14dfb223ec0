//! store: the database the durable parts keep their state in, through sqlx. SQLite (WAL) in the data
//! directory by default, which needs no setup; PostgreSQL with `--database-url postgres://...`,
//! which any number of hosts share (a farm). The backend is chosen at run time by the URL (sqlx's
//! `Any` driver); the queries are portable SQL but where a backend's own feature is the point
//! (`FOR UPDATE SKIP LOCKED`, `LISTEN`/`NOTIFY`), and the migrations (`host/migrations/`, embedded
//! in the binary) are one set for both.
//!
//! Opening runs the migrations; a store that cannot be opened or migrated is an error that names
//! the URL, without its password, and the step that failed.

mod batches;
mod events;
mod jobs;
mod outbox;
mod registry;

#[cfg(test)]
mod tests;

pub use batches::{BatchCounts, BatchPage, BatchRow, NewBatch};
pub use events::{Event, Listener};
pub use jobs::{
    Cancelled, ClaimedJob, Delivery, ErrorRow, Finish, JobCounts, JobRow, NewJob, ResultMeta,
};
pub use registry::{Added, Shared, StoredVersion};

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Where the store is.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB` (what sqlx accepts).
    pub url: String,
    /// Connections at most: SQLite has one writer whatever this says; PostgreSQL shares its
    /// `max_connections` (100 by default) among the farm's hosts.
    pub max_connections: u32,
}

impl StoreSettings {
    /// Enough for the claims, the finishing of jobs, the webhooks and the API's reads at once,
    /// few enough that 20 hosts fit in PostgreSQL's default 100 connections.
    pub const MAX_CONNECTIONS: u32 = 4;

    /// The embedded default: `pagewright.db` in the data directory, on one connection. SQLite has
    /// one writer: with several connections, writers that find the database locked sleep in
    /// SQLite's busy handler (1 ms, then 2, 5, ...) while the lock is free again within a tenth of
    /// that; one connection queues them instead (measured: 336 jobs/s through the farm bench with
    /// four connections; see docs/benchmarks.md for one).
    pub fn sqlite_in(data_dir: &Path) -> Self {
        Self {
            url: format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("pagewright.db").display()
            ),
            max_connections: 1,
        }
    }

    /// A store in memory, gone with the process: for one-off commands.
    pub fn in_memory() -> Self {
        Self {
            url: "sqlite::memory:".into(),
            // One connection: each SQLite connection to `:memory:` is a database of its own.
            max_connections: 1,
        }
    }
}

/// Which database the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What failed, by step, naming the store by its URL without the password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{url}` is not a database this server knows: use sqlite://PATH or postgres://...")]
    UnknownScheme { url: String },
    #[error("connecting to the store at {url} failed: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the store at {url} failed: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("the store failed to {step}: {source}")]
    Query {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// The store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Hears the farm's events (PostgreSQL).
    hub: Option<std::sync::Arc<events::Hub>>,
    /// The URL without its password, for messages.
    shown: String,
}

/// Every SQLite connection's settings. The busy timeout (10 s) is how long a connection waits for
/// the writer's lock before failing: writes are short, so seconds mean something is wrong.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000";

/// How long a query waits for a connection (opening one included): a database that does not
/// answer in this time is reported as down rather than waited on, at start-up and after.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Connects and migrates.
    pub async fn open(settings: &StoreSettings) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = redact(&settings.url);
        let backend = if settings.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if settings.url.starts_with("postgres://")
            || settings.url.starts_with("postgresql://")
        {
            Backend::Postgres
        } else {
            return Err(StoreError::UnknownScheme { url: shown });
        };
        let connect = |source| StoreError::Connect {
            url: shown.clone(),
            source,
        };
        let options: AnyConnectOptions = settings.url.parse().map_err(connect)?;
        let mut pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(CONNECT_TIMEOUT);
        if settings.url.contains(":memory:") {
            // The database is its one connection: keep it for the process's life.
            pool = pool
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|connection, _| {
                Box::pin(async move {
                    // WAL: readers do not block the writer; FULL: a commit is on disk before a
                    // job's 202 goes out. The busy timeout makes writers queue, not fail.
                    connection.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(options).await.map_err(connect)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: shown.clone(),
                source,
            })?;
        tracing::info!(store = %shown, ?backend, "the store is open");
        let hub = (backend == Backend::Postgres)
            .then(|| std::sync::Arc::new(events::Hub::start(settings.url.clone(), shown.clone())));
        Ok(Self {
            pool,
            backend,
            hub,
            shown,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn pool(&self) -> &AnyPool {
        &self.pool
    }

    fn hub(&self) -> Option<&events::Hub> {
        self.hub.as_deref()
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        if let Some(hub) = &self.hub {
            hub.stop();
        }
        self.pool.close().await;
    }
}

/// `url` with its password, if any, replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
