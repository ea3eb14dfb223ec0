//! Plugins in C, JavaScript and Python: each example in `plugins/examples/` is built from source by
//! `plugins/examples/build.sh` (with the toolchains `tests/setup.sh` installs), uploaded through the
//! API, and run on a real page, next to the Rust one (`tests/guests/title`) doing the same job.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, built_component, error_message};

const ADMIN: &str = "languages-admin-token-0123456789";

/// Builds one language's example; the component's bytes.
fn build(language: &str) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/build.sh");
    built_component(
        std::process::Command::new(&script).arg(language),
        &format!("the {language} example (tests/setup.sh installs the toolchains)"),
    )
}

/// Uploads `bytes` as `name` and checks the title extractor's behaviour on real pages: the output,
/// its params, its refusal of unknown params, and a page served over HTTP.
async fn upload_and_run(name: &str, bytes: Vec<u8>) {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&["--admin-token", ADMIN]).await;
    let response = server
        .client
        .put(format!("{}/v1/plugins/{name}", server.base))
        .bearer_auth(ADMIN)
        .header(
            "x-pagewright-manifest",
            json!({ "version": "1.0.0", "roles": ["extractor"] }).to_string(),
        )
        .body(bytes)
        .send()
        .await
        .expect("upload is answered");
    assert_eq!(response.status(), 201, "{:?}", response.text().await);

    let path = format!("/v1/run/{name}");
    let run = |body: Value| server.post(&path, body);
    let response = run(json!({ "html": "<title>T</title><h1>Hello</h1>" })).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let fuel = response.headers()["x-pagewright-plugin-fuel"].clone();
    let output: Value = response.json().await.expect("JSON output");
    assert_eq!(
        output,
        json!({ "title": "T", "heading": "Hello" }),
        "{name}"
    );
    assert!(fuel.to_str().expect("ascii").parse::<u64>().expect("fuel") > 0);

    let response = run(json!({
        "html": "<title>T2</title><h2>Sub</h2>", "params": { "heading": "h2" }
    }))
    .await;
    assert_eq!(
        response.json::<Value>().await.expect("JSON output"),
        json!({ "title": "T2", "heading": "Sub" }),
        "{name} with params"
    );
    let response = run(json!({ "html": "<p>no heading</p>" })).await;
    assert_eq!(
        response.json::<Value>().await.expect("JSON output")["heading"],
        Value::Null
    );
    let response = run(json!({ "html": "<h1>x</h1>", "params": { "nope": 1 } })).await;
    let message = error_message(response, 400, "invalid_input").await;
    assert!(
        message.contains("unknown field `nope`"),
        "{name}: {message}"
    );

    let response = run(json!({ "url": site.url("/") })).await;
    assert_eq!(
        response.json::<Value>().await.expect("JSON output"),
        json!({ "title": "Fixture", "heading": "Hello pagewright" }),
        "{name} on a served page"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_c_plugin_runs_on_a_page() {
    let bytes = tokio::task::spawn_blocking(|| build("c"))
        .await
        .expect("build");
    upload_and_run("c-title", bytes).await;
}

#[tokio::test]
async fn a_javascript_plugin_runs_on_a_page() {
    let bytes = tokio::task::spawn_blocking(|| build("js"))
        .await
        .expect("build");
    upload_and_run("js-title", bytes).await;
}

#[tokio::test]
async fn a_python_plugin_runs_on_a_page() {
    let bytes = tokio::task::spawn_blocking(|| build("python"))
        .await
        .expect("build");
    upload_and_run("python-title", bytes).await;
}

#[tokio::test]
async fn the_rust_plugin_does_the_same() {
    upload_and_run("rust-title", pagewright_test_guests::bytes("title")).await;
}
