//! `shards`: one shard against two configured shards on this machine, in one run.
//!
//! Each configuration is a server of its own (the bench binary in `serve` mode, default settings but
//! the topology). `clients` loops each send a screenshot as soon as the last was answered, rotating
//! over `keys` isolation keys; after a warm-up, the bench measures throughput and latency, and from
//! `/metrics` how the jobs were placed: on a shard with an idle page of their key (warm), on their
//! key's home shard without one, or on the least-loaded shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::load::{Figures, Sample, shoot};
use crate::scenarios::{PagewrightServer, serve_page};

const WARM_UP: Duration = Duration::from_secs(10);

/// Placements counted in `/metrics`, by why: warm, home, least loaded.
#[derive(Debug, Default, Clone, Copy)]
struct Placements {
    warm: u64,
    home: u64,
    least_loaded: u64,
}

impl Placements {
    async fn read(client: &reqwest::Client, base: &str) -> anyhow::Result<Self> {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let mut placements = Self::default();
        for line in text
            .lines()
            .filter(|line| line.starts_with("pagewright_placements_total{"))
        {
            let count: u64 = line
                .rsplit(' ')
                .next()
                .and_then(|count| count.parse().ok())
                .unwrap_or(0);
            if line.contains("placement=\"warm\"") {
                placements.warm += count;
            } else if line.contains("placement=\"home\"") {
                placements.home += count;
            } else {
                placements.least_loaded += count;
            }
        }
        Ok(placements)
    }

    fn since(self, before: Self) -> Self {
        Self {
            warm: self.warm - before.warm,
            home: self.home - before.home,
            least_loaded: self.least_loaded - before.least_loaded,
        }
    }

    fn total(self) -> u64 {
        self.warm + self.home + self.least_loaded
    }
}

/// `clients` closed loops for `duration`, request `n` of client `c` on key `(c + n) % keys`.
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    page: &str,
    clients: usize,
    keys: usize,
    duration: Duration,
) -> Vec<Sample> {
    let end = Instant::now() + duration;
    let page: Arc<str> = Arc::from(page);
    let tasks: Vec<_> = (0..clients)
        .map(|index| {
            let (client, url, page) = (client.clone(), url.to_owned(), page.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut n = index;
                while Instant::now() < end {
                    let body = json!({
                        "url": &*page,
                        "page": { "isolation_key": format!("key-{}", n % keys) },
                    });
                    samples.push(shoot(&client, &url, &body).await);
                    n += 1;
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap_or_default());
    }
    samples
}

pub async fn shards_bench(duration: Duration, clients: usize, keys: usize) -> anyhow::Result<()> {
    let page = format!("http://{}/", serve_page().await?);
    let cpus = pagewright::topology::Topology::detect()
        .nodes
        .iter()
        .flat_map(|node| node.cpus.clone())
        .collect::<Vec<_>>();
    anyhow::ensure!(
        cpus.len() >= 2,
        "two shards need two CPUs; this machine has {cpus:?}"
    );
    let two = format!("{};{}", cpus[0], cpus[1]);
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for (label, flags) in [
        ("one shard", vec![]),
        ("two shards", vec!["--numa-nodes", two.as_str()]),
    ] {
        let server = PagewrightServer::start(&flags).await?;
        let url = format!("{}/v1/screenshot", server.base());
        closed_loop(&client, &url, &page, clients, keys, WARM_UP).await;
        let before = Placements::read(&client, server.base()).await?;
        let began = Instant::now();
        let samples = closed_loop(&client, &url, &page, clients, keys, duration).await;
        let seconds = began.elapsed().as_secs_f64();
        let placed = Placements::read(&client, server.base())
            .await?
            .since(before);
        let figures = Figures::of(&samples);
        eprintln!(
            "shards [{label}]: {} ok, {} failed in {seconds:.1} s; placements {placed:?}",
            figures.ok, figures.failed
        );
        rows.push((label, figures, seconds, placed));
    }
    let one_throughput = rows[0].1.ok as f64 / rows[0].2;
    println!(
        "| configuration | renders/s | vs one shard | p50 ms | p99 ms | failed | placed on a warm page | home shard, no idle page | least loaded |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (label, figures, seconds, placed) in &rows {
        let throughput = figures.ok as f64 / seconds;
        let share = |count: u64| 100.0 * count as f64 / placed.total().max(1) as f64;
        println!(
            "| {label} | {throughput:.2} | **{:.2}x** | {:.1} | {:.1} | {} | {:.1}% | {:.1}% | {:.1}% |",
            throughput / one_throughput,
            figures.p50_ms,
            figures.p99_ms,
            figures.failed,
            share(placed.warm),
            share(placed.home),
            share(placed.least_loaded),
        );
    }
    Ok(())
}
