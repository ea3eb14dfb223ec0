//! Async jobs: submission (202), state and result, webhooks to a loopback receiver, cancellation of
//! queued and running jobs, retention, and refusals.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    FixtureSite, TestServer, error_message, eventually, standard_webhook_signature,
    webhook_receiver,
};

/// `POST /v1/jobs` with `body`; asserts a 202 with a `Location` and returns the job's document.
async fn submit(server: &TestServer, body: Value) -> Value {
    let response = server.post("/v1/jobs", body).await;
    assert_eq!(response.status(), 202, "submitted");
    let location = response.headers()["location"]
        .to_str()
        .expect("a text location")
        .to_owned();
    let job: Value = response.json().await.expect("a job document");
    assert_eq!(
        location,
        format!("/v1/jobs/{}", job["id"].as_str().expect("an id"))
    );
    job
}

/// Polls the job until `done` holds for its document.
async fn wait_for(
    server: &TestServer,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(
        &format!("job {id}: {what}"),
        Duration::from_secs(20),
        || async {
            let job = server.get_json(&format!("/v1/jobs/{id}")).await;
            done(&job).then_some(job)
        },
    )
    .await
}

async fn finished(server: &TestServer, id: &str) -> Value {
    wait_for(server, id, "finished", |job| {
        matches!(
            job["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
    })
    .await
}

fn id(job: &Value) -> String {
    job["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn an_async_job_runs_through_the_queue_and_keeps_its_result() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&["--job-result-ttl-ms", "1500"]).await;
    let job = submit(
        &server,
        json!({ "plugin": "content", "url": site.url("/"), "tenant": "acme",
                "priority": { "class": "cold", "number": 5 } }),
    )
    .await;
    assert!(
        matches!(job["state"].as_str(), Some("queued" | "running")),
        "{job}"
    );
    assert_eq!(job["plugin"], "content");
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["priority"], json!({ "class": "cold", "number": 5 }));
    let id = id(&job);
    let done = finished(&server, &id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(done["run_ms"].as_f64().expect("run time") > 0.0);
    assert!(done["started_at"].is_string() && done["finished_at"].is_string());
    let result = &done["result"];
    assert_eq!(result["content_type"], "application/json");
    assert_eq!(result["page"]["status"], 200);
    assert!(
        result["json"]["html"]
            .as_str()
            .expect("the content plugin's html, inline")
            .contains("Hello pagewright")
    );
    // The output itself, with the headers the synchronous endpoint sends.
    let output = server.get(&format!("/v1/jobs/{id}/result")).await;
    assert_eq!(output.status(), 200);
    assert_eq!(output.headers()["x-pagewright-page-status"], "200");
    assert!(output.headers().contains_key("x-pagewright-plugin-fuel"));
    let body: Value = output.json().await.expect("JSON");
    assert!(
        body["html"]
            .as_str()
            .expect("html")
            .contains("Hello pagewright")
    );

    // A screenshot job's bytes are served from `result`, not inlined.
    let shot = submit(
        &server,
        json!({ "plugin": "screenshot", "html": "<h1>x</h1>" }),
    )
    .await;
    let shot = finished(&server, &id_of(&shot)).await;
    assert_eq!(shot["result"]["content_type"], "image/png");
    assert!(shot["result"].get("json").is_none() && shot["result"].get("text").is_none());
    let png = server
        .get(&format!("/v1/jobs/{}/result", id_of(&shot)))
        .await
        .bytes()
        .await
        .expect("bytes");
    assert!(png.starts_with(b"\x89PNG"));

    // Finished jobs are forgotten after --job-result-ttl-ms.
    let gone = wait_for_gone(&server, &id).await;
    error_message(gone, 404, "job_not_found").await;
    server.shutdown().await;
}

fn id_of(job: &Value) -> String {
    id(job)
}

async fn wait_for_gone(server: &TestServer, id: &str) -> reqwest::Response {
    eventually(
        &format!("job {id} is forgotten after its time"),
        Duration::from_secs(10),
        || async {
            let response = server.get(&format!("/v1/jobs/{id}")).await;
            (response.status() == 404).then_some(response)
        },
    )
    .await
}

#[tokio::test]
async fn a_failed_job_keeps_the_error_the_endpoint_would_have_answered() {
    let server = TestServer::start(&[]).await;
    let job = submit(
        &server,
        json!({ "plugin": "content", "html": "<p>x</p>",
                "goto": { "wait_for_selector": { "selector": "#never", "timeout_ms": 100 } } }),
    )
    .await;
    let done = finished(&server, &id(&job)).await;
    assert_eq!(done["state"], "failed");
    assert_eq!(done["error"]["status"], 408);
    assert_eq!(done["error"]["code"], "render_timeout");
    let replayed = server.get(&format!("/v1/jobs/{}/result", id(&job))).await;
    error_message(replayed, 408, "render_timeout").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_webhook_gets_the_finished_job_signed() {
    const SECRET: &str = "webhook-secret-for-tests";
    let (hook, mut posts) = webhook_receiver().await;
    let server = TestServer::start(&["--webhook-secret", SECRET]).await;
    let job = submit(
        &server,
        json!({ "plugin": "content", "html": "<h1>hooked</h1>", "webhook": hook }),
    )
    .await;
    assert_eq!(job["webhook"]["state"], "pending");
    let (headers, body) = tokio::time::timeout(Duration::from_secs(30), posts.recv())
        .await
        .expect("the webhook was called")
        .expect("a post");
    let posted: Value = serde_json::from_slice(&body).expect("the job's document");
    assert_eq!(posted["id"], job["id"]);
    assert_eq!(posted["state"], "succeeded");
    assert!(
        posted["result"]["json"]["html"]
            .as_str()
            .expect("inline html")
            .contains("hooked")
    );
    assert_eq!(headers["x-pagewright-job"], job["id"].as_str().expect("id"));
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(&body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(
        headers["x-pagewright-signature"],
        format!("sha256={expected}").as_str()
    );
    // Standard Webhooks: the job's id, the attempt's time, and the signature over both and the body.
    assert_eq!(headers["webhook-id"], job["id"].as_str().expect("id"));
    let sent_at: i64 = headers["webhook-timestamp"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("Unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    assert!((now - sent_at).abs() < 60, "{sent_at} vs {now}");
    assert_eq!(
        headers["webhook-signature"],
        standard_webhook_signature(SECRET.as_bytes(), &headers, &body).as_str()
    );
    let delivered = wait_for(&server, &id(&job), "webhook delivered", |job| {
        job["webhook"]["state"] == "delivered"
    })
    .await;
    assert_eq!(delivered["webhook"]["attempts"], 1);
    server
        .assert_metric("pagewright_webhook_deliveries_total{reason=\"delivered\"} 1")
        .await;
    server.shutdown().await;
}

#[tokio::test]
async fn cancelling_takes_a_queued_job_out_and_stops_a_running_plugin() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(
        &["spin"],
        &[
            "--max-concurrent-renders",
            "1",
            "--max-pages",
            "1",
            "--plugin-fuel",
            "1000000000000000",
        ],
    )
    .await;
    // The spinning plugin holds the only run slot; the second job waits behind it.
    let running = submit(&server, json!({ "plugin": "spin", "url": site.url("/") })).await;
    let running = id(&running);
    wait_for(&server, &running, "running", |job| {
        job["state"] == "running"
    })
    .await;
    let queued = submit(
        &server,
        json!({ "plugin": "content", "url": site.url("/") }),
    )
    .await;
    let queued = id(&queued);
    // It waits in the store: a host claims a job only into a free run slot.
    let status = server.get_json("/v1/status").await;
    assert_eq!(status["jobs"]["queued"], 1, "{status}");
    assert_eq!(status["scheduler"]["queued"], 0, "{status}");

    let response = server
        .client
        .delete(format!("{}/v1/jobs/{queued}", server.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.expect("JSON");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(
        server.get_json("/v1/status").await["jobs"]["queued"],
        0,
        "the cancelled job left the queue"
    );
    let result = server.get(&format!("/v1/jobs/{queued}/result")).await;
    error_message(result, 410, "job_cancelled").await;

    // Cancelling the running job stops its plugin, frees its slot and gives back its page.
    let result = server.get(&format!("/v1/jobs/{running}/result")).await;
    error_message(result, 409, "job_not_finished").await;
    let response = server
        .client
        .delete(format!("{}/v1/jobs/{running}", server.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let status = eventually(
        "the cancelled job lets go of everything",
        Duration::from_secs(10),
        || async {
            let status = server.get_json("/v1/status").await;
            (status["scheduler"]["running"] == 0
                && status["plugin_host"]["instances"] == 0
                && status["plugin_host"]["cpu"]["busy"] == 0
                && status["pool"]["leased_pages"] == 0)
                .then_some(status)
        },
    )
    .await;
    assert_eq!(status["scheduler"]["running"], 0, "{status}");
    assert_eq!(status["plugin_host"]["instances"], 0, "{status}");
    assert_eq!(status["pool"]["leased_pages"], 0, "{status}");
    // The next job gets the slot and a working page.
    let after = server
        .post("/v1/content", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(after.status(), 200);
    assert_eq!(
        server.get_json(&format!("/v1/jobs/{running}")).await["state"],
        "cancelled"
    );
    // Deleting a finished job forgets it.
    let forgotten = server
        .client
        .delete(format!("{}/v1/jobs/{running}", server.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(forgotten.status(), 200);
    error_message(
        server.get(&format!("/v1/jobs/{running}")).await,
        404,
        "job_not_found",
    )
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_job_requests_are_refused_and_a_full_queue_answers_429() {
    let server = TestServer::start(&[
        "--max-concurrent-renders",
        "1",
        "--max-pages",
        "1",
        "--job-queue-capacity",
        "1",
    ])
    .await;
    let refused = |body: Value| server.post("/v1/jobs", body);
    error_message(
        refused(json!({ "html": "x" })).await,
        400,
        "invalid_request",
    )
    .await;
    error_message(
        refused(json!({ "plugin": 7, "html": "x" })).await,
        400,
        "invalid_request",
    )
    .await;
    let message = error_message(
        refused(json!({ "plugin": "content", "html": "x", "colour": "red" })).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(message.contains("colour"), "{message}");
    error_message(
        refused(json!({ "plugin": "content", "html": "x", "webhook": "file:///etc/passwd" })).await,
        400,
        "invalid_webhook",
    )
    .await;
    error_message(
        refused(json!({ "plugin": "content", "html": "x", "webhook": 3 })).await,
        400,
        "invalid_webhook",
    )
    .await;
    error_message(
        refused(json!({ "plugin": "no-such-plugin", "html": "x" })).await,
        404,
        "plugin_not_found",
    )
    .await;
    error_message(
        refused(json!({ "plugin": "screenshot", "html": "x", "options": { "quality": 101 } }))
            .await,
        400,
        "invalid_input",
    )
    .await;
    error_message(
        server
            .get("/v1/jobs/0123456789abcdef0123456789abcdef")
            .await,
        404,
        "job_not_found",
    )
    .await;

    // One slot and one place in the store's queue: the third job is refused before any 202.
    let slow = json!({ "plugin": "content", "html": "<p>slow</p>", "timeout_ms": 1500,
                       "goto": { "wait_for_selector": { "selector": "#never" } } });
    let first = submit(&server, slow.clone()).await;
    wait_for(&server, &id(&first), "running", |job| {
        job["state"] == "running"
    })
    .await;
    let second = submit(&server, slow.clone()).await;
    let third = refused(slow).await;
    assert_eq!(third.headers()["retry-after"], "1");
    error_message(third, 429, "queue_full").await;
    for job in [first, second] {
        assert_eq!(finished(&server, &id(&job)).await["state"], "failed");
    }
    server.shutdown().await;
}
