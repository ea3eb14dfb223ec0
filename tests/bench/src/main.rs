//! pagewright benchmarks: figures and ratios against baselines, measured in one run.
//!
//! `cargo run --release -p pagewright-bench -- pool` renders a local page (served by the bench on
//! 127.0.0.1) as viewport PNG screenshots for a fixed time at several concurrencies, four ways:
//! 1. through pagewright's HTTP API (the server runs as a child process, this same binary in `serve` mode,
//!    so its memory is measured apart from the load generator);
//! 2. a raw chromiumoxide loop on pre-opened pages (goto + screenshot): the limit;
//! 3. a new browser process per render: the naive approach;
//! 4. a new tab per render in one browser: what browserless, Gotenberg and prerender do.
//!
//! `cargo run --release -p pagewright-bench -- plugins` measures the plugin host: a no-op call's cost,
//! the built-in screenshot plugin against the native path, and isolation from spinning plugins.
//!
//! `cargo run --release -p pagewright-bench -- languages` measures the same extractor in Rust, C,
//! JavaScript and Python: upload-and-compile time, load time after a restart, fuel and time per call.
//!
//! `cargo run --release -p pagewright-bench -- farm` measures async jobs through the job store
//! (PostgreSQL shared by 1, 2 and 4 hosts, SQLite, and the in-memory queue of an older build).
//!
//! `cargo run --release -p pagewright-bench -- sched-core` measures the scheduler's queue alone;
//! `-- flood` holds 13,000 jobs in flight against one server; `-- priority` and `-- fairness`
//! measure urgent jobs under a cold flood and a small tenant beside a big one, each against an idle
//! server and against first-come-first-served.
//!
//! `cargo run --release -p pagewright-bench -- cache` measures the response cache: a cached
//! screenshot's latency against a rendered one, and how many renders 100 identical concurrent
//! requests cost.
//!
//! `cargo run --release -p pagewright-bench -- markdown` measures the markdown output on a long
//! page: its size against the HTML's, its time against `/v1/content`.
//!
//! Memory is the sum of PSS (not RSS, which counts shared pages once per process) over the process tree.

mod cache;
mod farm;
mod flood;
mod languages;
mod load;
mod markdown;
mod memory;
mod plugins;
#[path = "../../support/postgres.rs"]
mod postgres;
mod scenarios;
mod sched;
mod shards;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "pagewright benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Render throughput, latency and memory: pagewright vs raw chromiumoxide, browser per render,
    /// tab per render.
    Pool {
        /// Seconds each scenario runs at each concurrency.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
        concurrency: Vec<usize>,
        /// Seconds for the browser-per-render baseline at each level (it is ~15x slower, and each
        /// render costs a full browser start).
        #[arg(long, default_value_t = 10)]
        naive_seconds: u64,
        /// Another build of pagewright (`PATH serve` is run) to measure beside this one, in the
        /// same sitting: before and after a change on the job path.
        #[arg(long)]
        server: Vec<std::path::PathBuf>,
        /// Measure only pagewright (and `--server`), not the baselines.
        #[arg(long)]
        pagewright_only: bool,
    },
    /// The plugin host: no-op call cost, built-in screenshot plugin vs the native path, and a normal
    /// job's latency while hundreds of plugins spin.
    Plugins {
        /// No-op extractor calls for (a).
        #[arg(long, default_value_t = 100_000)]
        calls: usize,
        /// Seconds per round for (b).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Rounds for (b), alternating plugin and native.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Concurrent clients for (b): Chromium saturates at 4-8 here.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Spinning plugin calls for (c).
        #[arg(long, default_value_t = 200)]
        loops: usize,
    },
    /// The same extractor in Rust, C, JavaScript and Python: upload and compile, load after a
    /// restart, fuel and wall time per call.
    Languages {
        /// Rounds of upload and of restore per language.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Calls per language on the page.
        #[arg(long, default_value_t = 50)]
        calls: usize,
    },
    /// The scheduler's queue alone: enqueue + dequeue operations per second with many jobs queued.
    SchedCore {
        /// Jobs queued while measuring.
        #[arg(long, default_value_t = 100_000)]
        queued: usize,
        /// Operations measured (half pushes, half pops).
        #[arg(long, default_value_t = 2_000_000)]
        operations: usize,
        /// Tenants the jobs are spread over.
        #[arg(long, default_value_t = 1_000)]
        tenants: usize,
    },
    /// Thousands of jobs in flight at once, half synchronous and half async with webhooks: none
    /// lost, host memory while they are in flight.
    Flood {
        /// Jobs submitted, all at once.
        #[arg(long, default_value_t = 13_000)]
        jobs: usize,
        /// The share of them submitted as async jobs.
        #[arg(long, default_value_t = 0.5)]
        async_share: f64,
    },
    /// Urgent jobs at a steady rate while a cold flood saturates the machine: their latency against
    /// the same jobs on an idle server, with priorities and with FIFO.
    Priority {
        /// Seconds each measurement runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Urgent jobs per second.
        #[arg(long, default_value_t = 2.0)]
        urgent_rate: f64,
        /// Clients in the cold flood, each sending its next job as soon as the last is answered.
        #[arg(long, default_value_t = 32)]
        clients: usize,
    },
    /// Two tenants, one sending `ratio` times the other's rate: the small one's latency against an
    /// idle server, with tenants taking turns and with FIFO.
    Fairness {
        /// Seconds each measurement runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The small tenant's jobs per second.
        #[arg(long, default_value_t = 1.0)]
        small_rate: f64,
        /// How many times the small tenant's rate the big one sends.
        #[arg(long, default_value_t = 100.0)]
        ratio: f64,
    },
    /// One shard against two configured shards (`--numa-nodes`) on this machine: throughput, p50
    /// and p99 under a closed loop of clients over several isolation keys, and how often placement
    /// found a warm page.
    Shards {
        /// Seconds each configuration is measured.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Clients, each sending its next screenshot as soon as the last is answered.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Isolation keys the jobs rotate over.
        #[arg(long, default_value_t = 8)]
        keys: usize,
    },
    /// Async jobs with a plugin that needs no page through the job store at 1, 2 and 4 hosts:
    /// PostgreSQL shared by the hosts, SQLite per host, and the in-memory queue of a build from
    /// before the store. Jobs/s, claim latency, lost jobs, and jobs run twice after a host is killed.
    Farm {
        /// Jobs per run.
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        /// Host counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        hosts: Vec<usize>,
        /// Clients submitting at once.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// A `pagewright` binary built from before the store (its in-memory queue is the baseline);
        /// its rows are left out without one.
        #[arg(long)]
        in_memory_server: Option<std::path::PathBuf>,
        /// PostgreSQL's `fsync`: on, as a production database runs; off to see the store's cost
        /// without the disk's.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        fsync: bool,
        /// Leave out the run with a host killed.
        #[arg(long)]
        no_kill: bool,
        /// Leave out the SQLite rows.
        #[arg(long)]
        no_sqlite: bool,
        /// A PostgreSQL database to use instead of a throwaway cluster (every run shares it).
        #[arg(long)]
        postgres_url: Option<String>,
        /// Runs of each configuration (the table shows the median one).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The response cache: a cached screenshot's latency against a rendered one, and the renders
    /// that identical concurrent requests cost.
    Cache {
        /// Sequential cached requests measured (a tenth as many uncached).
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// Identical requests sent at once for the coalescing figure.
        #[arg(long, default_value_t = 100)]
        concurrent: usize,
    },
    /// The markdown output on a long page: size against the HTML, time against `/v1/content`.
    Markdown {
        /// Sections of the page (each a heading, two paragraphs, a list and an ad).
        #[arg(long, default_value_t = 500)]
        sections: usize,
        /// Measured rounds (after one warm-up).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
    /// Internal: run the pagewright server (the `pool` bench starts this as its child process).
    #[command(hide = true)]
    Serve {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // reqwest's TLS has no crypto provider of its own: every client needs the process's first.
    pagewright::install_tls_provider();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        BenchCommand::Pool {
            seconds,
            concurrency,
            naive_seconds,
            server,
            pagewright_only,
        } => runtime.block_on(scenarios::pool_bench(
            Duration::from_secs(seconds),
            Duration::from_secs(naive_seconds),
            &concurrency,
            &server,
            pagewright_only,
        )),
        BenchCommand::Plugins {
            calls,
            seconds,
            rounds,
            concurrency,
            loops,
        } => runtime.block_on(plugins::plugin_bench(plugins::Options {
            calls,
            seconds: Duration::from_secs(seconds),
            rounds,
            concurrency,
            loops,
        })),
        BenchCommand::Languages { rounds, calls } => {
            runtime.block_on(languages::languages_bench(rounds, calls))
        }
        BenchCommand::SchedCore {
            queued,
            operations,
            tenants,
        } => sched::sched_core_bench(queued, operations, tenants),
        BenchCommand::Flood { jobs, async_share } => {
            runtime.block_on(flood::flood_bench(jobs, async_share))
        }
        BenchCommand::Priority {
            seconds,
            urgent_rate,
            clients,
        } => runtime.block_on(load::priority_bench(seconds, urgent_rate, clients)),
        BenchCommand::Fairness {
            seconds,
            small_rate,
            ratio,
        } => runtime.block_on(load::fairness_bench(seconds, small_rate, ratio)),
        BenchCommand::Shards {
            seconds,
            clients,
            keys,
        } => runtime.block_on(shards::shards_bench(
            Duration::from_secs(seconds),
            clients,
            keys,
        )),
        BenchCommand::Farm {
            jobs,
            hosts,
            clients,
            in_memory_server,
            fsync,
            no_kill,
            no_sqlite,
            postgres_url,
            rounds,
        } => runtime.block_on(farm::farm_bench(farm::Options {
            jobs,
            hosts,
            clients,
            in_memory_server,
            fsync,
            no_kill,
            no_sqlite,
            postgres_url,
            rounds: rounds.max(1),
        })),
        BenchCommand::Cache {
            requests,
            concurrent,
        } => runtime.block_on(cache::cache_bench(requests, concurrent)),
        BenchCommand::Markdown { sections, rounds } => {
            runtime.block_on(markdown::markdown_bench(sections, rounds.max(1)))
        }
        BenchCommand::Serve { args } => runtime.block_on(async move {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_writer(std::io::stderr)
                .init();
            let argv = ["pagewright", "serve"]
                .into_iter()
                .map(String::from)
                .chain(args);
            pagewright::run_server(pagewright::cli::serve_settings(argv)?).await
        }),
    }
}
