//! The egress policy on everything a page does (issue 15): with `--deny-private-networks`, no path a
//! page has (redirects, subresources, frames, fetch, XHR, beacons, WebSockets, workers, popups,
//! inline HTML) reaches a loopback-only service; without it, the same page does (so the page
//! really tries each path). The "public" site is another loopback address the rules allow.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{FixtureSite, TestServer, error_message};

/// A service only this machine should reach, on 127.0.0.1: it records the first line of every
/// connection it gets (`GET /fetch HTTP/1.1`) and answers 200.
struct LoopbackService {
    origin: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl LoopbackService {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 4096];
                    let read = stream.read(&mut buffer).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buffer[..read]);
                    let line = request.lines().next().unwrap_or("(nothing)").to_owned();
                    record.lock().expect("lock").push(line);
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecret",
                        )
                        .await;
                });
            }
        });
        Self { origin, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }

    fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .seen()
            .iter()
            .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// Renders the page that reaches for `service` by every path, by URL and as inline HTML, and waits
/// for its requests to settle.
async fn reach(server: &TestServer, site: &FixtureSite, service: &LoopbackService) {
    let page = site.url(&format!("/reaches-for?origin={}", service.origin));
    let response = server
        .post(
            "/v1/content",
            json!({ "url": page, "goto": { "wait_until": "networkidle" } }),
        )
        .await;
    assert_eq!(response.status(), 200, "the page itself renders");
    let html = crate::site::reaching_for(&service.origin);
    let response = server
        .post(
            "/v1/content",
            json!({ "html": html, "goto": { "wait_until": "networkidle" } }),
        )
        .await;
    assert_eq!(response.status(), 200, "the inline page renders");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn no_path_a_page_has_reaches_a_loopback_service_when_private_networks_are_denied() {
    let site = FixtureSite::start_on([127, 0, 0, 2]).await;

    // Without the switch, every path gets through: the page really tries each.
    let service = LoopbackService::start().await;
    let open = TestServer::start(&[]).await;
    reach(&open, &site, &service).await;
    let reached = service.paths();
    for path in [
        "/image",
        "/style",
        "/frame",
        "/fetch",
        "/xhr",
        "/beacon",
        "/websocket",
        "/worker",
    ] {
        assert!(
            reached.iter().any(|seen| seen == path),
            "without the switch, {path} got through (it reached {reached:?})"
        );
    }
    open.shutdown().await;

    let service = LoopbackService::start().await;
    let closed = TestServer::start(&[
        "--deny-private-networks",
        "--egress-allow-network",
        "127.0.0.2/32",
    ])
    .await;
    reach(&closed, &site, &service).await;
    // A redirect from the allowed site into the loopback service.
    let redirect = closed
        .post(
            "/v1/content",
            json!({ "url": site.url(&format!("/redirect-to?origin={}", service.origin)) }),
        )
        .await;
    let message = error_message(redirect, 502, "navigation_failed").await;
    assert!(message.contains("egress policy refused"), "{message}");
    // The job's own URL is refused before any browser work.
    let direct = closed
        .post(
            "/v1/content",
            json!({ "url": format!("{}/direct", service.origin) }),
        )
        .await;
    error_message(direct, 400, "url_not_allowed").await;
    assert_eq!(
        service.seen(),
        Vec::<String>::new(),
        "the loopback service was reached with private networks denied"
    );
    let metrics = closed.get("/metrics").await.text().await.expect("metrics");
    let refused: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("pagewright_egress_refused_total "))
        .and_then(|count| count.trim().parse().ok())
        .expect("the refusal count");
    assert!(refused >= 8, "the proxy counted its refusals ({refused})");
    closed.shutdown().await;
}
