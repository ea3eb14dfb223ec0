//! Command line and environment configuration, validated once into [`Settings`].
//!
//! Every flag is also an environment variable so the same binary runs from a shell, a unit file or a
//! container without a wrapper script. Defaults are chosen to work out of the box on a small machine and
//! each says where its number comes from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// pagewright: a render platform over a shared headless Chromium.
#[derive(Debug, Parser)]
#[command(name = "pagewright", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP render service.
    Serve(Box<ServeArgs>),
    /// Render one page to a file without a server: `pagewright render URL --screenshot out.png`.
    Render(RenderArgs),
    /// Work with plugin components without a server.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `pagewright plugin ...`
#[derive(Debug, Clone, Subcommand)]
pub enum PluginCommand {
    /// Check a component as the server would load it: prints its roles, imports, size and compile
    /// time, or why it cannot be a plugin.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Upload a component to a running server as a new version of plugin NAME.
    Upload(UploadArgs),
}

/// Flags of `pagewright plugin upload`.
#[derive(Debug, Clone, Args)]
pub struct UploadArgs {
    /// The component (`.wasm`).
    pub file: PathBuf,

    /// The plugin's name: 1-64 of a-z, 0-9, `-` and `_`.
    #[arg(long)]
    pub name: String,

    /// The server's base URL.
    #[arg(
        long,
        env = "PAGEWRIGHT_SERVER",
        default_value = "http://127.0.0.1:3000"
    )]
    pub server: String,

    /// The server's admin token.
    #[arg(long, env = "PAGEWRIGHT_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,

    /// A manifest file (JSON: version, description, roles, limits).
    #[arg(long)]
    pub manifest: Option<PathBuf>,

    /// The version to upload as (overrides the manifest's). Default: the latest's patch + 1.
    #[arg(long = "version")]
    pub plugin_version: Option<String>,

    /// How long to wait for the server, which compiles the component before answering, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// Flags of `pagewright render`.
#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The page to render (http or https).
    pub url: String,

    /// Write a PNG screenshot of the viewport here (`.jpg`/`.jpeg` and `.webp` pick those formats).
    #[arg(long, required_unless_present_any = ["pdf", "html"])]
    pub screenshot: Option<PathBuf>,

    /// Capture the whole scrollable page instead of the viewport.
    #[arg(long, requires = "screenshot")]
    pub full_page: bool,

    /// Write a PDF here.
    #[arg(long)]
    pub pdf: Option<PathBuf>,

    /// Write the rendered HTML here.
    #[arg(long)]
    pub html: Option<PathBuf>,

    /// Viewport as WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_parser = parse_size)]
    pub viewport: (u32, u32),

    /// Time budget of each output's job, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,

    #[command(flatten)]
    pub browser: BrowserArgs,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (width, height) = text
        .split_once('x')
        .ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT"))?;
    let number = |part: &str| {
        part.parse::<u32>()
            .map_err(|_| format!("`{text}` is not WIDTHxHEIGHT"))
    };
    Ok((number(width)?, number(height)?))
}

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
    #[arg(long, env = "PAGEWRIGHT_JOB_TIMEOUT_MS", default_value_t = 30_000)]
    pub job_timeout_ms: u64,

    /// Largest job time budget a request may ask for, in milliseconds.
    #[arg(long, env = "PAGEWRIGHT_MAX_JOB_TIMEOUT_MS", default_value_t = 120_000)]
    pub max_job_timeout_ms: u64,

    /// Largest accepted request body in bytes (inline HTML counts). 10 MiB holds any hand-written page;
    /// larger documents should be served and rendered by URL.
    #[arg(long, env = "PAGEWRIGHT_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Refuse URLs whose host resolves to a loopback, private, link-local or otherwise internal address.
    /// Off by default so local pages work; turn it on when untrusted users submit URLs.
    #[arg(
        long,
        env = "PAGEWRIGHT_DENY_PRIVATE_NETWORKS",
        default_value_t = false
    )]
    pub deny_private_networks: bool,

    /// On SIGINT/SIGTERM: how long in-flight jobs may take to finish before the server stops anyway,
    /// in milliseconds.
    #[arg(long, env = "PAGEWRIGHT_SHUTDOWN_GRACE_MS", default_value_t = 30_000)]
    pub shutdown_grace_ms: u64,

    /// Jobs that may wait for a run slot at once; a job beyond it gets a 429. Each waiting job costs a
    /// few hundred bytes of host memory, so the default holds a flood of 12,800+ jobs.
    #[arg(long, env = "PAGEWRIGHT_QUEUE_CAPACITY", default_value_t = 16_384)]
    pub queue_capacity: usize,

    /// How long a job may wait in the queue before it ends with `queue_timeout`, never started, in
    /// milliseconds (a request may ask for less or more with `queue_timeout_ms`, up to
    /// `--max-job-timeout-ms`). Its run time budget starts when it leaves the queue.
    #[arg(long, env = "PAGEWRIGHT_QUEUE_TIMEOUT_MS", default_value_t = 30_000)]
    pub queue_timeout_ms: u64,

    /// A cold job waiting this long counts as hot (ahead of its tenant's hot jobs), so cold jobs
    /// finish under a flood of hot ones. Nothing ages into urgent. In milliseconds.
    #[arg(long, env = "PAGEWRIGHT_AGING_STEP_MS", default_value_t = 10_000)]
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

    /// How long a finished async job (`POST /v1/jobs`) and its result are kept, in milliseconds.
    #[arg(long, env = "PAGEWRIGHT_JOB_RESULT_TTL_MS", default_value_t = 600_000)]
    pub job_result_ttl_ms: u64,

    /// Memory for the results of finished async jobs, in MiB; past it the oldest results are
    /// dropped first (their jobs say so). 256 MiB holds ~2,500 full-HD screenshots.
    #[arg(long, env = "PAGEWRIGHT_JOB_RESULTS_MAX_MIB", default_value_t = 256)]
    pub job_results_max_mib: usize,

    /// Secret that signs webhook posts: `x-pagewright-signature: sha256=HEX`, the HMAC-SHA256 of
    /// the body. Without one, posts are not signed.
    #[arg(long, env = "PAGEWRIGHT_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Where uploaded plugins and compiled plugin code are kept. One server per directory. Default:
    /// `$XDG_DATA_HOME/pagewright`, else `$HOME/.local/share/pagewright`, else `/var/lib/pagewright`.
    #[arg(long, env = "PAGEWRIGHT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

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

/// Where Chromium comes from and how it starts.
#[derive(Debug, Clone, Args)]
pub struct BrowserArgs {
    /// Chromium executable. When unset: `$CHROME`, else `/usr/bin/chromium` (Debian's wrapper is
    /// bypassed for the real binary next to it, which starts ~70 ms faster).
    #[arg(long = "chrome", env = "CHROME")]
    pub chrome: Option<PathBuf>,

    /// How long Chromium may take to print its DevTools address, in milliseconds. It takes ~270 ms on a
    /// 2-core machine; a loaded machine can take seconds.
    #[arg(
        long,
        env = "PAGEWRIGHT_BROWSER_LAUNCH_TIMEOUT_MS",
        default_value_t = 20_000
    )]
    pub browser_launch_timeout_ms: u64,
}

/// Page pool sizing and recycling.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Most pages alive at once (idle and leased). Default: one per 128 MiB of memory, between 8 and
    /// 512 (a page costs ~10.5 MB PSS measured, plus headroom for heavy real-world pages).
    #[arg(long, env = "PAGEWRIGHT_MAX_PAGES")]
    pub max_pages: Option<usize>,

    /// Most renders running at once. The scheduler adapts how many actually run to how busy the
    /// CPUs are (see `--min-concurrent-renders`): Chromium rendering local pages saturates 2 cores
    /// at 4 (measured), while renders that wait on slow sites use no CPU and can run by the dozen.
    /// Default: 8 per CPU core, at most `--max-pages`.
    #[arg(long, env = "PAGEWRIGHT_MAX_CONCURRENT_RENDERS")]
    pub max_concurrent_renders: Option<usize>,

    /// The fewest renders the adaptive limit allows at once, and where it starts. Default: two per
    /// CPU core, where Chromium saturated 2 cores in the pool benchmark; the limit grows above it
    /// only while the CPUs idle with jobs waiting (renders waiting on slow sites).
    #[arg(long, env = "PAGEWRIGHT_MIN_CONCURRENT_RENDERS")]
    pub min_concurrent_renders: Option<usize>,

    /// Run exactly `--max-concurrent-renders` at once instead of adapting to the CPUs' load.
    #[arg(long, env = "PAGEWRIGHT_FIXED_CONCURRENCY", default_value_t = false)]
    pub fixed_concurrency: bool,

    /// How long a page may sit idle before it is closed, in milliseconds.
    #[arg(
        long,
        env = "PAGEWRIGHT_PAGE_IDLE_TIMEOUT_MS",
        default_value_t = 15_000
    )]
    pub page_idle_timeout_ms: u64,

    /// Jobs one page serves before it is closed and replaced: long-lived pages accumulate memory and
    /// slow down.
    #[arg(long, env = "PAGEWRIGHT_PAGE_REUSE_LIMIT", default_value_t = 200)]
    pub page_reuse_limit: u32,

    /// Jobs one browser context (one isolation key) serves before it is retired and replaced.
    #[arg(long, env = "PAGEWRIGHT_CONTEXT_REUSE_LIMIT", default_value_t = 5_000)]
    pub context_reuse_limit: u32,

    /// How long a job may wait for a free render slot before it fails, in milliseconds.
    #[arg(long, env = "PAGEWRIGHT_LEASE_TIMEOUT_MS", default_value_t = 30_000)]
    pub lease_timeout_ms: u64,
}

/// Limits on every plugin call.
#[derive(Debug, Clone, Args)]
pub struct PluginArgs {
    /// Fuel per plugin call: one unit per WebAssembly instruction, many of which cost nothing once
    /// compiled, so a tight loop here burns ~1.7e10 units per second of CPU (measured). 1e10 is ~0.6 s
    /// of CPU: far above an extractor in Rust (~3k units for a small call), C (~8k) or an interpreter
    /// (QuickJS ~74k, Python ~200k, SpiderMonkey ~6M), and a spinning plugin stops within a second.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_FUEL", default_value_t = PluginArgs::FUEL)]
    pub plugin_fuel: u64,

    /// Wall time per plugin call in milliseconds, host calls included; a job's own deadline also applies.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_TIMEOUT_MS", default_value_t = PluginArgs::TIMEOUT_MS)]
    pub plugin_timeout_ms: u64,

    /// Linear memory per plugin instance, in MiB. Python and JavaScript components need 30-60 MiB;
    /// 256 leaves room for a page's worth of data.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_MEMORY_MIB", default_value_t = PluginArgs::MEMORY_MIB)]
    pub plugin_memory_mib: usize,

    /// Linear memory all plugin instances together may hold, in MiB; a plugin that would go over it
    /// stops with a 503. Default: a quarter of the machine's memory, leaving the rest to Chromium.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_MEMORY_TOTAL_MIB")]
    pub plugin_memory_total_mib: Option<usize>,

    /// Largest output of one plugin call, in MiB. A full-page PNG of a long page is 5-20 MiB.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_MAX_OUTPUT_MIB", default_value_t = PluginArgs::MAX_OUTPUT_MIB)]
    pub plugin_max_output_mib: usize,

    /// Plugin instances alive at once: the size of the pooling allocator, and of the semaphore in front
    /// of it. Calls beyond it wait, within their job's deadline. Each slot reserves address space, not
    /// memory.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_INSTANCES", default_value_t = PluginArgs::INSTANCES)]
    pub plugin_instances: u32,

    /// Threads that run plugin code, at a lower OS priority than the server. Default: one per CPU core.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_WORKERS")]
    pub plugin_workers: Option<usize>,

    /// Largest plugin component an upload may send, in MiB (above it: 413). JavaScript and Python
    /// components are 12-19 MB.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_MAX_UPLOAD_MIB", default_value_t = PluginArgs::MAX_UPLOAD_MIB)]
    pub plugin_max_upload_mib: usize,

    /// Loads a plugin component from a file at start-up, as `NAME=PATH` (repeatable; comma-separated
    /// in the environment). For plugin authors trying a build, and operators who ship plugins as files.
    #[arg(long = "plugin", env = "PAGEWRIGHT_PLUGINS", value_delimiter = ',', value_parser = parse_plugin_file)]
    pub plugin_files: Vec<(String, PathBuf)>,
}

/// `NAME=PATH`, with a name that is safe in URLs and file names.
fn parse_plugin_file(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=PATH"))?;
    crate::plugin::check_name(name)?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub fuel: u64,
    pub timeout: Duration,
    pub max_memory_bytes: usize,
    pub max_total_memory_bytes: usize,
    pub max_output_bytes: usize,
    pub max_instances: u32,
    /// Plugin worker threads in all.
    pub workers: usize,
    /// The shards' nodes: a group of workers each, pinned to the node's CPUs and sharing
    /// `workers` by CPUs. Empty: one group, unpinned.
    pub worker_nodes: Vec<crate::shard::Node>,
    /// Copied from the server's setting: plugins' own navigations obey it.
    pub deny_private_networks: bool,
    /// Components to load at start-up, by name.
    pub files: Vec<(String, PathBuf)>,
    /// Largest upload, in bytes.
    pub max_upload_bytes: usize,
    /// Where uploads and compiled code are kept; `None` keeps nothing (one-off commands).
    pub data_dir: Option<PathBuf>,
}

impl PluginArgs {
    // The defaults, shared by the flags and `Default` (the reasons are on the flags).
    const FUEL: u64 = 10_000_000_000;
    const TIMEOUT_MS: u64 = 30_000;
    const MEMORY_MIB: usize = 256;
    const MAX_OUTPUT_MIB: usize = 64;
    const INSTANCES: u32 = 256;
    const MAX_UPLOAD_MIB: usize = 64;
}

impl Default for PluginArgs {
    fn default() -> Self {
        Self {
            plugin_fuel: Self::FUEL,
            plugin_timeout_ms: Self::TIMEOUT_MS,
            plugin_memory_mib: Self::MEMORY_MIB,
            plugin_memory_total_mib: None,
            plugin_max_output_mib: Self::MAX_OUTPUT_MIB,
            plugin_instances: Self::INSTANCES,
            plugin_workers: None,
            plugin_max_upload_mib: Self::MAX_UPLOAD_MIB,
            plugin_files: Vec::new(),
        }
    }
}

impl PluginArgs {
    pub fn validate(&self, deny_private_networks: bool) -> Result<PluginSettings, ConfigError> {
        let positive = |flag: &'static str, value: u64| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    flag,
                    rule: "positive",
                    value: "0".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("plugin-fuel", self.plugin_fuel)?;
        positive("plugin-timeout-ms", self.plugin_timeout_ms)?;
        positive("plugin-memory-mib", self.plugin_memory_mib as u64)?;
        positive("plugin-max-output-mib", self.plugin_max_output_mib as u64)?;
        positive("plugin-instances", u64::from(self.plugin_instances))?;
        positive("plugin-max-upload-mib", self.plugin_max_upload_mib as u64)?;
        // The pool reserves address space per slot (4 GiB for each memory, for guard pages): stay well
        // inside the 128 TiB of user address space.
        if self.plugin_instances > 4096 {
            return Err(ConfigError::Invalid {
                flag: "plugin-instances",
                rule: "at most 4096",
                value: self.plugin_instances.to_string(),
            });
        }
        if self.plugin_memory_mib > 4096 {
            return Err(ConfigError::Invalid {
                flag: "plugin-memory-mib",
                rule: "at most 4096 (a 32-bit memory)",
                value: self.plugin_memory_mib.to_string(),
            });
        }
        let max_total_memory_bytes = self
            .plugin_memory_total_mib
            .map_or((total_memory_bytes() / 4) as usize, |mib| mib << 20);
        if max_total_memory_bytes < self.plugin_memory_mib << 20 {
            return Err(ConfigError::Invalid {
                flag: "plugin-memory-total-mib",
                rule: "at least --plugin-memory-mib",
                value: (max_total_memory_bytes >> 20).to_string(),
            });
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = self.plugin_workers.unwrap_or(cores);
        positive("plugin-workers", workers as u64)?;
        Ok(PluginSettings {
            fuel: self.plugin_fuel,
            timeout: Duration::from_millis(self.plugin_timeout_ms),
            max_memory_bytes: self.plugin_memory_mib << 20,
            max_total_memory_bytes,
            max_output_bytes: self.plugin_max_output_mib << 20,
            max_instances: self.plugin_instances,
            workers,
            worker_nodes: Vec::new(),
            deny_private_networks,
            files: self.plugin_files.clone(),
            max_upload_bytes: self.plugin_max_upload_mib << 20,
            data_dir: None,
        })
    }
}

/// Validated settings, passed down explicitly.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub browser: BrowserSettings,
    pub pool: PoolSettings,
    pub plugins: PluginSettings,
    pub native_builtins: bool,
    pub job_timeout: Duration,
    pub max_job_timeout: Duration,
    pub max_body_bytes: usize,
    pub deny_private_networks: bool,
    pub shutdown_grace: Duration,
    pub admin_token: Option<Token>,
    pub render_token: Option<Token>,
    pub sched: crate::sched::SchedSettings,
    /// Default queue-wait budget of a job.
    pub queue_timeout: Duration,
    /// The scorer plugin to start with.
    pub scorer: Option<String>,
    pub jobs: crate::sched::JobsSettings,
    pub webhook_secret: Option<Token>,
    /// A shard per node.
    pub topology: crate::shard::Topology,
}

/// A bearer token, kept out of `Debug` output so settings can be logged.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct BrowserSettings {
    pub executable: PathBuf,
    pub launch_timeout: Duration,
    /// The NUMA node whose CPUs the browser's processes are pinned to and whose memory they
    /// prefer (a shard's); `None` leaves them wherever the kernel puts them.
    pub node: Option<crate::shard::Node>,
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_pages: usize,
    pub max_concurrent_renders: usize,
    /// The scheduler's adaptive limit: its floor, where it starts, and whether it adapts at all.
    pub min_concurrent_renders: usize,
    pub start_concurrent_renders: usize,
    pub fixed_concurrency: bool,
    pub idle_timeout: Duration,
    pub page_reuse_limit: u32,
    pub context_reuse_limit: u32,
    pub lease_timeout: Duration,
}

impl PoolSettings {
    /// A shard's pool: its share of the pages and of the renders by CPUs, `cpus` of `total_cpus`.
    /// Renders round up (the shares add up to at least the machine's limit, which the scheduler
    /// enforces), pages round down (their sum is what memory was sized for), and a shard always
    /// has a page for each render it may run.
    pub fn share(&self, cpus: usize, total_cpus: usize) -> Self {
        let renders =
            crate::shard::topology::share_by_cpus(self.max_concurrent_renders, cpus, total_cpus);
        let pages = (self.max_pages * cpus / total_cpus.max(1)).max(renders);
        Self {
            max_pages: pages,
            max_concurrent_renders: renders,
            ..self.clone()
        }
    }
}

/// A configuration that cannot work, named by the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "Chromium not found: set --chrome or $CHROME, or install it at /usr/bin/chromium \
         (Debian: apt-get install chromium); looked at {0}"
    )]
    ChromeMissing(String),
    #[error("--{flag} must be {rule}, got {value}")]
    Invalid {
        flag: &'static str,
        rule: &'static str,
        value: String,
    },
}

impl ServeArgs {
    /// Checks the flags against each other and the machine, and fills in derived defaults.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let pool = self.pool.validate()?;
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
            // Long enough that guessing is hopeless: `openssl rand -hex 32` gives 64 characters.
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
        if self.queue_capacity == 0 || self.queue_timeout_ms == 0 || self.aging_step_ms == 0 {
            return Err(ConfigError::Invalid {
                flag: "queue-capacity/queue-timeout-ms/aging-step-ms",
                rule: "positive",
                value: "0".into(),
            });
        }
        let sched = crate::sched::SchedSettings {
            queue_capacity: self.queue_capacity,
            slots: pool.max_concurrent_renders,
            min_slots: pool.min_concurrent_renders,
            start_slots: pool.start_concurrent_renders,
            adaptive: !pool.fixed_concurrency,
            aging_step: Duration::from_millis(self.aging_step_ms),
            fifo: self.queue_order == QueueOrder::Fifo,
        };
        let topology = match self.numa_nodes.as_str() {
            "auto" => crate::shard::Topology::detect(),
            spec => {
                crate::shard::Topology::configured(spec).map_err(|error| ConfigError::Invalid {
                    flag: "numa-nodes",
                    rule: "`auto` or CPU lists separated by `;` (like `0-3;4-7`)",
                    value: format!("`{spec}`: {error}"),
                })?
            }
        };
        if topology.nodes.len() > pool.max_concurrent_renders {
            return Err(ConfigError::Invalid {
                flag: "max-concurrent-renders",
                rule: "at least one per shard (NUMA node)",
                value: pool.max_concurrent_renders.to_string(),
            });
        }
        let mut plugins = self.plugins.validate(self.deny_private_networks)?;
        plugins.data_dir = Some(self.data_dir.clone().unwrap_or_else(default_data_dir));
        plugins.worker_nodes = topology.nodes.clone();
        plugins.workers = plugins.workers.max(topology.nodes.len());
        Ok(Settings {
            listen: self.listen,
            browser: self.browser.validate()?,
            pool,
            plugins,
            native_builtins: self.native_builtins,
            job_timeout: Duration::from_millis(self.job_timeout_ms),
            max_job_timeout: Duration::from_millis(self.max_job_timeout_ms),
            max_body_bytes: self.max_body_bytes,
            deny_private_networks: self.deny_private_networks,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            admin_token: self.admin_token.clone().map(Token),
            render_token: self.render_token.clone().map(Token),
            sched,
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
            scorer: self.scorer.clone(),
            jobs: crate::sched::JobsSettings {
                result_ttl: Duration::from_millis(self.job_result_ttl_ms),
                max_result_bytes: self.job_results_max_mib << 20,
                // Finished records are ~1 KB without their results: 100k is ~100 MB at most.
                max_records: MAX_FINISHED_JOBS,
            },
            webhook_secret: self.webhook_secret.clone().map(Token),
            topology,
        })
    }
}

/// Finished async jobs kept at most, whatever their age.
const MAX_FINISHED_JOBS: usize = 100_000;

/// Shortest admin or render token accepted.
const MIN_TOKEN_CHARS: usize = 16;

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

impl BrowserArgs {
    pub fn validate(&self) -> Result<BrowserSettings, ConfigError> {
        Ok(BrowserSettings {
            executable: find_chrome(self.chrome.clone())?,
            launch_timeout: Duration::from_millis(self.browser_launch_timeout_ms),
            node: None,
        })
    }
}

impl PoolArgs {
    pub fn validate(&self) -> Result<PoolSettings, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let max_pages = self
            .max_pages
            .unwrap_or_else(|| (total_memory_bytes() / (128 << 20)).clamp(8, 512) as usize);
        let max_concurrent_renders = self
            .max_concurrent_renders
            .unwrap_or((8 * cores).min(max_pages));
        let min_concurrent_renders = self
            .min_concurrent_renders
            .unwrap_or(2 * cores)
            .min(max_concurrent_renders);
        if min_concurrent_renders == 0 {
            return Err(ConfigError::Invalid {
                flag: "min-concurrent-renders",
                rule: "at least 1",
                value: "0".into(),
            });
        }
        if max_concurrent_renders == 0 {
            return Err(ConfigError::Invalid {
                flag: "max-concurrent-renders",
                rule: "at least 1",
                value: "0".into(),
            });
        }
        // Every running render holds a page, so fewer pages than renders would leave renders waiting for
        // pages that no one gives back.
        if max_pages < max_concurrent_renders {
            return Err(ConfigError::Invalid {
                flag: "max-pages",
                rule: "at least --max-concurrent-renders",
                value: max_pages.to_string(),
            });
        }
        if self.page_reuse_limit == 0 || self.context_reuse_limit == 0 {
            return Err(ConfigError::Invalid {
                flag: "page-reuse-limit/context-reuse-limit",
                rule: "at least 1",
                value: "0".into(),
            });
        }
        Ok(PoolSettings {
            max_pages,
            max_concurrent_renders,
            min_concurrent_renders,
            start_concurrent_renders: min_concurrent_renders,
            fixed_concurrency: self.fixed_concurrency,
            idle_timeout: Duration::from_millis(self.page_idle_timeout_ms),
            page_reuse_limit: self.page_reuse_limit,
            context_reuse_limit: self.context_reuse_limit,
            lease_timeout: Duration::from_millis(self.lease_timeout_ms),
        })
    }
}

/// `--chrome`/`$CHROME` if given, else Debian's location. Debian's `/usr/bin/chromium` is a shell wrapper;
/// the binary it runs lives in `/usr/lib/chromium/chromium` and starts faster without the wrapper's checks.
fn find_chrome(explicit: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return if path.exists() {
            Ok(path)
        } else {
            Err(ConfigError::ChromeMissing(format!(
                "{} (from --chrome/$CHROME)",
                path.display()
            )))
        };
    }
    let wrapper = PathBuf::from("/usr/bin/chromium");
    let binary = PathBuf::from("/usr/lib/chromium/chromium");
    if wrapper.exists() && binary.exists() {
        Ok(binary)
    } else if wrapper.exists() {
        Ok(wrapper)
    } else {
        Err(ConfigError::ChromeMissing(
            "$CHROME (unset) and /usr/bin/chromium".into(),
        ))
    }
}

/// Physical memory from `/proc/meminfo`; 4 GiB when it cannot be read (a conservative guess).
fn total_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(4 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(flags: &[&str]) -> Result<Settings, ConfigError> {
        let argv = ["pagewright", "serve"].iter().chain(flags);
        let Command::Serve(args) = Cli::try_parse_from(argv).expect("flags parse").command else {
            panic!("parsed as another command");
        };
        args.validate()
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
        let share = settings.pool.share(1, 3);
        assert_eq!((share.max_pages, share.max_concurrent_renders), (10, 3));
        // Never fewer pages than renders, never no renders.
        let tiny = PoolSettings {
            max_pages: 2,
            max_concurrent_renders: 2,
            ..settings.pool.clone()
        }
        .share(1, 4);
        assert_eq!((tiny.max_pages, tiny.max_concurrent_renders), (1, 1));
    }
}
