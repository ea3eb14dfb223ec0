//! Pages and browsers that misbehave: each gets a clear error and the service keeps serving.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{FixtureSite, TestServer, error_code, eventually};

#[tokio::test]
async fn unreachable_and_slow_sites() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;

    // A closed port on loopback.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let response = server
        .post(
            "/v1/screenshot",
            json!({ "url": format!("http://127.0.0.1:{port}/") }),
        )
        .await;
    assert_eq!(error_code(response, 502).await, "navigation_failed");

    let response = server
        .post(
            "/v1/content",
            json!({ "url": site.url("/slow?ms=5000"), "goto": { "timeout_ms": 500 } }),
        )
        .await;
    assert_eq!(error_code(response, 504).await, "navigation_timeout");

    let response = server
        .post(
            "/v1/content",
            json!({ "url": site.url("/slow?ms=5000"), "timeout_ms": 700 }),
        )
        .await;
    assert_eq!(error_code(response, 504).await, "navigation_timeout");

    let response = server
        .post(
            "/v1/content",
            json!({ "url": site.url("/"), "goto": { "wait_for_selector": { "selector": "#never", "timeout_ms": 300 } } }),
        )
        .await;
    assert_eq!(error_code(response, 408).await, "render_timeout");

    let ok = server
        .post("/v1/screenshot", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(ok.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_spinning_page_times_out_and_others_keep_rendering() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;

    let started = Instant::now();
    let spinning = server
        .post(
            "/v1/screenshot",
            json!({ "url": site.url("/spin"), "timeout_ms": 2000 }),
        )
        .await;
    assert_eq!(error_code(spinning, 408).await, "render_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ends at its deadline"
    );

    let inline = server
        .post(
            "/v1/content",
            json!({ "html": "<script>while(true){}</script>", "timeout_ms": 1500 }),
        )
        .await;
    assert_eq!(error_code(inline, 408).await, "render_timeout");

    for _ in 0..3 {
        let ok = server
            .post("/v1/screenshot", json!({ "url": site.url("/") }))
            .await;
        assert_eq!(ok.status(), 200);
    }
    server
        .assert_metric("pagewright_pool_evictions_total{reason=\"failed\"} 2")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn killing_the_browser_mid_job_retries_the_job_and_service_recovers() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let first_pid = server.browser_pid(0).await;

    let client = server.client.clone();
    let url = format!("{}/v1/content", server.base);
    let slow = site.url("/slow?ms=1500");
    let in_flight =
        tokio::spawn(async move { client.post(url).json(&json!({ "url": slow })).send().await });
    // Mid-job: the job's page has asked the site for the slow page, which has not answered yet.
    eventually(
        "the job's page asks for the slow page",
        Duration::from_secs(10),
        || async { (site.slow_requests.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &first_pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    // The job ran once more on the relaunched browser, which loaded the page again.
    let response = in_flight.await.expect("task").expect("answered");
    assert_eq!(response.status(), 200, "retried on the relaunched browser");
    let content: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        content["html"]
            .as_str()
            .is_some_and(|html| html.contains("finally")),
        "{content}"
    );
    assert_eq!(site.slow_requests.load(Ordering::SeqCst), 2);
    server
        .assert_metric("pagewright_jobs_retried_total 1")
        .await;

    server.wait_for_browsers().await;
    assert_ne!(server.browser_pid(0).await, first_pid);
    assert_eq!(server.get("/health").await.status(), 200);
    let ok = server
        .post("/v1/screenshot", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(ok.status(), 200);
    server
        .assert_metric("pagewright_browser_restarts_total 1")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_browser_is_a_clear_startup_error() {
    let args = ["pagewright", "serve", "--chrome", "/nonexistent/chromium"];
    let error = pagewright::cli::serve_settings(args)
        .expect_err("no such browser")
        .to_string();
    assert!(
        error.contains("/nonexistent/chromium") && error.contains("/usr/bin/chromium"),
        "{error}"
    );
}

#[tokio::test]
async fn downloads_and_empty_answers_fail_fast_and_the_next_job_works() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&["--max-pages", "1", "--max-concurrent-renders", "1"]).await;
    for path in ["/download", "/nocontent"] {
        let started = Instant::now();
        let response = server
            .post("/v1/content", json!({ "url": site.url(path) }))
            .await;
        assert_eq!(
            error_code(response, 502).await,
            "navigation_failed",
            "{path}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} fails fast"
        );
        // The only page is usable again (or replaced) for the next job.
        let ok = server
            .post("/v1/content", json!({ "url": site.url("/") }))
            .await;
        assert_eq!(ok.status(), 200, "after {path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn redirects_and_pages_that_start_downloads_still_render() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let response = server
        .post("/v1/content", json!({ "url": site.url("/redirect") }))
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(
        body["url"],
        site.url("/"),
        "the final URL after the redirect"
    );
    assert_eq!(body["status"], 200);

    // The page's own download is not the navigation's. Its navigation stops the page's own loading,
    // so `load` never fires (Puppeteer's waiters time out the same way); network idle does, and the
    // landing page renders.
    let response = server
        .post(
            "/v1/content",
            json!({ "url": site.url("/starts-download"), "goto": { "wait_until": "networkidle" } }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        body["html"].as_str().expect("html").contains("landing"),
        "{body}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn chromium_does_not_outlive_a_killed_pagewright() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("address")
        .port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_pagewright"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pagewright starts");
    let status_url = format!("http://127.0.0.1:{port}/v1/status");
    let browser_pid = eventually("the browser comes up", Duration::from_secs(30), || async {
        let status: serde_json::Value = reqwest::get(&status_url).await.ok()?.json().await.ok()?;
        status["shards"][0]["browser"]["pid"].as_u64()
    })
    .await;
    assert!(std::path::Path::new(&format!("/proc/{browser_pid}")).exists());

    server.kill().expect("SIGKILL pagewright");
    server.wait().expect("reaped");
    eventually(
        "Chromium dies with pagewright",
        Duration::from_secs(5),
        || async {
            // A zombie (state Z) is dead too; its parent is gone, so init reaps it.
            let status =
                std::fs::read_to_string(format!("/proc/{browser_pid}/status")).unwrap_or_default();
            (status.is_empty() || status.contains("State:\tZ")).then_some(())
        },
    )
    .await;
}
