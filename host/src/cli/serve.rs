//! `pagewright serve`: its flags, checked against each other and the machine once and turned into
//! [`Settings`], each part's own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{BrowserArgs, PluginArgs, PoolArgs};
use crate::Settings;
use crate::api::ApiSettings;
use crate::api::{ConnectionLimits, Tenants};
use crate::egress::{EgressRules, HostPattern, Upstream};
use crate::jobs::JobsSettings;
use crate::sched::SchedSettings;
use crate::secret::Secret;
use crate::store::StoreSettings;
use crate::topology::Topology;
use crate::url_policy::UrlPolicy;
use ipnet::IpNet;
use std::sync::Arc;

/// Flags of `pagewright serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default: exposing a browser to a network is a decision to make
    /// on purpose.
    #[arg(long, env = "PAGEWRIGHT_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub browser: BrowserArgs,

    #[command(flatten)]
    pub pool: PoolArgs,

    #[command(flatten)]
    pub plugins: PluginArgs,

    /// Serve `/v1/screenshot`, `/v1/pdf` and `/v1/content` with the host's native page operations
    /// instead of the built-in plugins: the baseline the bench compares the plugins with, and a
    /// fallback.
    #[arg(long, env = "PAGEWRIGHT_NATIVE_BUILTINS", default_value_t = false)]
    pub native_builtins: bool,

    /// Default time budget of one render job (navigation, waits, output), in milliseconds. A request
    /// may ask for less or more, up to `--max-job-timeout-ms`.
    #[arg(long, env = "PAGEWRIGHT_JOB_TIMEOUT_MS", default_value_t = ApiSettings::JOB_TIMEOUT.as_millis() as u64)]
    pub job_timeout_ms: u64,

    /// Largest job time budget a request may ask for, in milliseconds.
    #[arg(long, env = "PAGEWRIGHT_MAX_JOB_TIMEOUT_MS", default_value_t = ApiSettings::MAX_JOB_TIMEOUT.as_millis() as u64)]
    pub max_job_timeout_ms: u64,

    /// Largest accepted request body in bytes (inline HTML counts). 10 MiB holds any hand-written page;
    /// larger documents should be served and rendered by URL.
    #[arg(long, env = "PAGEWRIGHT_MAX_BODY_BYTES", default_value_t = ApiSettings::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Memory for the response cache of render requests that ask for it (`"cache": {"ttl_ms"}`),
    /// in MiB; least recently used responses go first. 0 stores nothing (identical requests in
    /// flight together still share one render).
    #[arg(long, env = "PAGEWRIGHT_CACHE_MAX_MIB", default_value_t = (ApiSettings::CACHE_MAX_BYTES >> 20) as u64)]
    pub cache_max_mib: u64,

    /// Refuse every connection a page or a webhook makes to a loopback, private, link-local or
    /// otherwise internal address: the job's URL, redirects, subresources, frames, fetches,
    /// WebSockets, workers, inline-HTML jobs and plugin navigations alike, checked on the address
    /// really connected to. Off by default so local pages work; turn it on when untrusted users
    /// submit URLs or HTML.
    #[arg(
        long,
        env = "PAGEWRIGHT_DENY_PRIVATE_NETWORKS",
        default_value_t = false
    )]
    pub deny_private_networks: bool,

    /// Most connections the API holds at once; past it a new connection gets a 503 and is closed.
    /// The default holds the 12,800 waiting clients the flood benchmark throws at it.
    #[arg(long, env = "PAGEWRIGHT_MAX_CONNECTIONS", default_value_t = ConnectionLimits::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// How long a client may take to send a request's headers, in milliseconds; a connection that
    /// trickles them, or idles that long between requests, is closed.
    #[arg(long, env = "PAGEWRIGHT_HEADER_READ_TIMEOUT_MS", default_value_t = ConnectionLimits::HEADER_READ_TIMEOUT.as_millis() as u64)]
    pub header_read_timeout_ms: u64,

    /// A JSON file of tenant tokens, each standing for one tenant with the priority classes it may
    /// use, its in-flight cap and its rate: `[{"token": "...", "tenant": "acme", "classes":
    /// ["hot", "cold"], "max_in_flight": 50, "rate_per_second": 20}]`. With it, every `/v1/`
    /// request needs a token, a tenant's isolation keys are its own, and only the admin token sees
    /// `/v1/status`'s keys. Without it (and without a render token) the server is open: requests
    /// name their own tenant and class.
    #[arg(long, env = "PAGEWRIGHT_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// The only hosts pages and webhooks may reach (repeat the flag, or separate with commas):
    /// `example.com`, or `*.example.com` for every name under it. Default: any host.
    #[arg(
        long = "egress-allow-host",
        env = "PAGEWRIGHT_EGRESS_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub egress_allow_hosts: Vec<HostPattern>,

    /// Hosts pages and webhooks may not reach, as for --egress-allow-host.
    #[arg(
        long = "egress-deny-host",
        env = "PAGEWRIGHT_EGRESS_DENY_HOSTS",
        value_delimiter = ','
    )]
    pub egress_deny_hosts: Vec<HostPattern>,

    /// Networks pages and webhooks may reach even with --deny-private-networks (CIDR, e.g.
    /// `10.20.0.0/16`: an internal site the service exists for).
    #[arg(
        long = "egress-allow-network",
        env = "PAGEWRIGHT_EGRESS_ALLOW_NETWORKS",
        value_delimiter = ','
    )]
    pub egress_allow_networks: Vec<IpNet>,

    /// Networks pages and webhooks may not reach (CIDR), whatever else allows them.
    #[arg(
        long = "egress-deny-network",
        env = "PAGEWRIGHT_EGRESS_DENY_NETWORKS",
        value_delimiter = ','
    )]
    pub egress_deny_networks: Vec<IpNet>,

    /// An HTTP proxy every page's requests go through (`http://host:port`, credentials as
    /// `http://user:password@host:port`; set it in the environment to keep them out of `ps`). A job's
    /// `page.proxy` overrides it; webhooks do not use it. Default: none.
    #[arg(long, env = "PAGEWRIGHT_PROXY", hide_env_values = true)]
    pub proxy: Option<String>,

    /// On SIGINT/SIGTERM: how long in-flight jobs may take to finish before the server stops anyway,
    /// in milliseconds.
    #[arg(long, env = "PAGEWRIGHT_SHUTDOWN_GRACE_MS", default_value_t = Settings::SHUTDOWN_GRACE.as_millis() as u64)]
    pub shutdown_grace_ms: u64,

    /// Jobs that may wait for a run slot at once; a job beyond it gets a 429. Each waiting job costs a
    /// few hundred bytes of host memory, so the default holds a flood of 12,800+ jobs.
    #[arg(long, env = "PAGEWRIGHT_QUEUE_CAPACITY", default_value_t = SchedSettings::QUEUE_CAPACITY)]
    pub queue_capacity: usize,

    /// How long a job may wait in the queue before it ends with `queue_timeout`, never started, in
    /// milliseconds (a request may ask for less or more with `queue_timeout_ms`, up to
    /// `--max-job-timeout-ms`). Its run time budget starts when it leaves the queue.
    #[arg(long, env = "PAGEWRIGHT_QUEUE_TIMEOUT_MS", default_value_t = ApiSettings::QUEUE_TIMEOUT.as_millis() as u64)]
    pub queue_timeout_ms: u64,

    /// How long an async job (`POST /v1/jobs`) may wait in the store's queue before it ends with
    /// `queue_timeout`, in milliseconds (a job may ask for up to a day with `queue_timeout_ms`).
    #[arg(long, env = "PAGEWRIGHT_JOB_QUEUE_TIMEOUT_MS", default_value_t = ApiSettings::ASYNC_QUEUE_TIMEOUT.as_millis() as u64)]
    pub job_queue_timeout_ms: u64,

    /// A cold job waiting this long counts as hot (ahead of its tenant's hot jobs), so cold jobs
    /// finish under a flood of hot ones. Nothing ages into urgent. In milliseconds.
    #[arg(long, env = "PAGEWRIGHT_AGING_STEP_MS", default_value_t = SchedSettings::AGING_STEP.as_millis() as u64)]
    pub aging_step_ms: u64,

    /// The NUMA nodes to run a shard on each (its own Chromium, page pool and plugin workers,
    /// pinned to the node's CPUs and preferring its memory). `auto` reads them from
    /// `/sys/devices/system/node`; CPU lists separated by `;` give them instead: `0;1` is two
    /// shards of one CPU each, which runs several shards on a one-node machine.
    #[arg(long, env = "PAGEWRIGHT_NUMA_NODES", default_value = "auto")]
    pub numa_nodes: String,

    /// The queue's order: `priority` (classes, numbers and scorer plugins, aging, tenants taking
    /// turns by predicted render time) or `fifo` (first come, first served: the baseline the
    /// scheduler benchmarks compare against).
    #[arg(long, env = "PAGEWRIGHT_QUEUE_ORDER", value_enum, default_value_t = QueueOrder::Priority)]
    pub queue_order: QueueOrder,

    /// A scorer plugin (NAME or NAME@VERSION) that scores every job at admission, instead of the
    /// built-in score (class + number). `PUT /v1/scheduler/scorer` changes it while running.
    #[arg(long, env = "PAGEWRIGHT_SCORER")]
    pub scorer: Option<String>,

    /// Async jobs (`POST /v1/jobs`) that may be queued in the store at once (over the farm, with
    /// PostgreSQL); a job beyond it gets a 429. A queued job is a row on disk, not memory here.
    /// Checked against the queue as the upkeep counted it (each second) and this host's own
    /// submissions and claims since, not by counting the queue on each submission: over a farm,
    /// hosts submitting at once can go past it by what they accept in that second.
    #[arg(long, env = "PAGEWRIGHT_JOB_QUEUE_CAPACITY", default_value_t = JobsSettings::QUEUE_CAPACITY)]
    pub job_queue_capacity: usize,

    /// How long a host holds an async job it runs without renewing its lease, in milliseconds (it
    /// renews every third of it). A host that dies loses its jobs to the others after this.
    #[arg(long, env = "PAGEWRIGHT_JOB_LEASE_MS", default_value_t = JobsSettings::LEASE.as_millis() as u64)]
    pub job_lease_ms: u64,

    /// How long a finished async job (`POST /v1/jobs`) and its result are kept, in milliseconds.
    #[arg(long, env = "PAGEWRIGHT_JOB_RESULT_TTL_MS", default_value_t = JobsSettings::RESULT_TTL.as_millis() as u64)]
    pub job_result_ttl_ms: u64,

    /// Bytes of async jobs' results kept in the store, in MiB (over the farm, with PostgreSQL); past
    /// it the oldest results are dropped first (their jobs say so). 256 MiB holds ~2,500 full-HD
    /// screenshots.
    #[arg(long, env = "PAGEWRIGHT_JOB_RESULTS_MAX_MIB", default_value_t = JobsSettings::MAX_RESULT_MIB)]
    pub job_results_max_mib: usize,

    /// Secret that signs webhook posts, as Standard Webhooks does (`webhook-signature: v1,BASE64`,
    /// the HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`; a `whsec_BASE64` secret is
    /// that key), and as `x-pagewright-signature: sha256=HEX` (the HMAC of the body alone).
    /// Without one, posts are not signed.
    #[arg(long, env = "PAGEWRIGHT_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Where uploaded plugins and compiled plugin code are kept, and the embedded store
    /// (`pagewright.db`). One server per directory. Default: `$XDG_DATA_HOME/pagewright`, else
    /// `$HOME/.local/share/pagewright`, else `/var/lib/pagewright`.
    #[arg(long, env = "PAGEWRIGHT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// The store's database: `postgres://USER:PASSWORD@HOST/DB` for a farm of hosts sharing it.
    /// Default: SQLite in the data directory, which needs no setup. Prefer the environment variable
    /// to the flag when the URL holds a password (flags show in `ps`).
    #[arg(long, env = "PAGEWRIGHT_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Bearer token that uploading and deleting plugins require. Without one, the plugin registry is
    /// read-only: uploads are refused. Prefer the environment variable to the flag (flags show in `ps`).
    #[arg(long, env = "PAGEWRIGHT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Bearer token every `/v1/` request must carry (the admin token also works). Without one the API
    /// is open to whoever can reach it; `/health` and `/metrics` always are.
    #[arg(long, env = "PAGEWRIGHT_RENDER_TOKEN", hide_env_values = true)]
    pub render_token: Option<String>,
}

/// How the job queue orders waiting jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueOrder {
    Priority,
    Fifo,
}

/// A configuration that cannot work, named by the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "Chromium not found: set --chrome or $CHROME, or install it at /usr/bin/chromium \
         (Debian: apt-get install chromium); looked at {0}"
    )]
    ChromeMissing(String),
    #[error(
        "the server runs as root, and Chromium refuses its sandbox as root, but this system has no \
         `nobody` account to run it as: name an unprivileged account with --chromium-user, or run \
         the server as a user of its own (or, where the sandbox cannot work, \
         --no-chromium-sandbox)"
    )]
    RootWithoutUser,
    #[error("{0}")]
    TokensFile(String),
    #[error("--{flag} must be {rule}, got {value}")]
    Invalid {
        flag: &'static str,
        rule: &'static str,
        value: String,
    },
}

/// Shortest admin or render token accepted: long enough that guessing is hopeless (`openssl rand
/// -hex 32` gives 64 characters).
const MIN_TOKEN_CHARS: usize = 16;

/// The shortest lease `--job-lease-ms` takes: renewals every 100 ms are the most a store should see.
const MIN_LEASE_MS: u64 = 300;

impl ServeArgs {
    /// Checks the flags against each other and the machine, fills in derived defaults, and returns
    /// each part's settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let (pool, renders) = self.pool.settings()?;
        if self.job_timeout_ms == 0 || self.job_timeout_ms > self.max_job_timeout_ms {
            return Err(ConfigError::Invalid {
                flag: "job-timeout-ms",
                rule: "positive and at most --max-job-timeout-ms",
                value: self.job_timeout_ms.to_string(),
            });
        }
        for (flag, token) in [
            ("admin-token", &self.admin_token),
            ("render-token", &self.render_token),
        ] {
            if let Some(token) = token
                && token.chars().count() < MIN_TOKEN_CHARS
            {
                return Err(ConfigError::Invalid {
                    flag,
                    rule: "at least 16 characters (try `openssl rand -hex 32`)",
                    value: format!("{} characters", token.chars().count()),
                });
            }
        }
        if self.queue_capacity == 0
            || self.queue_timeout_ms == 0
            || self.aging_step_ms == 0
            || self.job_queue_capacity == 0
            || self.job_queue_timeout_ms == 0
        {
            return Err(ConfigError::Invalid {
                flag: "queue-capacity/queue-timeout-ms/aging-step-ms/job-queue-capacity/job-queue-timeout-ms",
                rule: "positive",
                value: "0".into(),
            });
        }
        if self.job_lease_ms < MIN_LEASE_MS {
            return Err(ConfigError::Invalid {
                flag: "job-lease-ms",
                rule: "at least 300 (a host renews every third of it)",
                value: self.job_lease_ms.to_string(),
            });
        }
        let sched = SchedSettings {
            queue_capacity: self.queue_capacity,
            slots: renders.max,
            min_slots: renders.min,
            start_slots: renders.min,
            adaptive: !renders.fixed,
            aging_step: Duration::from_millis(self.aging_step_ms),
            fifo: self.queue_order == QueueOrder::Fifo,
        };
        let topology = match self.numa_nodes.as_str() {
            "auto" => Topology::detect(),
            spec => Topology::configured(spec).map_err(|error| ConfigError::Invalid {
                flag: "numa-nodes",
                rule: "`auto` or CPU lists separated by `;` (like `0-3;4-7`)",
                value: format!("`{spec}`: {error}"),
            })?,
        };
        if topology.nodes.len() > renders.max {
            return Err(ConfigError::Invalid {
                flag: "max-concurrent-renders",
                rule: "at least one per shard (NUMA node)",
                value: renders.max.to_string(),
            });
        }
        let egress = Arc::new(EgressRules {
            deny_private_networks: self.deny_private_networks,
            allow_hosts: self.egress_allow_hosts.clone(),
            deny_hosts: self.egress_deny_hosts.clone(),
            allow_networks: self.egress_allow_networks.clone(),
            deny_networks: self.egress_deny_networks.clone(),
        });
        let proxy = self
            .proxy
            .as_deref()
            .map(|server| Upstream::parse(server, None, None))
            .transpose()
            .map_err(|reason| ConfigError::Invalid {
                flag: "proxy",
                rule: "an http:// proxy URL, such as http://proxy.internal:3128",
                value: reason,
            })?;
        let url_policy = UrlPolicy {
            rules: egress.clone(),
        };
        let mut plugins = self.plugins.settings(url_policy.clone())?;
        let data_dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        let store = match &self.database_url {
            Some(url) => StoreSettings {
                url: url.clone(),
                max_connections: StoreSettings::MAX_CONNECTIONS,
            },
            None => StoreSettings::sqlite_in(&data_dir),
        };
        plugins.data_dir = Some(data_dir);
        plugins.worker_nodes = topology.nodes.clone();
        plugins.workers = plugins.workers.max(topology.nodes.len());
        Ok(Settings {
            listen: self.listen,
            api: ApiSettings {
                job_timeout: Duration::from_millis(self.job_timeout_ms),
                max_job_timeout: Duration::from_millis(self.max_job_timeout_ms),
                queue_timeout: Duration::from_millis(self.queue_timeout_ms),
                async_queue_timeout: Duration::from_millis(self.job_queue_timeout_ms),
                max_body_bytes: self.max_body_bytes,
                cache_max_bytes: usize::try_from(self.cache_max_mib.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
                url_policy: url_policy.clone(),
                native_builtins: self.native_builtins,
                admin_token: self.admin_token.clone().map(Secret::new),
                render_token: self.render_token.clone().map(Secret::new),
                connections: ConnectionLimits {
                    max_connections: self.max_connections.max(1),
                    header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
                },
                tenants: match &self.tokens_file {
                    Some(path) => Some(Arc::new(
                        Tenants::load(path).map_err(ConfigError::TokensFile)?,
                    )),
                    None => None,
                },
            },
            browser: self.browser.settings()?,
            pool,
            plugins,
            sched,
            jobs: JobsSettings {
                queue_capacity: self.job_queue_capacity,
                aging_step: Duration::from_millis(self.aging_step_ms),
                lease: Duration::from_millis(self.job_lease_ms),
                result_ttl: Duration::from_millis(self.job_result_ttl_ms),
                max_result_bytes: self.job_results_max_mib << 20,
                webhook_secret: self.webhook_secret.clone().map(Secret::new),
                // Started with the server.
                egress_proxy: None,
            },
            store,
            egress,
            proxy,
            topology,
            scorer: self.scorer.clone(),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
        })
    }
}

/// `$XDG_DATA_HOME/pagewright`, else `$HOME/.local/share/pagewright`, else `/var/lib/pagewright`.
fn default_data_dir() -> PathBuf {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    if let Some(data_home) = from_env("XDG_DATA_HOME") {
        data_home.join("pagewright")
    } else if let Some(home) = from_env("HOME") {
        home.join(".local/share/pagewright")
    } else {
        PathBuf::from("/var/lib/pagewright")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::serve_settings;
    use crate::pool::PoolSettings;
    use crate::topology::share_by_cpus;

    fn serve(flags: &[&str]) -> Result<Settings, ConfigError> {
        let argv = ["pagewright", "serve"].iter().chain(flags);
        serve_settings(argv).map_err(|error| match error.downcast::<ConfigError>() {
            Ok(error) => error,
            Err(error) => panic!("not a configuration error: {error:#}"),
        })
    }

    #[test]
    fn a_bad_numa_topology_names_the_flag_and_the_reason() {
        for (spec, reason) in [
            ("0;0", "more than one node"),
            ("x", "not a CPU list"),
            ("1000", "not one this process may run on"),
        ] {
            match serve(&["--numa-nodes", spec]) {
                Err(ConfigError::Invalid { flag, value, .. }) => {
                    assert_eq!(flag, "numa-nodes");
                    assert!(value.contains(reason), "{spec}: {value}");
                }
                other => panic!("{spec}: {other:?}"),
            }
        }
    }

    #[test]
    fn shards_share_pages_renders_and_plugin_workers_by_cpus() {
        let cpu = crate::sys::allowed_cpus()
            .into_iter()
            .next()
            .expect("a CPU");
        let settings = serve(&[
            "--numa-nodes",
            &cpu.to_string(),
            "--max-pages",
            "30",
            "--max-concurrent-renders",
            "9",
        ])
        .expect("valid");
        assert_eq!(settings.topology.nodes.len(), 1);
        assert_eq!(settings.plugins.worker_nodes, settings.topology.nodes);
        // One CPU of three: a third of the pages, rounded down; a third of the renders, rounded up.
        let renders = share_by_cpus(settings.sched.slots, 1, 3);
        let share = settings.pool.share(1, 3, renders);
        assert_eq!((share.max_pages, renders), (10, 3));
        // Never fewer pages than renders, never no renders.
        let renders = share_by_cpus(2, 1, 4);
        let tiny = PoolSettings {
            max_pages: 2,
            ..settings.pool.clone()
        }
        .share(1, 4, renders);
        assert_eq!((tiny.max_pages, renders), (1, 1));
    }
}
