//! The `plugins` benchmark:
//! (a) the cost of one no-op extractor call as the server makes it (from the caller's task onto the
//!     plugin workers: permit, fresh store, instantiate, call, drop, back), p50/p99 over many calls;
//! (b) screenshots through the built-in `screenshot` plugin vs the host's native path
//!     (`--native-builtins`), two servers measured in alternating rounds in one run, medians compared;
//! (c) hundreds of infinite-loop plugin calls at once while one client takes screenshots: its latency
//!     against the same server idle, and how every looping call ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pagewright::plugin::{JobContext, PluginError};

use crate::scenarios::{InProcessServer, PagewrightServer, cores, percentile, serve_page};

pub struct Options {
    pub calls: usize,
    pub seconds: Duration,
    pub rounds: usize,
    pub concurrency: usize,
    pub loops: usize,
}

pub async fn plugin_bench(options: Options) -> anyhow::Result<()> {
    println!("machine: {} cores", cores());
    let invocation = invocation_cost(options.calls).await?;
    let throughput = plugin_vs_native(options.seconds, options.rounds, options.concurrency).await?;
    let isolation = spinning_neighbours(options.loops).await?;

    println!();
    println!("| measure | figure | target |");
    println!("|---|---|---|");
    println!(
        "| (a) no-op extractor call, {} calls | p50 {:.1} us, p99 {:.1} us, mean {:.1} us | p50 <= 50 us |",
        options.calls, invocation.0, invocation.1, invocation.2
    );
    println!(
        "| (b) screenshots/s at c={}, median of {} rounds of {} s | plugin {:.2}/s vs native {:.2}/s: {:.3}x | >= 0.95x |",
        options.concurrency,
        options.rounds,
        options.seconds.as_secs(),
        throughput.0,
        throughput.1,
        throughput.0 / throughput.1
    );
    println!(
        "| (c) screenshot latency with {} spinning plugins | p50 {:.0} ms vs idle {:.0} ms ({:.2}x), p99 {:.0} ms vs idle {:.0} ms ({:.2}x) | within 2x |",
        options.loops,
        isolation.loaded_p50,
        isolation.idle_p50,
        isolation.loaded_p50 / isolation.idle_p50,
        isolation.loaded_p99,
        isolation.idle_p99,
        isolation.loaded_p99 / isolation.idle_p99
    );
    println!(
        "| (c) how the {} looping calls ended | {} out of fuel, {} deadline, {} other; last ended after {:.1} s | all stopped with their error |",
        options.loops,
        isolation.out_of_fuel,
        isolation.timeouts,
        isolation.other,
        isolation.last_ended_s
    );
    Ok(())
}

fn guest(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = pagewright_test_guests::path(name);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// (a): p50, p99 and mean in microseconds.
async fn invocation_cost(calls: usize) -> anyhow::Result<(f64, f64, f64)> {
    let settings = pagewright::plugin::PluginSettings::default();
    let host = pagewright::plugin::PluginHost::new(settings, pagewright::metrics::Metrics::new())?;
    let noop = host.load("noop", &guest("noop")?)?;
    let job = || JobContext::new(1, tokio::time::Instant::now() + Duration::from_secs(10));
    for _ in 0..1_000 {
        host.extract_without_page(&noop, "{}", job()).await.0?;
    }
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let began = Instant::now();
        host.extract_without_page(&noop, "{}", job()).await.0?;
        latencies.push(began.elapsed());
    }
    let total = started.elapsed();
    latencies.sort_unstable();
    let micros = |ms: f64| ms * 1000.0;
    let result = (
        micros(percentile(&latencies, 0.50)),
        micros(percentile(&latencies, 0.99)),
        total.as_secs_f64() * 1e6 / calls as f64,
    );
    eprintln!(
        "(a) no-op call: p50 {:.1} us, p99 {:.1} us, mean {:.1} us over {calls} calls",
        result.0, result.1, result.2
    );
    Ok(result)
}

/// (b): median screenshots/s through the plugin and through the native path.
async fn plugin_vs_native(
    seconds: Duration,
    rounds: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, f64)> {
    let site = serve_page().await?;
    let url = format!("http://{site}/");
    let plugin = PagewrightServer::start(&[]).await?;
    let native = PagewrightServer::start(&["--native-builtins"]).await?;
    let (mut with_plugin, mut with_native) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so drift over the run (thermal, the other server's idle work)
        // does not favour one.
        let order: [(&PagewrightServer, &'static str); 2] = if round % 2 == 0 {
            [(&plugin, "built-in plugin"), (&native, "native")]
        } else {
            [(&native, "native"), (&plugin, "built-in plugin")]
        };
        for (server, label) in order {
            let measured = server.measure_as(label, &url, concurrency, seconds).await;
            eprintln!(
                "(b) round {round}: {label:<16} {:.2} screenshots/s, p50 {:.1} ms, p99 {:.1} ms, {} failures",
                measured.per_second(),
                measured.p50_ms,
                measured.p99_ms,
                measured.failures
            );
            if label == "native" {
                with_native.push(measured.per_second());
            } else {
                with_plugin.push(measured.per_second());
            }
        }
    }
    Ok((median(&mut with_plugin), median(&mut with_native)))
}

struct Isolation {
    idle_p50: f64,
    idle_p99: f64,
    loaded_p50: f64,
    loaded_p99: f64,
    out_of_fuel: usize,
    timeouts: usize,
    other: usize,
    last_ended_s: f64,
}

/// (c): an in-process server (the looping calls go straight to its plugin host) with one client
/// taking screenshots one after another, first idle, then while `loops` plugins spin.
async fn spinning_neighbours(loops: usize) -> anyhow::Result<Isolation> {
    let site = serve_page().await?;
    let url = format!("http://{site}/");
    let server = InProcessServer::start().await?;
    let (host, base) = (server.services.plugins.clone(), server.base.clone());
    let spin = host.load("spin", &guest("spin")?)?;
    let client = reqwest::Client::new();
    let screenshot = || {
        let request = client
            .post(format!("{base}/v1/screenshot"))
            .json(&serde_json::json!({ "url": url }));
        async move {
            let began = Instant::now();
            let response = request.send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "status {}",
                response.status()
            );
            response.bytes().await?;
            Ok::<_, anyhow::Error>(began.elapsed())
        }
    };
    for _ in 0..5 {
        screenshot().await?;
    }
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(screenshot().await?);
    }

    let started = Instant::now();
    let ended = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..loops)
        .map(|id| {
            let host = host.clone();
            let spin = spin.clone();
            let ended = ended.clone();
            tokio::spawn(async move {
                let job = JobContext::new(
                    1_000_000 + id as u64,
                    tokio::time::Instant::now() + Duration::from_secs(120),
                );
                let (result, _) = host.extract_without_page(&spin, "{}", job).await;
                ended
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(started.elapsed());
                result
            })
        })
        .collect();
    // Give the loops a moment to start, then measure while they all still run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut loaded = Vec::new();
    while ended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .is_empty()
        && loaded.len() < 200
    {
        loaded.push(screenshot().await?);
    }
    let (mut out_of_fuel, mut timeouts, mut other) = (0, 0, 0);
    for task in tasks {
        match task.await? {
            Err(PluginError::OutOfFuel { .. }) => out_of_fuel += 1,
            Err(PluginError::Timeout { .. }) => timeouts += 1,
            _ => other += 1,
        }
    }
    let last_ended_s = ended
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .max()
        .map_or(0.0, Duration::as_secs_f64);
    server.stop().await?;

    idle.sort_unstable();
    loaded.sort_unstable();
    let isolation = Isolation {
        idle_p50: percentile(&idle, 0.5),
        idle_p99: percentile(&idle, 0.99),
        loaded_p50: percentile(&loaded, 0.5),
        loaded_p99: percentile(&loaded, 0.99),
        out_of_fuel,
        timeouts,
        other,
        last_ended_s,
    };
    eprintln!(
        "(c) idle p50 {:.1} ms p99 {:.1} ms ({} shots); with {loops} spinning: p50 {:.1} ms p99 {:.1} ms ({} shots)",
        isolation.idle_p50,
        isolation.idle_p99,
        idle.len(),
        isolation.loaded_p50,
        isolation.loaded_p99,
        loaded.len()
    );
    Ok(isolation)
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}
