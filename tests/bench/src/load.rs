//! `priority` and `fairness`: latency of one kind of job while another floods the server, against
//! the same jobs on an idle server and against first-come-first-served (`--queue-order fifo`), in
//! one run.
//!
//! - **priority**: urgent screenshots arrive at a steady rate while cold screenshots from many
//!   clients (each sending the next as soon as the last is answered) keep Chromium saturated.
//! - **fairness**: two tenants send screenshots at steady rates, one a hundred times the other's; the
//!   big one sends more than the machine renders, so its backlog grows until its jobs reach their
//!   queue deadline (a 503 by design).
//!
//! Each server is the bench binary in `serve` mode, a process of its own, with default settings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::scenarios::{PagewrightServer, percentile, serve_page};

/// Requests at 4/s before the idle measurement: the pool, the statistics and Chromium's caches
/// are warm when it starts.
const WARM_UP: Duration = Duration::from_secs(10);

/// How one request went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub latency: Duration,
    /// HTTP status; 0 when no answer came.
    pub status: u16,
}

/// Latency figures of the requests that succeeded, and how many did not.
#[derive(Debug)]
pub(crate) struct Figures {
    pub ok: usize,
    pub failed: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
}

impl Figures {
    pub fn of(samples: &[Sample]) -> Self {
        let mut latencies: Vec<Duration> = samples
            .iter()
            .filter(|sample| sample.status == 200)
            .map(|sample| sample.latency)
            .collect();
        latencies.sort_unstable();
        Self {
            ok: latencies.len(),
            failed: samples.len() - latencies.len(),
            p50_ms: percentile(&latencies, 0.50),
            p90_ms: percentile(&latencies, 0.90),
            p99_ms: percentile(&latencies, 0.99),
        }
    }
}

/// The table both benches print: `who`'s latency idle and loaded per queue order, the ratio of the
/// p99s (the target), and one more column.
fn print_table<'a>(
    who: &str,
    extra: &str,
    rows: impl Iterator<Item = (&'a str, &'a Figures, &'a Figures, String)>,
) {
    println!(
        "| queue order | {who} p50 idle / loaded ms | p90 idle / loaded | p99 idle / loaded | p99 loaded / idle | {who} failed | {extra} | target |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (label, idle, loaded, extra) in rows {
        println!(
            "| {label} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | **{:.2}x** | {} | {extra} | {} |",
            idle.p50_ms,
            loaded.p50_ms,
            idle.p90_ms,
            loaded.p90_ms,
            idle.p99_ms,
            loaded.p99_ms,
            loaded.p99_ms / idle.p99_ms,
            loaded.failed,
            if label == "FIFO" { "baseline" } else { "<= 2x" },
        );
    }
}

/// One screenshot request; its latency and status.
pub(crate) async fn shoot(client: &reqwest::Client, url: &str, body: &Value) -> Sample {
    let began = Instant::now();
    let status = match client.post(url).json(body).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // The whole body, so the latency is the client's.
            match response.bytes().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    };
    Sample {
        latency: began.elapsed(),
        status,
    }
}

/// Sends `body` at `rate` per second for `duration`, each request in a task of its own whatever the
/// earlier ones are doing (an open loop, as independent users arrive).
async fn steady(
    client: &reqwest::Client,
    url: &str,
    body: Value,
    rate: f64,
    duration: Duration,
) -> Vec<Sample> {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let body = Arc::new(body);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        tasks.push(tokio::spawn(
            async move { shoot(&client, &url, &body).await },
        ));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(sample) = task.await {
            samples.push(sample);
        }
    }
    samples
}

/// `clients` loops, each sending `body` as soon as its last request was answered, until the
/// returned stop is dropped or sent; they report how many succeeded.
fn flood(
    client: &reqwest::Client,
    url: &str,
    body: Value,
    clients: usize,
) -> (
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<usize>>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let body = Arc::new(body);
    let tasks = (0..clients)
        .map(|_| {
            let (client, url, body, stopped) = (
                client.clone(),
                url.to_owned(),
                body.clone(),
                stopped.clone(),
            );
            tokio::spawn(async move {
                let mut ok = 0;
                while !*stopped.borrow() {
                    if shoot(&client, &url, &body).await.status == 200 {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    (stop, tasks)
}

async fn stop_flood(
    (stop, tasks): (
        tokio::sync::watch::Sender<bool>,
        Vec<tokio::task::JoinHandle<usize>>,
    ),
) -> usize {
    let _ = stop.send(true);
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap_or(0);
    }
    ok
}

/// Settings both benches use: a long queue deadline for the flood's own jobs is theirs to give.
fn server_args(fifo: bool) -> Vec<&'static str> {
    if fifo {
        vec!["--queue-order", "fifo"]
    } else {
        vec![]
    }
}

pub async fn priority_bench(seconds: u64, urgent_rate: f64, clients: usize) -> anyhow::Result<()> {
    let page = format!("http://{}/", serve_page().await?);
    let duration = Duration::from_secs(seconds);
    let urgent = json!({ "url": page, "priority": { "class": "urgent" } });
    let cold = json!({ "url": page, "priority": { "class": "cold" }, "queue_timeout_ms": 120_000 });
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for (label, fifo) in [("priorities", false), ("FIFO", true)] {
        let server = PagewrightServer::start(&server_args(fifo)).await?;
        let url = format!("{}/v1/screenshot", server.base());
        // Warm the pool and the statistics, then measure the urgent jobs alone.
        steady(&client, &url, urgent.clone(), 4.0, WARM_UP).await;
        let idle = Figures::of(&steady(&client, &url, urgent.clone(), urgent_rate, duration).await);
        let flooding = flood(&client, &url, cold.clone(), clients);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let started = Instant::now();
        let loaded =
            Figures::of(&steady(&client, &url, urgent.clone(), urgent_rate, duration).await);
        let cold_done = stop_flood(flooding).await;
        let cold_rate = cold_done as f64 / (started.elapsed().as_secs_f64() + 5.0);
        eprintln!(
            "priority [{label}]: idle p50 {:.1} p99 {:.1} ms ({} ok, {} failed); loaded p50 {:.1} p99 {:.1} ms ({} ok, {} failed); cold {:.2}/s",
            idle.p50_ms,
            idle.p99_ms,
            idle.ok,
            idle.failed,
            loaded.p50_ms,
            loaded.p99_ms,
            loaded.ok,
            loaded.failed,
            cold_rate
        );
        rows.push((label, idle, loaded, cold_rate));
    }
    print_table(
        "urgent",
        "cold flood renders/s",
        rows.iter().map(|(label, idle, loaded, cold_rate)| {
            (*label, idle, loaded, format!("{cold_rate:.2}"))
        }),
    );
    if let [(_, _, priority, _), (_, _, fifo, _)] = rows.as_slice() {
        println!(
            "\nUrgent p99 under the cold flood, FIFO / priorities: {:.2}x",
            fifo.p99_ms / priority.p99_ms
        );
    }
    Ok(())
}

pub async fn fairness_bench(seconds: u64, small_rate: f64, ratio: f64) -> anyhow::Result<()> {
    let page = format!("http://{}/", serve_page().await?);
    let duration = Duration::from_secs(seconds);
    let small = json!({ "url": page, "tenant": "small" });
    // The big tenant's jobs give up after 10 s in the queue: it sends more than the machine renders.
    let big = json!({ "url": page, "tenant": "big", "queue_timeout_ms": 10_000 });
    let client = reqwest::Client::new();
    let mut rows = Vec::new();
    for (label, fifo) in [("tenants take turns", false), ("FIFO", true)] {
        let server = PagewrightServer::start(&server_args(fifo)).await?;
        let url = format!("{}/v1/screenshot", server.base());
        steady(&client, &url, small.clone(), 4.0, WARM_UP).await;
        let idle = Figures::of(&steady(&client, &url, small.clone(), small_rate, duration).await);
        let big_load = {
            let (client, url, big) = (client.clone(), url.clone(), big.clone());
            tokio::spawn(async move {
                steady(
                    &client,
                    &url,
                    big,
                    small_rate * ratio,
                    duration + Duration::from_secs(5),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let loaded = Figures::of(&steady(&client, &url, small.clone(), small_rate, duration).await);
        let big = Figures::of(&big_load.await?);
        eprintln!(
            "fairness [{label}]: small idle p99 {:.1} ms, loaded p50 {:.1} p99 {:.1} ms ({} ok, {} failed); big {} ok, {} refused or expired",
            idle.p99_ms, loaded.p50_ms, loaded.p99_ms, loaded.ok, loaded.failed, big.ok, big.failed
        );
        rows.push((label, idle, loaded, big));
    }
    print_table(
        "small",
        "big: rendered / refused or expired",
        rows.iter().map(|(label, idle, loaded, big)| {
            (*label, idle, loaded, format!("{} / {}", big.ok, big.failed))
        }),
    );
    Ok(())
}
