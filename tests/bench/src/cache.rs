//! `cache`: the response cache and request coalescing of the render endpoints, against the
//! issue's targets: a cached screenshot answered in under 2 ms at the median, and 100 identical
//! requests in flight together costing one render. The same screenshot uncached, from the same
//! server in the same run, is the baseline.

use std::time::{Duration, Instant};

use crate::scenarios::{PagewrightServer, percentile, serve_page};

pub async fn cache_bench(requests: usize, concurrent: usize) -> anyhow::Result<()> {
    let site = serve_page().await?;
    let server = PagewrightServer::start(&[]).await?;
    let client = reqwest::Client::new();
    let endpoint = format!("{}/v1/screenshot", server.base());
    let page = format!("http://{site}/");

    // Uncached: every request renders.
    let uncached = serde_json::json!({ "url": page });
    let mut rendered = latencies(&client, &endpoint, &uncached, requests / 10, None).await?;
    // Cached: one render, then answers from memory.
    let cached_body = serde_json::json!({ "url": page, "cache": { "ttl_ms": 600_000 } });
    let mut cached = latencies(&client, &endpoint, &cached_body, requests, Some("hit")).await?;
    rendered.sort_unstable();
    cached.sort_unstable();
    let bytes = client
        .post(&endpoint)
        .json(&cached_body)
        .send()
        .await?
        .bytes()
        .await?
        .len();

    // Coalescing: `concurrent` identical requests for a page no one asked for yet, all at once.
    let fresh = serde_json::json!({ "url": format!("http://{site}/?fresh"),
                                    "cache": { "ttl_ms": 600_000 } });
    let misses_before = misses(&client, server.base()).await?;
    let began = Instant::now();
    let answers = futures::future::join_all((0..concurrent).map(|_| {
        let request = client.post(&endpoint).json(&fresh);
        async move {
            let response = request.send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "status {}",
                response.status()
            );
            Ok(response
                .headers()
                .get("x-pagewright-cache")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned())
        }
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<String>>>()?;
    let all_answered = began.elapsed();
    let renders = misses(&client, server.base()).await? - misses_before;
    let shared = answers.iter().filter(|outcome| *outcome != "miss").count();
    server.stop().await;

    println!("| measure | figure | target |");
    println!("|---|---|---|");
    println!(
        "| viewport PNG ({bytes} bytes), rendered each time: p50 / p99 over {} | {:.2} / {:.2} ms | |",
        rendered.len(),
        percentile(&rendered, 0.5),
        percentile(&rendered, 0.99)
    );
    println!(
        "| the same PNG from the cache: p50 / p99 over {} | {:.3} / {:.3} ms | p50 < 2 ms |",
        cached.len(),
        percentile(&cached, 0.5),
        percentile(&cached, 0.99)
    );
    println!(
        "| rendered p50 / cached p50 | {:.0}x | |",
        percentile(&rendered, 0.5) / percentile(&cached, 0.5)
    );
    println!(
        "| {concurrent} identical concurrent requests: renders | {renders} ({shared} shared the render or its stored answer; all answered in {:.0} ms) | 1 |",
        all_answered.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Latencies of `count` sequential requests of `body`, each checked to be answered with
/// `x-pagewright-cache: expected` (after a first, warming one).
async fn latencies(
    client: &reqwest::Client,
    endpoint: &str,
    body: &serde_json::Value,
    count: usize,
    expected: Option<&str>,
) -> anyhow::Result<Vec<Duration>> {
    client
        .post(endpoint)
        .json(body)
        .send()
        .await?
        .error_for_status()?;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let began = Instant::now();
        let response = client
            .post(endpoint)
            .json(body)
            .send()
            .await?
            .error_for_status()?;
        let outcome = response
            .headers()
            .get("x-pagewright-cache")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        response.bytes().await?;
        latencies.push(began.elapsed());
        anyhow::ensure!(
            outcome.as_deref() == expected,
            "expected x-pagewright-cache {expected:?}, got {outcome:?}"
        );
    }
    Ok(latencies)
}

/// The server's count of cached requests that rendered.
async fn misses(client: &reqwest::Client, base: &str) -> anyhow::Result<u64> {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(metrics
        .lines()
        .find_map(|line| line.strip_prefix("pagewright_cache_lookups_total{reason=\"miss\"} "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0))
}
