//! `flood`: thousands of jobs in flight at once against one server, half of them synchronous
//! (`POST /v1/content`, each holding its connection until its answer) and half async (`POST
//! /v1/jobs` with a webhook to a receiver in this process). Every job must end with its result, or be
//! refused with a 429 by design; any other end is a failure, and an async job whose webhook never
//! comes is lost. The server's memory is sampled while the jobs are in flight: its PSS and RSS
//! (excluding Chromium) and Chromium's PSS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::memory;
use crate::scenarios::{PagewrightServer, percentile, serve_page};

/// How long the bench waits for the last job before it counts the rest as lost.
const DRAIN_LIMIT: Duration = Duration::from_secs(1800);
/// Jobs submitted per burst, and the pause between bursts: 12,800 jobs go out in about 2.6 s.
/// Each job is a new connection. At 10,000 connections a second (500 per 50 ms) the server, whose
/// two cores Chromium keeps busy, fell behind accepting them: the kernel's accept queue (4096,
/// `net.core.somaxconn`) overflowed, and ~900 clients timed out in the TCP handshake's retries.
/// A client that opens this many connections at once has to pace them (or keep them alive); the
/// kernel's overflow counter is printed so that a run shows whether any were dropped.
const BURST: usize = 250;
const BURST_PAUSE: Duration = Duration::from_millis(50);

/// `TcpExt: ListenOverflows` from `/proc/net/netstat`: connections the kernel could not queue
/// for `accept` because a listener's queue was full, machine-wide since boot.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        if let Some((_, value)) = names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "ListenOverflows")
        {
            return value.parse().unwrap_or(0);
        }
    }
    0
}

/// The largest figures sampled while jobs were in flight.
#[derive(Debug, Default, Clone, Copy)]
struct Peak {
    in_flight: u64,
    host_pss: u64,
    host_rss: u64,
    chromium_pss: u64,
}

/// Client-side failures (no HTTP answer), counted by step and kind; the first of each kind is
/// printed with its whole error chain, since a count alone does not say what to fix.
fn note_error(step: &'static str, error: &reqwest::Error) {
    static SEEN: Mutex<Vec<(&'static str, &'static str, usize)>> = Mutex::new(Vec::new());
    let kind = if error.is_connect() {
        "connect"
    } else if error.is_timeout() {
        "timeout"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else if error.is_request() {
        "request"
    } else {
        "other"
    };
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match seen.iter_mut().find(|(s, k, _)| *s == step && *k == kind) {
        Some((_, _, count)) => *count += 1,
        None => {
            let mut chain = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                chain.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("flood: {step} failed ({kind}): {chain}");
            seen.push((step, kind, 1));
        }
    }
}

pub async fn flood_bench(jobs: usize, async_share: f64) -> anyhow::Result<()> {
    let limit = pagewright::raise_open_files_limit()?;
    anyhow::ensure!(
        limit as usize > jobs + 1_000,
        "the open files limit ({limit}) is too low for {jobs} connections"
    );
    let page = format!("http://{}/", serve_page().await?);
    let (hook, mut hooked) = webhook_receiver().await?;
    let long = "1800000";
    let server = PagewrightServer::start(&[
        "--queue-capacity",
        "16384",
        "--queue-timeout-ms",
        long,
        "--max-job-timeout-ms",
        long,
        "--job-result-ttl-ms",
        long,
    ])
    .await?;
    let pid = server.pid();
    let base = server.base().to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;

    // Warm-up: a few renders, so the pool and the statistics are not cold.
    for _ in 0..8 {
        let response = client
            .post(format!("{base}/v1/content"))
            .json(&json!({ "url": page }))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "warm-up: {}", response.status());
    }

    // Sampling while the flood is in flight.
    let peak = Arc::new(Mutex::new(Peak::default()));
    let sampling = {
        let (client, base, peak) = (client.clone(), base.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Ok(response) = client.get(format!("{base}/v1/status")).send().await else {
                    continue;
                };
                let Ok(status) = response.json::<Value>().await else {
                    continue;
                };
                // The scheduler's jobs (sync ones, and async ones claimed from the store) and the
                // async jobs still queued in the store.
                let scheduler = &status["scheduler"];
                let in_flight = scheduler["queued"].as_u64().unwrap_or(0)
                    + scheduler["running"].as_u64().unwrap_or(0)
                    + status["jobs"]["queued"].as_u64().unwrap_or(0);
                let figures = Peak {
                    in_flight,
                    host_pss: memory::pss(pid),
                    host_rss: memory::rss(pid),
                    chromium_pss: memory::chromium_pss_under(pid),
                };
                let mut peak = peak
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if figures.in_flight >= peak.in_flight {
                    // Host memory at the most jobs in flight; Chromium's at its own largest.
                    peak.in_flight = figures.in_flight;
                    peak.host_pss = peak.host_pss.max(figures.host_pss);
                    peak.host_rss = peak.host_rss.max(figures.host_rss);
                }
                peak.chromium_pss = peak.chromium_pss.max(figures.chromium_pss);
            }
        })
    };

    let overflows_before = listen_overflows();
    let started = Instant::now();
    let async_jobs = (jobs as f64 * async_share).round() as usize;
    let submitted: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut sync_tasks = Vec::new();
    let mut async_tasks = Vec::new();
    for index in 0..jobs {
        if index > 0 && index % BURST == 0 {
            tokio::time::sleep(BURST_PAUSE).await;
        }
        let (client, base, page) = (client.clone(), base.clone(), page.clone());
        // Alternate, so both kinds are in the queue together.
        let asynchronous = index * async_jobs / jobs != (index + 1) * async_jobs / jobs;
        if asynchronous {
            let (hook, submitted) = (hook.clone(), submitted.clone());
            async_tasks.push(tokio::spawn(async move {
                let began = Instant::now();
                let response = client
                    .post(format!("{base}/v1/jobs"))
                    .json(&json!({ "plugin": "content", "url": page, "webhook": hook }))
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == 202 => {
                        let job: Value = response.json().await.unwrap_or_default();
                        if let Some(id) = job["id"].as_str() {
                            submitted
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert(id.to_owned(), began);
                        }
                        202
                    }
                    Ok(response) => response.status().as_u16(),
                    Err(error) => {
                        note_error("async submission", &error);
                        0
                    }
                }
            }));
        } else {
            sync_tasks.push(tokio::spawn(async move {
                let began = Instant::now();
                let response = client
                    .post(format!("{base}/v1/content"))
                    .json(&json!({ "url": page }))
                    .send()
                    .await;
                let status = match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.bytes().await {
                            Ok(_) => status,
                            Err(error) => {
                                note_error("sync response body", &error);
                                0
                            }
                        }
                    }
                    Err(error) => {
                        note_error("sync request", &error);
                        0
                    }
                };
                (status, began.elapsed())
            }));
        }
    }
    let submit_seconds = started.elapsed().as_secs_f64();

    // Async submissions, then their webhooks.
    let mut accepted = 0;
    let mut refused = 0;
    let mut other = HashMap::<u16, usize>::new();
    for task in async_tasks {
        match task.await.unwrap_or(0) {
            202 => accepted += 1,
            429 => refused += 1,
            status => *other.entry(status).or_default() += 1,
        }
    }
    let mut latencies = Vec::new();
    let mut async_ok = 0;
    let mut async_failed = 0;
    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    let mut hooked_count = 0;
    while hooked_count < accepted {
        let Ok(Some((id, state, at))) = tokio::time::timeout_at(deadline, hooked.recv()).await
        else {
            break;
        };
        hooked_count += 1;
        let began = submitted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        match (state.as_str(), began) {
            ("succeeded", Some(began)) => {
                async_ok += 1;
                latencies.push(at.duration_since(began));
            }
            _ => async_failed += 1,
        }
    }
    let lost = accepted - hooked_count;

    let mut sync_ok = 0;
    for task in sync_tasks {
        match task.await {
            Ok((200, latency)) => {
                sync_ok += 1;
                latencies.push(latency);
            }
            Ok((429, _)) => refused += 1,
            Ok((status, _)) => *other.entry(status).or_default() += 1,
            Err(_) => *other.entry(0).or_default() += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let overflows = listen_overflows() - overflows_before;
    sampling.abort();
    let peak = *peak
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    latencies.sort_unstable();
    let completed = sync_ok + async_ok;
    let failed: usize = other.values().sum::<usize>() + async_failed;
    eprintln!(
        "flood: {jobs} jobs submitted in {submit_seconds:.1} s; {completed} completed in {seconds:.1} s; {refused} refused (429); other answers {other:?}; {async_failed} async failed; {lost} lost"
    );

    const MB: f64 = 1e6;
    println!("| measure | figure | target |");
    println!("|---|---|---|");
    println!(
        "| jobs | {jobs} ({} sync, {async_jobs} async with a webhook), submitted in {submit_seconds:.1} s | 12,800 in flight |",
        jobs - async_jobs
    );
    println!(
        "| most in flight at once (queued + running, from `/v1/status`) | {} | >= 12,800 |",
        peak.in_flight
    );
    println!(
        "| completed / refused with 429 / failed otherwise / lost | {completed} / {refused} / {failed} / {lost} | all complete or 429; 0 failed, 0 lost |"
    );
    println!(
        "| connections the kernel's accept queue overflowed on (`ListenOverflows`) | {overflows} | |"
    );
    println!(
        "| throughput over the whole flood | {:.2} jobs/s ({seconds:.0} s) | |",
        completed as f64 / seconds
    );
    println!(
        "| latency, submission to result | p50 {:.0} ms, p99 {:.0} ms | |",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
    println!(
        "| host memory at the most jobs in flight (excluding Chromium) | PSS {:.1} MB, RSS {:.1} MB: **{:.2}x** the target | <= 512 MB |",
        peak.host_pss as f64 / MB,
        peak.host_rss as f64 / MB,
        peak.host_rss.max(peak.host_pss) as f64 / (512.0 * MB)
    );
    println!(
        "| host memory per job in flight | {:.1} KB (RSS) | |",
        peak.host_rss as f64 / peak.in_flight.max(1) as f64 / 1e3
    );
    println!(
        "| Chromium PSS, largest sample | {:.1} MB | |",
        peak.chromium_pss as f64 / MB
    );
    anyhow::ensure!(
        failed == 0 && lost == 0,
        "{failed} jobs failed and {lost} were lost"
    );
    Ok(())
}

type Hooked = tokio::sync::mpsc::UnboundedReceiver<(String, String, Instant)>;

/// A webhook receiver on loopback: each post's job id, state and arrival time.
async fn webhook_receiver() -> anyhow::Result<(String, Hooked)> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(job): axum::Json<Value>| {
            let sender = sender.clone();
            async move {
                let id = job["id"].as_str().unwrap_or_default().to_owned();
                let state = job["state"].as_str().unwrap_or_default().to_owned();
                let _ = sender.send((id, state, Instant::now()));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, receiver))
}
