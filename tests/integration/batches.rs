//! Batches (issue 16): one request with many URLs, each page an async job whose result has its own
//! address, progress in the batch's document, a webhook with the whole batch at the end, and
//! cancellation of the pages not yet finished.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, error_message, eventually, webhook_receiver};

async fn submit(server: &TestServer, body: Value) -> Value {
    let response = server.post("/v1/batches", body.clone()).await;
    assert_eq!(response.status(), 202, "{body}");
    let location = response.headers()["location"]
        .to_str()
        .expect("a location")
        .to_owned();
    let batch: Value = response.json().await.expect("JSON");
    assert_eq!(
        location,
        format!("/v1/batches/{}", batch["id"].as_str().expect("id"))
    );
    batch
}

#[tokio::test]
async fn a_batch_runs_every_page_reports_progress_and_calls_its_webhook_once_at_the_end() {
    let site = FixtureSite::start().await;
    let (hook, mut posts) = webhook_receiver().await;
    let server = TestServer::start(&[]).await;
    let urls = [
        site.url("/article"),
        site.url("/tour"),
        // Nothing listens there: this page fails, the others do not.
        "http://127.0.0.1:9/".to_owned(),
        site.url("/status?code=404"),
    ];
    let batch = submit(
        &server,
        json!({ "plugin": "content", "urls": urls, "webhook": hook, "timeout_ms": 10_000 }),
    )
    .await;
    assert_eq!(batch["pages"], 4);
    assert_eq!(batch["items"].as_array().map(Vec::len), Some(4));
    let id = batch["id"].as_str().expect("id").to_owned();

    let (headers, body) = tokio::time::timeout(Duration::from_secs(60), posts.recv())
        .await
        .expect("the webhook was called")
        .expect("a post");
    assert_eq!(headers["x-pagewright-job"], id.as_str());
    let posted: Value = serde_json::from_slice(&body).expect("the batch's document");
    assert_eq!(posted["state"], "finished");
    assert_eq!(posted["progress"]["succeeded"], 3, "{posted}");
    assert_eq!(posted["progress"]["failed"], 1);
    assert_eq!(posted["progress"]["fraction"], 1.0);
    let items = posted["items"].as_array().expect("items");
    for (index, item) in items.iter().enumerate() {
        assert_eq!(item["index"], index);
        assert_eq!(item["url"], urls[index].as_str());
    }
    assert_eq!(items[2]["state"], "failed");
    assert_eq!(items[2]["error"]["code"], "navigation_failed");

    // Each page's result has its own address.
    let article = server
        .get(items[0]["result"]["href"].as_str().expect("a result link"))
        .await;
    assert_eq!(article.status(), 200);
    let article: Value = article.json().await.expect("JSON");
    assert!(
        article["html"]
            .as_str()
            .unwrap_or_default()
            .contains("<article"),
        "{article}"
    );

    // A window of the pages, and the delivery recorded.
    let window = eventually(
        "the webhook's delivery recorded",
        Duration::from_secs(10),
        || async {
            let window = server
                .get_json(&format!("/v1/batches/{id}?offset=1&limit=2"))
                .await;
            (window["webhook"]["state"] == "delivered").then_some(window)
        },
    )
    .await;
    let items = window["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["index"], 1);
    assert!(window["finished_at"].is_i64());
    // Exactly one delivery.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(posts.try_recv().is_err(), "the webhook is called once");
    server.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_batch_stops_its_unfinished_pages_and_bad_batches_are_refused() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&["--max-concurrent-renders", "1"]).await;
    let slow: Vec<String> = (0..4).map(|_| site.url("/slow?ms=20000")).collect();
    let batch = submit(&server, json!({ "plugin": "content", "urls": slow })).await;
    let id = batch["id"].as_str().expect("id").to_owned();
    eventually("a page running", Duration::from_secs(20), || async {
        let batch = server.get_json(&format!("/v1/batches/{id}")).await;
        (batch["progress"]["running"] == 1).then_some(())
    })
    .await;
    let response = server
        .client
        .delete(format!("{}/v1/batches/{id}", server.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let finished = eventually("every page cancelled", Duration::from_secs(20), || async {
        let batch = server.get_json(&format!("/v1/batches/{id}")).await;
        (batch["state"] == "finished").then_some(batch)
    })
    .await;
    assert_eq!(finished["progress"]["cancelled"], 4, "{finished}");

    for (body, code, needle) in [
        (
            json!({ "plugin": "content", "urls": [] }),
            "invalid_input",
            "urls",
        ),
        (
            json!({ "plugin": "content", "urls": [site.url("/"), "ftp://example.com/"] }),
            "url_not_allowed",
            "urls[1]",
        ),
        (
            json!({ "plugin": "content", "urls": [site.url("/")], "url": site.url("/") }),
            "invalid_request",
            "url",
        ),
        (
            json!({ "plugin": "content", "urls": [site.url("/"), 7] }),
            "invalid_request",
            "urls[1]",
        ),
        (
            json!({ "urls": [site.url("/")] }),
            "invalid_request",
            "plugin",
        ),
    ] {
        let response = server.post("/v1/batches", body.clone()).await;
        let message = error_message(response, 400, code).await;
        assert!(message.contains(needle), "{body}: {message}");
    }
    let response = server.get("/v1/batches/bnothing").await;
    error_message(response, 404, "job_not_found").await;
    server.shutdown().await;
}
