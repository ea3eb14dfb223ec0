//! What a job waits for after the document loads (issue 16): an element that appears, is visible
//! or goes away, an expression that becomes truthy, a fixed delay; and bad waits refused up front.

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, error_code};

/// The HTML `/v1/content` answered for `body`.
async fn html(server: &TestServer, body: Value) -> String {
    let response = server.post("/v1/content", body).await;
    assert_eq!(response.status(), 200);
    let content: Value = response.json().await.expect("JSON");
    content["html"].as_str().expect("html").to_owned()
}

#[tokio::test]
async fn jobs_wait_for_expressions_delays_and_elements_that_go_away() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    // `/late` adds `#late` 300 ms after it loads: without a wait the output is taken before.
    let late = site.url("/late");
    assert!(
        !html(&server, json!({ "url": late }))
            .await
            .contains("id=\"late\"")
    );
    let waited = html(
        &server,
        json!({ "url": late, "goto": { "wait_for_function": {
            "expression": "document.querySelector('#late') !== null", "polling_ms": 20 } } }),
    )
    .await;
    assert!(waited.contains("id=\"late\""), "{waited}");
    // A promise counts by what it resolves to.
    let promised = html(
        &server,
        json!({ "url": late, "goto": { "wait_for_function": {
            "expression": "new Promise(resolve => setTimeout(() => resolve(!!document.querySelector('#late')), 50))" } } }),
    )
    .await;
    assert!(promised.contains("id=\"late\""), "{promised}");
    let delayed = html(&server, json!({ "url": late, "goto": { "wait_ms": 700 } })).await;
    assert!(delayed.contains("id=\"late\""), "{delayed}");

    // A spinner removed 300 ms after load.
    let spinner = "<p id='spinner'>loading</p><script>addEventListener('load', () => \
                   setTimeout(() => document.getElementById('spinner').remove(), 300))</script>";
    assert!(
        html(&server, json!({ "html": spinner }))
            .await
            .contains("spinner")
    );
    let gone = html(
        &server,
        json!({ "html": spinner, "goto": { "wait_for_selector": { "selector": "#spinner", "hidden": true } } }),
    )
    .await;
    assert!(!gone.contains("id=\"spinner\""), "{gone}");

    // An expression that never holds ends at its timeout; one that throws is the page's error.
    let never = server
        .post(
            "/v1/content",
            json!({ "url": late, "goto": { "wait_for_function": { "expression": "false", "timeout_ms": 300 } } }),
        )
        .await;
    assert_eq!(error_code(never, 408).await, "render_timeout");
    let throws = server
        .post(
            "/v1/content",
            json!({ "url": late, "goto": { "wait_for_function": { "expression": "no_such_name.x" } } }),
        )
        .await;
    assert_eq!(error_code(throws, 422).await, "script_error");

    // Waits that cannot mean anything are 400s naming the field.
    for (goto, field) in [
        (
            json!({ "wait_for_selector": { "selector": "#a", "visible": true, "hidden": true } }),
            "visible",
        ),
        (
            json!({ "wait_for_function": { "expression": " " } }),
            "wait_for_function.expression",
        ),
        (
            json!({ "wait_for_function": { "expression": "1", "polling_ms": 1 } }),
            "polling_ms",
        ),
        (json!({ "wait_ms": 10_000_000 }), "wait_ms"),
    ] {
        let response = server
            .post("/v1/content", json!({ "url": late, "goto": goto }))
            .await;
        let message = crate::harness::error_message(response, 400, "invalid_input").await;
        assert!(message.contains(field), "{message}");
    }
    server.shutdown().await;
}
