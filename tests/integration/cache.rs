//! The response cache and request coalescing (issue 16): stored responses answer identical
//! requests within their TTL, identical requests in flight together share one render, errors are
//! shared and never stored, and requests differing in what they render or for whom never share.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, error_code, error_message};

/// `x-pagewright-cache` of a response, and its status and body.
async fn cached(server: &TestServer, path: &str, body: Value) -> (String, u16, Vec<u8>) {
    let response = server.post(path, body).await;
    let outcome = response
        .headers()
        .get("x-pagewright-cache")
        .map(|value| value.to_str().expect("ASCII").to_owned())
        .unwrap_or_default();
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body").to_vec();
    (outcome, status, body)
}

#[tokio::test]
async fn identical_requests_are_answered_from_the_cache_within_their_ttl() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let request = json!({ "url": site.url("/"), "cache": { "ttl_ms": 60000 } });

    let (outcome, status, first) = cached(&server, "/v1/screenshot", request.clone()).await;
    assert_eq!((outcome.as_str(), status), ("miss", 200));
    let response = server.post("/v1/screenshot", request.clone()).await;
    assert_eq!(response.headers()["x-pagewright-cache"], "hit");
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["age"], "0");
    assert_eq!(response.bytes().await.expect("body").to_vec(), first);
    // Its budget and priority are not what a request renders; its options and tenant are.
    let (outcome, ..) = cached(
        &server,
        "/v1/screenshot",
        json!({ "url": site.url("/"), "cache": { "ttl_ms": 60000 }, "timeout_ms": 9000,
                "priority": { "class": "cold" } }),
    )
    .await;
    assert_eq!(outcome, "hit");
    for differs in [
        json!({ "url": site.url("/"), "cache": { "ttl_ms": 60000 }, "options": { "format": "jpeg" } }),
        json!({ "url": site.url("/"), "cache": { "ttl_ms": 60000 }, "tenant": "another" }),
        json!({ "url": site.url("/"), "cache": { "ttl_ms": 60000 }, "page": { "isolation_key": "k2" } }),
    ] {
        let (outcome, ..) = cached(&server, "/v1/screenshot", differs.clone()).await;
        assert_eq!(outcome, "miss", "{differs}");
    }
    // The other endpoints, and an old response is not taken by a request with a shorter TTL.
    let content = json!({ "url": site.url("/"), "cache": { "ttl_ms": 60000 } });
    assert_eq!(
        cached(&server, "/v1/content", content.clone()).await.0,
        "miss"
    );
    assert_eq!(cached(&server, "/v1/content", content).await.0, "hit");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (outcome, ..) = cached(
        &server,
        "/v1/content",
        json!({ "url": site.url("/"), "cache": { "ttl_ms": 200 } }),
    )
    .await;
    assert_eq!(outcome, "miss");
    // Without `cache`, nothing is looked up.
    let (outcome, status, _) =
        cached(&server, "/v1/content", json!({ "url": site.url("/") })).await;
    assert_eq!((outcome.as_str(), status), ("", 200));

    for (cache, named) in [
        (json!({ "ttl_ms": 0 }), "cache.ttl_ms"),
        (json!({ "ttl_ms": 100_000_000 }), "cache.ttl_ms"),
        (json!({ "ttl": 1000 }), "ttl"),
    ] {
        let response = server
            .post(
                "/v1/content",
                json!({ "url": site.url("/"), "cache": cache }),
            )
            .await;
        let message = error_message(response, 400, "invalid_request").await;
        assert!(message.contains(named), "{message}");
    }
    // Async jobs are stored anyway: no cache there.
    let response = server
        .post(
            "/v1/jobs",
            json!({ "plugin": "content", "url": site.url("/"), "cache": { "ttl_ms": 1000 } }),
        )
        .await;
    let message = error_message(response, 400, "invalid_request").await;
    assert!(message.contains("cache"), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_hundred_identical_concurrent_requests_cost_one_render() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    // A page that takes a second, so all hundred arrive while it renders.
    let request = json!({ "url": site.url("/slow?ms=1000"), "cache": { "ttl_ms": 60000 } });
    let answers = futures::future::join_all(
        (0..100).map(|_| cached(&server, "/v1/content", request.clone())),
    )
    .await;
    assert_eq!(site.slow_requests.load(Ordering::SeqCst), 1, "one render");
    let first = &answers[0].2;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (outcome, status, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(body, first);
        *outcomes.entry(outcome.clone()).or_default() += 1;
    }
    assert_eq!(outcomes.get("miss"), Some(&1), "{outcomes:?}");
    assert_eq!(
        outcomes.get("coalesced").copied().unwrap_or(0) + outcomes.get("hit").copied().unwrap_or(0),
        99,
        "{outcomes:?}"
    );
    server
        .assert_metric("pagewright_cache_lookups_total{reason=\"miss\"} 1")
        .await;

    // An error is shared by the requests that waited for it, and never stored: the next identical
    // request renders again.
    let before = misses(&server).await;
    let failing = json!({ "url": site.url("/status?code=503"), "fail_on": { "status": ["5xx"] },
                          "cache": { "ttl_ms": 60000 } });
    let (one, two) = tokio::join!(
        server.post("/v1/content", failing.clone()),
        server.post("/v1/content", failing.clone())
    );
    assert_eq!(error_code(one, 409).await, "fail_on_status");
    assert_eq!(error_code(two, 409).await, "fail_on_status");
    let between = misses(&server).await;
    assert!(between > before, "the failing request rendered");
    let again = server.post("/v1/content", failing).await;
    assert_eq!(error_code(again, 409).await, "fail_on_status");
    assert_eq!(misses(&server).await, between + 1, "and renders again");
    server.shutdown().await;
}

/// Cached requests answered by a render of their own so far.
async fn misses(server: &TestServer) -> u64 {
    let metrics = server.get("/metrics").await.text().await.expect("metrics");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("pagewright_cache_lookups_total{reason=\"miss\"} "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}
