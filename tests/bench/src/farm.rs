//! `farm`: async jobs through the job store, with a plugin that needs no page (the `noop` test
//! guest, so Chromium is not the bottleneck), at 1, 2 and 4 hosts on this machine, through three
//! queues in one run:
//!
//! - **PostgreSQL**: the hosts share one database (a throwaway cluster with `fsync` on, as a
//!   production database runs): one queue, claimed with `FOR UPDATE SKIP LOCKED`;
//! - **SQLite**: each host its own file in its own data directory (a SQLite store is one host's),
//!   so n hosts are n independent queues;
//! - **in memory**: another build of pagewright from before the store (`--in-memory-server`),
//!   n independent hosts.
//!
//! Clients submit the jobs round-robin over the hosts (`POST /v1/jobs`, each with a webhook to a
//! receiver in this process), as fast as the hosts accept them. A job counts as done when its
//! webhook arrives; jobs/s is the jobs done over the time from the first submission to the last
//! webhook. Claim latency is the claim transaction's, from the hosts' `jobs_claim_seconds`
//! histograms (summed over hosts; quantiles interpolated within a bucket, as Prometheus does). A
//! job is lost when it was accepted (202) and its webhook never came. Each configuration runs
//! `--rounds` times (fresh hosts, fresh database) and the table shows the median round, with every
//! round's rate beside it: on 2 cores shared by the hosts, PostgreSQL and this load generator, rounds
//! vary by a quarter. Last, a PostgreSQL farm is measured while one of its hosts is killed (SIGKILL)
//! mid-run, while it runs jobs: they are claimed again when their leases run out, and the jobs that
//! ran more than once (attempts >= 2) are counted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::memory;
use crate::postgres::TestPostgres;
use crate::scenarios::{PagewrightServer, percentile};

/// How long a run may go without a webhook before the jobs not yet heard of count as lost. Longer
/// than the kill run's lease, so its jobs have been claimed again by then.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long the hosts are left to settle after they start.
const SETTLE: Duration = Duration::from_secs(5);
/// The kill run's lease: short, so a dead host's jobs come back within seconds.
const KILL_RUN_LEASE_MS: &str = "3000";

pub struct Options {
    pub jobs: usize,
    pub hosts: Vec<usize>,
    pub clients: usize,
    pub in_memory_server: Option<PathBuf>,
    pub fsync: bool,
    /// Leave out the run with a host killed.
    pub no_kill: bool,
    /// Leave out the SQLite rows.
    pub no_sqlite: bool,
    /// A PostgreSQL database to use instead of a throwaway cluster (every run shares it).
    pub postgres_url: Option<String>,
    /// Runs of each configuration: the table shows the median one.
    pub rounds: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Postgres,
    Sqlite,
    InMemory,
}

impl Queue {
    fn label(self, hosts: usize) -> String {
        match self {
            Queue::Postgres => format!("PostgreSQL, {hosts} host(s) sharing it"),
            Queue::Sqlite if hosts == 1 => "SQLite, 1 host".to_owned(),
            Queue::Sqlite => format!("SQLite, {hosts} independent hosts"),
            Queue::InMemory if hosts == 1 => "in memory (before), 1 host".to_owned(),
            Queue::InMemory => format!("in memory (before), {hosts} independent hosts"),
        }
    }
}

/// What the receiver heard of one job.
#[derive(Debug, Clone)]
struct Heard {
    deliveries: usize,
    state: String,
    attempts: u64,
}

/// The webhook receiver's record: every job it heard of, and when it last heard one.
#[derive(Debug, Default)]
struct Hooks {
    jobs: HashMap<String, Heard>,
    last: Option<Instant>,
}

type SharedHooks = Arc<Mutex<Hooks>>;

fn lock(hooks: &SharedHooks) -> std::sync::MutexGuard<'_, Hooks> {
    hooks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A receiver on 127.0.0.1 for the jobs' webhooks; its URL.
async fn webhook_receiver(hooks: SharedHooks) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: HeaderMap, axum::Json(job): axum::Json<Value>| {
                let hooks = hooks.clone();
                async move {
                    // The Standard Webhooks id where the host sends one (the store's builds); the
                    // job's id otherwise (the in-memory build).
                    let id = headers
                        .get("webhook-id")
                        .and_then(|id| id.to_str().ok())
                        .or(job["id"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    let mut hooks = lock(&hooks);
                    hooks.last = Some(Instant::now());
                    let heard = hooks.jobs.entry(id).or_insert(Heard {
                        deliveries: 0,
                        state: String::new(),
                        attempts: 0,
                    });
                    heard.deliveries += 1;
                    heard.state = job["state"].as_str().unwrap_or_default().to_owned();
                    heard.attempts = job["attempts"].as_u64().unwrap_or(1);
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// One run's figures.
#[derive(Debug)]
struct Measured {
    label: String,
    accepted: usize,
    refused: usize,
    done: usize,
    failed: usize,
    lost: usize,
    ran_twice: usize,
    duplicate_webhooks: usize,
    seconds: f64,
    submit_p50_ms: f64,
    submit_p99_ms: f64,
    claim_p50_ms: Option<f64>,
    claim_p99_ms: Option<f64>,
    leases_lost: u64,
    host_rss_mb: f64,
}

impl Measured {
    fn jobs_per_second(&self) -> f64 {
        self.done as f64 / self.seconds
    }
}

/// A run's hosts, and the one to kill mid-run.
struct Farm {
    queue: Queue,
    hosts: Vec<PagewrightServer>,
    kill: Option<usize>,
}

pub async fn farm_bench(options: Options) -> anyhow::Result<()> {
    let limit = pagewright::raise_open_files_limit()?;
    anyhow::ensure!(
        limit as usize > options.clients * 2 + 1_000,
        "the open files limit ({limit}) is too low for {} clients",
        options.clients
    );
    let noop = pagewright_test_guests::plugin_flag("noop");
    let postgres = options
        .postgres_url
        .is_none()
        .then(|| TestPostgres::start_with(options.fsync));
    let database = |number: usize| match (&postgres, &options.postgres_url) {
        (Some(postgres), _) => postgres.database(&format!("farm_{number}")),
        (None, url) => url.clone().unwrap_or_default(),
    };
    println!(
        "machine: {} cores; {} jobs per run from {} clients; plugin `noop`, no page; PostgreSQL fsync {}",
        crate::scenarios::cores(),
        options.jobs,
        options.clients,
        if options.fsync { "on" } else { "off" },
    );
    if options.in_memory_server.is_none() {
        println!("(no --in-memory-server: the in-memory rows are left out)");
    }

    let mut results = Vec::new();
    let mut databases = 0;
    for &hosts in &options.hosts {
        for queue in [Queue::InMemory, Queue::Sqlite, Queue::Postgres] {
            if queue == Queue::InMemory && options.in_memory_server.is_none()
                || queue == Queue::Sqlite && options.no_sqlite
            {
                continue;
            }
            let program = (queue == Queue::InMemory)
                .then_some(options.in_memory_server.as_deref())
                .flatten();
            let mut rounds = Vec::new();
            for _ in 0..options.rounds {
                // A fresh database each round: each starts from an empty queue.
                let args: Vec<String> = match queue {
                    Queue::Postgres => {
                        databases += 1;
                        vec!["--database-url".into(), database(databases)]
                    }
                    Queue::InMemory | Queue::Sqlite => Vec::new(),
                };
                let farm = Farm::start(queue, hosts, program, &noop, &args, None).await?;
                rounds.push(farm.measure(&options).await?);
                print_last(&rounds);
            }
            results.push(Row::of(rounds));
        }
    }

    if options.no_kill {
        print_table(&results);
        return Ok(());
    }
    // A host killed mid-run, in the largest PostgreSQL farm.
    let hosts = options.hosts.iter().copied().max().unwrap_or(1).max(2);
    let args = vec![
        "--database-url".to_owned(),
        database(databases + 1),
        "--job-lease-ms".to_owned(),
        KILL_RUN_LEASE_MS.to_owned(),
    ];
    let farm = Farm::start(Queue::Postgres, hosts, None, &noop, &args, Some(hosts - 1)).await?;
    let killed = farm.measure(&options).await?;
    print_last(std::slice::from_ref(&killed));
    results.push(Row::of(vec![killed]));

    print_table(&results);
    Ok(())
}

impl Farm {
    async fn start(
        queue: Queue,
        hosts: usize,
        program: Option<&std::path::Path>,
        plugin: &str,
        args: &[String],
        kill: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut flags = vec!["--plugin", plugin, "--queue-capacity", "100000"];
        if queue != Queue::InMemory {
            flags.extend(["--job-queue-capacity", "1000000"]);
        }
        flags.extend(args.iter().map(String::as_str));
        let mut started = Vec::new();
        for _ in 0..hosts {
            started.push(PagewrightServer::start_program(program, &flags).await?);
        }
        // Each host's Chromium is busy for a few seconds after it starts: the figures are the
        // jobs', not the browsers' start.
        tokio::time::sleep(SETTLE).await;
        Ok(Self {
            queue,
            hosts: started,
            kill,
        })
    }

    /// Submits the jobs, waits for their webhooks, and stops the hosts.
    async fn measure(mut self, options: &Options) -> anyhow::Result<Measured> {
        let hooks = SharedHooks::default();
        let hook = webhook_receiver(hooks.clone()).await?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(options.clients)
            .build()?;
        // Submitted to the hosts that stay up: the killed one takes jobs from the shared queue.
        let bases: Vec<String> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(index, _)| Some(*index) != self.kill)
            .map(|(_, host)| host.base().to_owned())
            .collect();
        let pids: Vec<u32> = self.hosts.iter().map(PagewrightServer::pid).collect();
        let peak_rss = Arc::new(AtomicUsize::new(0));
        let sampling = {
            let peak_rss = peak_rss.clone();
            tokio::spawn(async move {
                loop {
                    for &pid in &pids {
                        peak_rss.fetch_max(memory::rss(pid) as usize, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };

        let began = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..options.clients)
            .map(|_| {
                let (client, bases, hook, next) =
                    (client.clone(), bases.clone(), hook.clone(), next.clone());
                let jobs = options.jobs;
                tokio::spawn(async move {
                    let mut submitted = Submitted::default();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= jobs {
                            return submitted;
                        }
                        let base = &bases[index % bases.len()];
                        let body = json!({ "plugin": "noop", "webhook": hook });
                        let sent = Instant::now();
                        match client
                            .post(format!("{base}/v1/jobs"))
                            .json(&body)
                            .send()
                            .await
                        {
                            Ok(response) if response.status() == 202 => {
                                submitted.latencies.push(sent.elapsed());
                                submitted.accepted += 1;
                            }
                            Ok(response) => {
                                let status = response.status();
                                let text = response.text().await.unwrap_or_default();
                                if submitted.refused == 0 {
                                    eprintln!("farm: a submission was refused: {status} {text}");
                                }
                                submitted.refused += 1;
                            }
                            Err(error) => {
                                if submitted.refused == 0 {
                                    eprintln!("farm: a submission failed: {error}");
                                }
                                submitted.refused += 1;
                            }
                        }
                    }
                })
            })
            .collect();

        let mut killed = false;
        let mut submitted = Submitted::default();
        let mut submitters = Some(submitters);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // The submitters' figures, once they have all ended.
            if let Some(tasks) =
                submitters.take_if(|tasks| tasks.iter().all(|task| task.is_finished()))
            {
                for task in tasks {
                    submitted.merge(task.await?);
                }
            }
            let (heard, last) = {
                let hooks = lock(&hooks);
                (hooks.jobs.len(), hooks.last)
            };
            // Killed while it runs jobs (its scheduler says so), as a crash would find it.
            if let Some(victim) = self.kill
                && !killed
                && heard >= options.jobs * 2 / 5
                && running_jobs(&client, self.hosts[victim].base()).await > 0
            {
                self.hosts[victim].kill().await;
                killed = true;
            }
            if submitters.is_some() {
                continue;
            }
            let quiet = last.unwrap_or(began).elapsed();
            if heard >= submitted.accepted || quiet > STALL_LIMIT {
                break;
            }
        }
        sampling.abort();

        let metrics = self.scrape_metrics(&client).await;
        let claims = Histogram::sum(
            metrics
                .iter()
                .map(|text| Histogram::parse(text, "pagewright_jobs_claim_seconds")),
        );
        let leases_lost = metrics
            .iter()
            .map(|text| counter(text, "pagewright_jobs_leases_lost_total"))
            .sum();
        let label = match self.kill {
            Some(_) => format!("{}, one killed mid-run", self.queue.label(self.hosts.len())),
            None => self.queue.label(self.hosts.len()),
        };
        for host in self.hosts {
            host.stop().await;
        }

        let hooks = lock(&hooks);
        let last = hooks.last.unwrap_or(began);
        let done = hooks
            .jobs
            .values()
            .filter(|heard| heard.state == "succeeded")
            .count();
        submitted.latencies.sort_unstable();
        Ok(Measured {
            label,
            accepted: submitted.accepted,
            refused: submitted.refused,
            done,
            failed: hooks.jobs.len() - done,
            lost: submitted.accepted.saturating_sub(hooks.jobs.len()),
            ran_twice: hooks
                .jobs
                .values()
                .filter(|heard| heard.attempts >= 2)
                .count(),
            duplicate_webhooks: hooks.jobs.values().map(|heard| heard.deliveries - 1).sum(),
            seconds: last.duration_since(began).as_secs_f64(),
            submit_p50_ms: percentile(&submitted.latencies, 0.50),
            submit_p99_ms: percentile(&submitted.latencies, 0.99),
            claim_p50_ms: claims.as_ref().map(|claims| claims.quantile(0.50) * 1000.0),
            claim_p99_ms: claims.as_ref().map(|claims| claims.quantile(0.99) * 1000.0),
            leases_lost,
            host_rss_mb: peak_rss.load(Ordering::Relaxed) as f64 / 1e6,
        })
    }

    /// Each host's `/metrics` (a killed host's is gone with it).
    async fn scrape_metrics(&self, client: &reqwest::Client) -> Vec<String> {
        let mut texts = Vec::new();
        for (index, host) in self.hosts.iter().enumerate() {
            if Some(index) == self.kill {
                continue;
            }
            if let Ok(response) = client.get(format!("{}/metrics", host.base())).send().await
                && let Ok(text) = response.text().await
            {
                texts.push(text);
            }
        }
        texts
    }
}

/// One submitter's figures.
#[derive(Debug, Default)]
struct Submitted {
    accepted: usize,
    refused: usize,
    latencies: Vec<Duration>,
}

impl Submitted {
    fn merge(&mut self, other: Submitted) {
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.latencies.extend(other.latencies);
    }
}

/// A Prometheus histogram read from the text format: cumulative counts at each upper bound.
#[derive(Debug, Clone)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    fn parse(text: &str, name: &str) -> Option<Self> {
        let prefix = format!("{name}_bucket{{le=\"");
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(&prefix)?;
                let (bound, count) = rest.split_once("\"} ")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, count.trim().parse().ok()?))
            })
            .collect();
        (!buckets.is_empty()).then_some(Self { buckets })
    }

    /// The bucket-wise sum of several hosts' histograms (all with the same bounds).
    fn sum(histograms: impl Iterator<Item = Option<Self>>) -> Option<Self> {
        histograms.flatten().reduce(|mut total, other| {
            for (bucket, (_, count)) in total.buckets.iter_mut().zip(other.buckets) {
                bucket.1 += count;
            }
            total
        })
    }

    /// The `q` quantile, interpolated linearly within its bucket (Prometheus's
    /// `histogram_quantile`); the largest finite bound when it falls in `+Inf`.
    fn quantile(&self, q: f64) -> f64 {
        let total = self.buckets.last().map_or(0.0, |bucket| bucket.1);
        if total == 0.0 {
            return f64::NAN;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.buckets {
            if count >= rank {
                if bound.is_infinite() {
                    return lower.0;
                }
                let share = if count > lower.1 {
                    (rank - lower.1) / (count - lower.1)
                } else {
                    0.0
                };
                return lower.0 + (bound - lower.0) * share;
            }
            lower = (bound, count);
        }
        lower.0
    }
}

/// The jobs running on a host now, as its scheduler counts them (0 if it does not answer).
async fn running_jobs(client: &reqwest::Client, base: &str) -> u64 {
    let status: Value = match client.get(format!("{base}/v1/status")).send().await {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(_) => Value::Null,
    };
    status["scheduler"]["running"].as_u64().unwrap_or(0)
}

/// A counter's value in the text format (0 when absent).
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn milliseconds(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.1}"))
}

fn print_last(results: &[Measured]) {
    if let Some(last) = results.last() {
        eprintln!(
            "farm: {}: {:.0} jobs/s, {} done, {} lost, {} ran twice",
            last.label,
            last.jobs_per_second(),
            last.done,
            last.lost,
            last.ran_twice
        );
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "| queue | jobs/s (median) | rounds' jobs/s | claim p50 / p99 ms | submit p50 / p99 ms | accepted | done | failed | refused | lost | ran twice | webhooks repeated | leases lost | peak host RSS MB |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let median = &row.median;
        println!(
            "| {} | **{:.0}** | {} | {} / {} | {:.1} / {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            median.label,
            median.jobs_per_second(),
            row.rates
                .iter()
                .map(|rate| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            milliseconds(median.claim_p50_ms),
            milliseconds(median.claim_p99_ms),
            median.submit_p50_ms,
            median.submit_p99_ms,
            row.total.accepted,
            row.total.done,
            row.total.failed,
            row.total.refused,
            row.total.lost,
            row.total.ran_twice,
            row.total.duplicate_webhooks,
            row.total.leases_lost,
            median.host_rss_mb,
        );
    }
    println!(
        "latencies and RSS are the median round's; counts are summed over the rounds. \
         targets: PostgreSQL with 4 hosts >= 1,000 jobs/s, claim p99 <= 20 ms; lost 0 in every row"
    );
}

/// A configuration's rounds: the median one by jobs/s, every round's rate, and the counts summed.
struct Row {
    median: Measured,
    rates: Vec<f64>,
    total: Totals,
}

#[derive(Default)]
struct Totals {
    accepted: usize,
    done: usize,
    failed: usize,
    refused: usize,
    lost: usize,
    ran_twice: usize,
    duplicate_webhooks: usize,
    leases_lost: u64,
}

impl Row {
    fn of(mut rounds: Vec<Measured>) -> Self {
        let rates = rounds.iter().map(Measured::jobs_per_second).collect();
        let mut total = Totals::default();
        for round in &rounds {
            total.accepted += round.accepted;
            total.done += round.done;
            total.failed += round.failed;
            total.refused += round.refused;
            total.lost += round.lost;
            total.ran_twice += round.ran_twice;
            total.duplicate_webhooks += round.duplicate_webhooks;
            total.leases_lost += round.leases_lost;
        }
        rounds.sort_by(|a, b| a.jobs_per_second().total_cmp(&b.jobs_per_second()));
        let median = rounds.swap_remove(rounds.len() / 2);
        Self {
            median,
            rates,
            total,
        }
    }
}
