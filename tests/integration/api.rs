//! The render endpoints and their inputs, good and bad.

use serde_json::json;

use crate::harness::{FixtureSite, TestServer, error_code, error_message, eventually, png_size};

#[tokio::test]
async fn screenshots_in_every_format_and_shape() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;

    let response = server
        .post("/v1/screenshot", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["x-pagewright-page-status"], "200");
    let png = response.bytes().await.expect("body");
    assert_eq!(png_size(&png), (1280, 720), "default viewport");

    let response = server
        .post(
            "/v1/screenshot",
            json!({ "url": site.url("/"), "page": { "viewport": { "width": 800, "height": 600, "device_scale_factor": 2 } } }),
        )
        .await;
    assert_eq!(
        png_size(&response.bytes().await.expect("body")),
        (1600, 1200)
    );

    for (format, magic, content_type) in [
        ("jpeg", &b"\xff\xd8\xff"[..], "image/jpeg"),
        ("webp", &b"RIFF"[..], "image/webp"),
    ] {
        let response = server
            .post(
                "/v1/screenshot",
                json!({ "url": site.url("/"), "options": { "format": format, "quality": 70 } }),
            )
            .await;
        assert_eq!(response.status(), 200, "{format}");
        assert_eq!(response.headers()["content-type"], content_type);
        assert!(
            response.bytes().await.expect("body").starts_with(magic),
            "{format}"
        );
    }

    let response = server
        .post(
            "/v1/screenshot",
            json!({ "url": site.url("/tall"), "options": { "full_page": true } }),
        )
        .await;
    let (width, height) = png_size(&response.bytes().await.expect("body"));
    assert_eq!((width, height), (1280, 3000), "full page");
    // 5,000 CSS pixels at scale 4 are 20,000 device pixels, past what Chromium captures: a 413
    // naming both, not a 502.
    let response = server
        .post(
            "/v1/screenshot",
            json!({ "html": "<div style='height:5000px'>tall</div>",
                    "page": { "viewport": { "width": 800, "height": 600, "device_scale_factor": 4 } },
                    "options": { "full_page": true } }),
        )
        .await;
    let message = error_message(response, 413, "output_too_large").await;
    assert!(message.contains("device pixels"), "{message}");

    // The full-page capture must not leave the page resized for the next job.
    let response = server
        .post("/v1/screenshot", json!({ "url": site.url("/tall") }))
        .await;
    assert_eq!(
        png_size(&response.bytes().await.expect("body")),
        (1280, 720)
    );

    let response = server
        .post(
            "/v1/screenshot",
            json!({ "url": site.url("/"), "options": { "clip": { "x": 10, "y": 10, "width": 100, "height": 50 } } }),
        )
        .await;
    assert_eq!(png_size(&response.bytes().await.expect("body")), (100, 50));

    let response = server
        .post(
            "/v1/screenshot",
            json!({ "url": site.url("/"), "options": { "selector": "#box" } }),
        )
        .await;
    assert_eq!(png_size(&response.bytes().await.expect("body")), (120, 80));

    let response = server
        .post(
            "/v1/screenshot",
            json!({ "html": "<body style='background:transparent'></body>", "options": { "omit_background": true } }),
        )
        .await;
    let png = response.bytes().await.expect("body");
    // Colour type 6 is RGBA: the alpha channel is there.
    assert_eq!(png[25], 6, "transparent PNG has alpha");
    server.shutdown().await;
}

#[tokio::test]
async fn pdf_and_content() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;

    let response = server
        .post(
            "/v1/pdf",
            json!({
                "url": site.url("/"),
                "options": {
                    "paper": "a4", "landscape": true, "print_background": true,
                    "margin": { "top": "1cm", "bottom": "10mm", "left": 0.5, "right": "48px" },
                    "footer_template": "<span class='pageNumber'></span>", "page_ranges": "1"
                }
            }),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert!(response.bytes().await.expect("body").starts_with(b"%PDF-"));

    let response = server
        .post("/v1/content", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], 200);
    assert_eq!(body["url"], site.url("/"));
    assert!(
        body["html"]
            .as_str()
            .expect("html")
            .contains("Hello pagewright")
    );

    // The target's own HTTP status comes through; the render itself succeeded.
    let response = server
        .post("/v1/content", json!({ "url": site.url("/missing") }))
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], 404);

    let response = server
        .post("/v1/content", json!({ "html": "<p id='x'>inline</p><script>document.getElementById('x').textContent += ' ran'</script>" }))
        .await;
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        body["html"].as_str().expect("html").contains("inline ran"),
        "{body}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&["--max-body-bytes", "65536"]).await;
    let url = site.url("/");

    let malformed = server
        .client
        .post(format!("{}/v1/screenshot", server.base))
        .body("{not json")
        .send()
        .await
        .expect("answered");
    assert_eq!(error_code(malformed, 400).await, "invalid_request");

    let empty = server
        .client
        .post(format!("{}/v1/pdf", server.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(error_code(empty, 400).await, "invalid_request");

    let unknown = server
        .post(
            "/v1/screenshot",
            json!({ "url": url, "options": { "fullpage": true } }),
        )
        .await;
    assert_eq!(unknown.status(), 400);
    let body: serde_json::Value = unknown.json().await.expect("JSON");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("fullpage"),
        "names the field"
    );

    let unknown_top = server
        .post("/v1/content", json!({ "url": url, "wait": 5 }))
        .await;
    assert_eq!(error_code(unknown_top, 400).await, "invalid_request");

    let both = server
        .post("/v1/content", json!({ "url": url, "html": "<p>" }))
        .await;
    assert_eq!(error_code(both, 400).await, "invalid_request");
    let neither = server.post("/v1/content", json!({ "goto": {} })).await;
    assert_eq!(error_code(neither, 400).await, "invalid_request");

    for refused in [
        "file:///etc/passwd",
        "chrome://version",
        "javascript:alert(1)",
        "data:text/html,x",
        "view-source:http://a/",
    ] {
        let response = server.post("/v1/content", json!({ "url": refused })).await;
        assert_eq!(
            error_code(response, 400).await,
            "url_not_allowed",
            "{refused}"
        );
    }
    let garbage = server
        .post("/v1/content", json!({ "url": "http://" }))
        .await;
    assert_eq!(error_code(garbage, 400).await, "invalid_url");

    let viewport = server
        .post(
            "/v1/screenshot",
            json!({ "url": url, "page": { "viewport": { "width": 0, "height": 10 } } }),
        )
        .await;
    assert_eq!(error_code(viewport, 400).await, "invalid_input");
    let quality = server
        .post(
            "/v1/screenshot",
            json!({ "url": url, "options": { "quality": 50 } }),
        )
        .await;
    assert_eq!(error_code(quality, 400).await, "invalid_input");
    let timeout = server
        .post(
            "/v1/content",
            json!({ "url": url, "timeout_ms": 999_999_999 }),
        )
        .await;
    assert_eq!(error_code(timeout, 400).await, "invalid_request");
    let selector = server
        .post(
            "/v1/screenshot",
            json!({ "url": url, "options": { "selector": "##nope" } }),
        )
        .await;
    assert_eq!(error_code(selector, 400).await, "invalid_input");
    let missing = server
        .post(
            "/v1/screenshot",
            json!({ "url": url, "options": { "selector": "#nowhere" } }),
        )
        .await;
    assert_eq!(error_code(missing, 422).await, "element_not_found");

    // Page settings Chromium would refuse (a line break in a header: it used to cost a page and
    // answer 502) or ignore (an unknown media feature), and a key that is data rather than a name:
    // 400s naming the field, before any browser work, and the server renders on.
    for (page, field) in [
        (
            json!({ "headers": { "x-a": "1\r\nx-b: 2" } }),
            "page.headers.x-a",
        ),
        (
            json!({ "user_agent": "bot\r\nx-evil: 1" }),
            "page.user_agent",
        ),
        (
            json!({ "media_features": { "prefers-colour-scheme": "dark" } }),
            "page.media_features",
        ),
        (
            json!({ "isolation_key": "k".repeat(10_000) }),
            "page.isolation_key",
        ),
        (
            json!({ "viewport": { "width": 16384, "height": 16384, "device_scale_factor": 4 } }),
            "device pixels",
        ),
    ] {
        let response = server
            .post("/v1/screenshot", json!({ "url": url, "page": page }))
            .await;
        let message = error_message(response, 400, "invalid_input").await;
        assert!(message.contains(field), "{page}: {message}");
    }
    let rendered = server
        .post(
            "/v1/content",
            json!({ "url": url, "page": { "headers": { "x-fine": "yes" } } }),
        )
        .await;
    assert_eq!(rendered.status(), 200);

    let big = server
        .post("/v1/content", json!({ "html": "x".repeat(100_000) }))
        .await;
    assert_eq!(error_code(big, 413).await, "payload_too_large");

    let route = server.get("/v2/nothing").await;
    assert_eq!(error_code(route, 404).await, "not_found");
    let method = server.get("/v1/screenshot").await;
    assert_eq!(error_code(method, 405).await, "method_not_allowed");

    // After all of that, the server still renders.
    let ok = server.post("/v1/content", json!({ "url": url })).await;
    assert_eq!(ok.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn private_networks_can_be_denied() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&["--deny-private-networks"]).await;
    let response = server
        .post("/v1/content", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(error_code(response, 400).await, "url_not_allowed");
    // Inline HTML does not fetch a URL, so it still works.
    let response = server
        .post("/v1/content", json!({ "html": "<p>ok</p>" }))
        .await;
    assert_eq!(response.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn health_status_and_metrics() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    assert_eq!(server.get("/health").await.status(), 200);
    let _ = server
        .post("/v1/content", json!({ "url": site.url("/") }))
        .await;

    let status: serde_json::Value = server.get("/v1/status").await.json().await.expect("JSON");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(status["browsers"]["connected"], 1);
    assert_eq!(status["shards"][0]["browser"]["state"], "connected");
    assert!(status["shards"][0]["browser"]["pid"].as_u64().is_some());
    assert_eq!(
        status["topology"]["nodes"][0]["cpus"]
            .as_array()
            .map(Vec::len),
        Some(cores)
    );
    assert!(status["pool"]["live_pages"].as_u64().expect("live_pages") >= 1);
    // Eight render slots per core at most, the adaptive limit between two and eight per core.
    assert_eq!(status["pool"]["max_concurrent_renders"], 8 * cores);
    let scheduler = &status["scheduler"];
    assert_eq!(scheduler["max_slots"], 8 * cores);
    assert_eq!(scheduler["min_slots"], 2 * cores);
    let slots = scheduler["slots"].as_u64().expect("slots") as usize;
    assert!((2 * cores..=8 * cores).contains(&slots), "{scheduler}");
    let plugins: Vec<&str> = status["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|plugin| plugin["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        plugins,
        [
            "content",
            "links",
            "markdown",
            "pdf",
            "scrape",
            "screenshot"
        ]
    );
    assert_eq!(status["plugins"][0]["roles"], json!(["extractor"]));
    assert_eq!(status["plugins"][0]["source"], "builtin");
    assert_eq!(status["plugin_host"]["instances"], 0);
    assert_eq!(status["plugin_host"]["max_instances"], 256);

    let metrics = server.get("/metrics").await.text().await.expect("text");
    for name in [
        "pagewright_http_requests_total{endpoint=\"/v1/content\",status=\"200\"} 1",
        "pagewright_http_request_duration_seconds_bucket",
        "pagewright_pool_pages",
        "pagewright_pool_pages_created_total",
        "pagewright_browser_restarts_total 0",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_jobs() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let client = server.client.clone();
    let url = format!("{}/v1/content", server.base);
    let slow = site.url("/slow?ms=1500");
    let in_flight =
        tokio::spawn(async move { client.post(url).json(&json!({ "url": slow })).send().await });
    eventually(
        "the job's page asks for the slow page",
        std::time::Duration::from_secs(10),
        || async {
            (site.slow_requests.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
        },
    )
    .await;
    let base = server.base.clone();
    server.shutdown().await;
    let response = in_flight
        .await
        .expect("task")
        .expect("in-flight request is answered");
    assert_eq!(response.status(), 200, "the in-flight job finished");
    assert!(
        reqwest::get(format!("{base}/health")).await.is_err(),
        "no longer accepting"
    );
}
