//! `languages`: the same title extractor in Rust, C, JavaScript and Python (`tests/guests/title` and
//! `plugins/examples/`, built from source here), measured three ways:
//! 1. upload and compile: `PluginHost::upload` (checks, compilation at low priority, the verifying
//!    instantiation, the write to the data directory), deleted between rounds so each compiles anew;
//! 2. load after a restart: a plugin host started on a data directory holding the plugin, against one
//!    holding none (both with the built-ins' compiled code), so the difference is the plugin's restore;
//! 3. fuel and wall time per call on the same page, through the HTTP API of an in-process server.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use axum::body::Bytes;
use pagewright::metrics::Metrics;
use pagewright::plugin::{Manifest, PluginHost, PluginSettings};
use pagewright::store::{Store, StoreSettings};

use crate::plugins::median;
use crate::scenarios::InProcessServer;

const LANGUAGES: [&str; 4] = ["rust", "c", "js", "python"];

pub async fn languages_bench(rounds: usize, calls: usize) -> anyhow::Result<()> {
    let mut components = Vec::new();
    for language in LANGUAGES {
        let bytes = tokio::task::spawn_blocking(move || component(language)).await??;
        components.push((language, Bytes::from(bytes)));
    }
    println!(
        "language  size        upload+compile  restore (vs empty)  fuel/call   plugin ms  request ms"
    );
    for (language, bytes) in &components {
        let name = format!("{language}-title");
        let upload = upload_and_compile(&name, bytes, rounds).await?;
        let (with_plugin, empty) = restore(&name, bytes, rounds).await?;
        let calls = per_call(&name, bytes, calls).await?;
        println!(
            "{language:<9} {:>7.1} KB  {:>10.0} ms   {:>7.1} ms ({:.1})  {:>10.0}  {:>9.2}  {:>10.2}",
            bytes.len() as f64 / 1024.0,
            upload,
            with_plugin - empty,
            empty,
            calls.fuel,
            calls.plugin_ms,
            calls.request_ms,
        );
    }
    println!("(medians: {rounds} rounds of upload and restore, {calls} calls per language)");
    Ok(())
}

/// The component of one language: the Rust test guest, or an example built by its build script.
fn component(language: &str) -> anyhow::Result<Vec<u8>> {
    let path = if language == "rust" {
        pagewright_test_guests::path("title")
    } else {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/examples/build.sh");
        let output = std::process::Command::new(&script)
            .arg(language)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "building the {language} example failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(
            String::from_utf8(output.stdout)?
                .lines()
                .last()
                .context("build.sh printed no path")?,
        )
    };
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// A plugin host on `data_dir`, with its registry in a SQLite store there, as `serve` has it:
/// starting one on a directory that holds uploads restores them (compiled code from the directory).
async fn host(data_dir: &Path) -> anyhow::Result<PluginHost> {
    let settings = PluginSettings {
        data_dir: Some(data_dir.to_owned()),
        ..PluginSettings::default()
    };
    let host =
        tokio::task::spawn_blocking(move || PluginHost::new(settings, Metrics::new())).await??;
    let store = Store::open(&StoreSettings::sqlite_in(data_dir)).await?;
    host.share_registry(store).await?;
    Ok(host)
}

/// Median milliseconds of an upload that compiles.
async fn upload_and_compile(name: &str, bytes: &Bytes, rounds: usize) -> anyhow::Result<f64> {
    let data_dir = tempfile::tempdir()?;
    let host = host(data_dir.path()).await?;
    let mut times = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        host.upload(name, Manifest::default(), bytes.clone())
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        // Deleting removes the compiled code too, so the next round compiles again.
        host.delete(name).await?;
    }
    Ok(median(&mut times))
}

/// Median milliseconds to start a plugin host on a data directory holding the plugin, and on one
/// holding no upload.
async fn restore(name: &str, bytes: &Bytes, rounds: usize) -> anyhow::Result<(f64, f64)> {
    let with_plugin = tempfile::tempdir()?;
    let empty = tempfile::tempdir()?;
    let first = host(with_plugin.path()).await?;
    first
        .upload(name, Manifest::default(), bytes.clone())
        .await?;
    first.close().await;
    host(empty.path()).await?.close().await;
    let start = |dir: PathBuf| async move {
        let started = Instant::now();
        let host = host(&dir).await?;
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        host.close().await;
        Ok::<_, anyhow::Error>(elapsed)
    };
    let (mut restored, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        restored.push(start(with_plugin.path().to_owned()).await?);
        baseline.push(start(empty.path().to_owned()).await?);
    }
    Ok((median(&mut restored), median(&mut baseline)))
}

struct PerCall {
    fuel: f64,
    plugin_ms: f64,
    request_ms: f64,
}

/// Medians over `calls` runs of the plugin on one inline page, after a warm-up call.
async fn per_call(name: &str, bytes: &Bytes, calls: usize) -> anyhow::Result<PerCall> {
    let server = InProcessServer::start().await?;
    server
        .services
        .plugins
        .upload(name, Manifest::default(), bytes.clone())
        .await?;
    let base = &server.base;
    let client = reqwest::Client::new();
    let page = serde_json::json!({ "html": "<title>T</title><h1>Hello</h1><p>text</p>" });
    let (mut fuel, mut plugin_ms, mut request_ms) = (Vec::new(), Vec::new(), Vec::new());
    for call in 0..=calls {
        let started = Instant::now();
        let response = client
            .post(format!("{base}/v1/run/{name}"))
            .json(&page)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "{name}: {}",
            response.status()
        );
        let header = |key: &str| -> anyhow::Result<f64> {
            Ok(response.headers()[key].to_str()?.parse::<f64>()?)
        };
        let (call_fuel, call_ms) = (
            header("x-pagewright-plugin-fuel")?,
            header("x-pagewright-plugin-ms")?,
        );
        response.bytes().await?;
        if call > 0 {
            fuel.push(call_fuel);
            plugin_ms.push(call_ms);
            request_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    server.stop().await?;
    Ok(PerCall {
        fuel: median(&mut fuel),
        plugin_ms: median(&mut plugin_ms),
        request_ms: median(&mut request_ms),
    })
}
