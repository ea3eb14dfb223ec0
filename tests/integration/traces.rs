//! Traces over OTLP/HTTP, to a small collector the test runs: with the standard `OTEL_*` variables
//! set, a request's span continues the caller's `traceparent`, the job is its child, and the job's
//! steps (the queue, the lease, the navigation, the plugin call) are the job's; an async job's run
//! continues the trace of the request that stored it, and its webhook carries that trace on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::eventually::eventually;
use crate::harness::{FixtureSite, ServerProcess, webhook_receiver};

/// One exported span, as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: Value,
    service: String,
}

/// An OTLP/HTTP collector for JSON exports on loopback: its endpoint, and the spans it received.
async fn collector() -> (String, Arc<Mutex<Vec<Span>>>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let received = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let export: Value = serde_json::from_slice(&body).expect("an OTLP/JSON export");
                let mut spans = received.lock().expect("the span list");
                for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                    let service = resource["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|attribute| attribute["key"] == "service.name")
                        .map(|attribute| attribute["value"]["stringValue"].clone())
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            let text = |key: &str| span[key].as_str().unwrap_or("").to_lowercase();
                            spans.push(Span {
                                trace: text("traceId"),
                                id: text("spanId"),
                                parent: text("parentSpanId"),
                                name: text("name"),
                                attributes: span["attributes"].clone(),
                                service: service.clone(),
                            });
                        }
                    }
                }
                ([(http::header::CONTENT_TYPE, "application/json")], "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (endpoint, spans)
}

/// The spans of `trace` once every one of `names` has arrived (the exporter sends in batches).
async fn spans_of(spans: &Arc<Mutex<Vec<Span>>>, trace: &str, names: &[&str]) -> Vec<Span> {
    eventually(
        "the trace's spans reach the collector",
        Duration::from_secs(30),
        || async {
            let spans: Vec<Span> = spans
                .lock()
                .expect("the span list")
                .iter()
                .filter(|span| span.trace == trace)
                .cloned()
                .collect();
            names
                .iter()
                .all(|name| spans.iter().any(|span| span.name == *name))
                .then_some(spans)
        },
    )
    .await
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("a `{name}` span in {spans:#?}"))
}

/// An integer attribute's value (OTLP/JSON writes 64-bit integers as strings).
fn integer(span: &Span, key: &str) -> Option<u64> {
    let value = span
        .attributes
        .as_array()
        .into_iter()
        .flatten()
        .find(|attribute| attribute["key"] == key)?["value"]["intValue"]
        .clone();
    match value {
        Value::String(text) => text.parse().ok(),
        value => value.as_u64(),
    }
}

#[tokio::test]
async fn jobs_are_traced_from_the_callers_traceparent_to_the_webhook() {
    let (endpoint, spans) = collector().await;
    let site = FixtureSite::start().await;
    let (hook, mut deliveries) = webhook_receiver().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = ServerProcess::start_with_env(
        &["--data-dir", data.to_str().expect("utf-8")],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        &dir.path().join("server.log"),
    )
    .await;

    // A render now: the request continues the caller's trace, the job and its steps are below it.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let response = server
        .client
        .post(format!("{}/v1/screenshot", server.base))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&json!({ "url": site.url("/") }))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let found = spans_of(
        &spans,
        trace,
        &[
            "post /v1/screenshot",
            "job",
            "queue wait",
            "lease",
            "navigate",
            "plugin screenshot",
        ],
    )
    .await;
    let request = named(&found, "post /v1/screenshot");
    assert_eq!(
        request.parent, caller,
        "the caller's span is the request's parent"
    );
    assert_eq!(request.service, "pagewright");
    assert_eq!(integer(request, "http.response.status_code"), Some(200));
    let job = named(&found, "job");
    assert_eq!(job.parent, request.id);
    for step in ["queue wait", "lease", "navigate", "plugin screenshot"] {
        assert_eq!(named(&found, step).parent, job.id, "{step} is the job's");
    }
    let plugin = named(&found, "plugin screenshot");
    assert!(
        integer(plugin, "plugin.fuel").is_some_and(|fuel| fuel > 0),
        "{plugin:?}"
    );

    // An async job: stored by one request, run later in a span that continues its trace; the
    // webhook carries the run's context.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let response = server
        .client
        .post(format!("{}/v1/jobs", server.base))
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .json(&json!({ "url": site.url("/"), "plugin": "content", "webhook": hook }))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 202);
    let (headers, _) = tokio::time::timeout(Duration::from_secs(60), deliveries.recv())
        .await
        .expect("the webhook arrives")
        .expect("a delivery");
    let traceparent = headers["traceparent"].to_str().expect("ascii").to_owned();
    let found = spans_of(&spans, trace, &["post /v1/jobs", "async job", "job"]).await;
    let run = named(&found, "async job");
    assert_eq!(run.parent, named(&found, "post /v1/jobs").id);
    assert_eq!(named(&found, "job").parent, run.id);
    assert_eq!(
        traceparent,
        format!("00-{trace}-{}-01", run.id),
        "the webhook is in the run's trace"
    );
    server.terminate();
}
