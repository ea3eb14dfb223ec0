//! The plugin registry: upload, list, run, versions, delete, restart from the store, tokens,
//! and every hostile upload answered with its own error while the server keeps serving and keeps
//! nothing of what it refused.

use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{FixtureSite, TestServer, error_message};

const ADMIN: &str = "admin-token-for-tests-0123456789";
const RENDER: &str = "render-token-for-tests-0123456789";

fn guest(name: &str) -> Vec<u8> {
    pagewright_test_guests::bytes(name)
}

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid WAT")
}

async fn server_with_admin(data_dir: &Path, extra: &[&str]) -> TestServer {
    let mut flags = vec![
        "--admin-token",
        ADMIN,
        "--data-dir",
        data_dir.to_str().expect("UTF-8 path"),
    ];
    flags.extend_from_slice(extra);
    TestServer::start(&flags).await
}

async fn upload(
    server: &TestServer,
    name: &str,
    bytes: Vec<u8>,
    manifest: Option<Value>,
) -> reqwest::Response {
    let mut request = server
        .client
        .put(format!("{}/v1/plugins/{name}", server.base))
        .bearer_auth(ADMIN)
        .body(bytes);
    if let Some(manifest) = manifest {
        request = request.header("x-pagewright-manifest", manifest.to_string());
    }
    request.send().await.expect("upload is answered")
}

async fn delete(server: &TestServer, reference: &str) -> reqwest::Response {
    server
        .client
        .delete(format!("{}/v1/plugins/{reference}", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete is answered")
}

/// Runs an uploaded `title` plugin on an inline page; its JSON.
async fn run_title(server: &TestServer, reference: &str) -> Value {
    let response = server
        .post(
            &format!("/v1/run/{reference}"),
            json!({ "html": "<title>T</title><h1>Hello</h1>" }),
        )
        .await;
    assert_eq!(
        response.status(),
        200,
        "{reference}: {:?}",
        response.text().await
    );
    response.json().await.expect("JSON output")
}

/// Files under `dir` (recursively), relative to it: what the data directory holds.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .expect("inside")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    found
}

/// The store in a data directory (the server's own, opened alongside it).
async fn store_of(dir: &Path) -> pagewright::store::Store {
    pagewright::store::Store::open(&pagewright::store::StoreSettings::sqlite_in(dir))
        .await
        .expect("the data directory's store opens")
}

/// The uploaded versions the store keeps, as `name@version`.
async fn stored(dir: &Path) -> Vec<String> {
    let store = store_of(dir).await;
    let versions = store
        .plugin_versions(None)
        .await
        .expect("the registry reads");
    store.close().await;
    versions
        .into_iter()
        .map(|stored| format!("{}@{}", stored.name, stored.version))
        .collect()
}

/// Whether the store keeps the component of `bytes`.
async fn stored_component(dir: &Path, bytes: &[u8]) -> bool {
    let store = store_of(dir).await;
    let sha256 = pagewright::plugin::sha256_hex(bytes);
    let found = store
        .plugin_component(&sha256)
        .await
        .expect("the registry reads");
    store.close().await;
    found.is_some()
}

#[tokio::test]
async fn an_upload_runs_keeps_its_versions_and_survives_a_restart() {
    let site = FixtureSite::start().await;
    let data = tempfile::tempdir().expect("data dir");
    let server = server_with_admin(data.path(), &[]).await;

    let response = upload(&server, "title", guest("title"), None).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/v1/plugins/title@0.1.0");
    let info: Value = response.json().await.expect("JSON");
    assert_eq!(info["version"], "0.1.0");
    assert_eq!(info["source"], "uploaded");
    assert_eq!(info["roles"], json!(["extractor"]));
    assert_eq!(
        info["sha256"],
        pagewright::plugin::sha256_hex(&guest("title"))
    );
    assert!(info["uploaded_at"].as_str().expect("a time").ends_with('Z'));
    assert_eq!(
        run_title(&server, "title").await,
        json!({ "title": "T", "heading": "Hello" })
    );
    // On a served page too, with params.
    let response = server
        .post(
            "/v1/run/title",
            json!({ "url": site.url("/"), "params": { "heading": "title" } }),
        )
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);

    // The same component again is no new version.
    let response = upload(&server, "title", guest("title"), None).await;
    assert_eq!(response.status(), 200);
    // A new version with its own limits; the old one stays reachable by version.
    let manifest = json!({ "version": "2.0.0", "description": "the noop", "roles": ["extractor"],
                           "limits": { "fuel": 1000000, "memory_mib": 32 } });
    let response = upload(&server, "title", guest("noop"), Some(manifest)).await;
    assert_eq!(response.status(), 201);
    let info: Value = response.json().await.expect("JSON");
    assert_eq!(info["limits"]["fuel"], 1_000_000);
    assert_eq!(info["limits"]["memory_mib"], 32);
    let response = server
        .post("/v1/run/title", json!({ "html": "<p>x</p>" }))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.expect("text"),
        "",
        "the latest is the noop"
    );
    assert_eq!(run_title(&server, "title@0.1.0").await["heading"], "Hello");
    let entry: Value = server.get_json("/v1/plugins/title").await;
    assert_eq!(entry["latest"], "2.0.0");
    assert_eq!(entry["versions"].as_array().expect("versions").len(), 2);
    let version: Value = server.get_json("/v1/plugins/title@2.0.0").await;
    assert_eq!(version["description"], "the noop");
    let listing: Value = server.get_json("/v1/plugins").await;
    let names: Vec<&str> = listing["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|entry| entry["name"].as_str().expect("name"))
        .collect();
    assert!(
        names.contains(&"title") && names.contains(&"screenshot"),
        "{names:?}"
    );
    // Versions are immutable.
    let response = upload(
        &server,
        "title",
        guest("trap"),
        Some(json!({ "version": "2.0.0" })),
    )
    .await;
    error_message(response, 409, "version_exists").await;

    // After a restart both versions are back, and nothing was compiled again. What a crash in the
    // middle of an upload leaves (a temporary file, compiled code no plugin uses) is cleared.
    server.shutdown().await;
    std::fs::write(data.path().join("tmp/.tmpCRASH"), b"half a component").expect("write");
    let engine_dir = files(&data.path().join("compiled"))
        .first()
        .and_then(|file| file.split('/').next().map(str::to_owned))
        .expect("compiled code for this engine");
    let orphan = format!("compiled/{engine_dir}/{}.cwasm", "0".repeat(64));
    std::fs::write(data.path().join(&orphan), b"not code").expect("write");
    let server = server_with_admin(data.path(), &[]).await;
    assert_eq!(
        server.get_json("/v1/status").await["plugin_host"]["compilations"],
        0
    );
    let left = files(data.path());
    assert!(
        !left
            .iter()
            .any(|file| file.starts_with("tmp/") || *file == orphan),
        "{left:?}"
    );
    assert_eq!(run_title(&server, "title@0.1.0").await["title"], "T");
    let entry: Value = server.get_json("/v1/plugins/title").await;
    assert_eq!(entry["latest"], "2.0.0");
    assert_eq!(entry["versions"][1]["limits"]["fuel"], 1_000_000);

    // Deleting one version, then the name, removes them and their files.
    let response = delete(&server, "title@0.1.0").await;
    assert_eq!(response.status(), 200);
    let response = server
        .post("/v1/run/title@0.1.0", json!({ "html": "<p>x</p>" }))
        .await;
    error_message(response, 404, "plugin_not_found").await;
    assert_eq!(stored(data.path()).await, ["title@2.0.0"]);
    assert!(
        !stored_component(data.path(), &guest("title")).await,
        "no version uses it"
    );
    let deleted: Value = delete(&server, "title").await.json().await.expect("JSON");
    assert_eq!(
        deleted,
        json!({ "deleted": { "name": "title", "versions": ["2.0.0"] } })
    );
    error_message(
        server.get("/v1/plugins/title").await,
        404,
        "plugin_not_found",
    )
    .await;
    error_message(delete(&server, "title").await, 404, "plugin_not_found").await;
    assert_eq!(stored(data.path()).await, Vec::<String>::new());

    // Built-ins are not the registry's to change.
    let message = error_message(delete(&server, "screenshot").await, 403, "plugin_protected").await;
    assert!(message.contains("built-in"), "{message}");
    let response = upload(&server, "screenshot", guest("noop"), None).await;
    error_message(response, 403, "plugin_protected").await;
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_guard_the_registry_and_the_api() {
    // Without an admin token the registry is read-only.
    let server = TestServer::start(&[]).await;
    let response = upload(&server, "title", guest("title"), None).await;
    let message = error_message(response, 403, "uploads_disabled").await;
    assert!(message.contains("PAGEWRIGHT_ADMIN_TOKEN"), "{message}");
    assert_eq!(server.get("/v1/plugins").await.status(), 200);
    server.shutdown().await;

    let data = tempfile::tempdir().expect("data dir");
    let server = server_with_admin(data.path(), &["--render-token", RENDER]).await;
    // Refused before the body is read; the refused ones send none, so that the answer is never
    // racing a body the server will not read.
    let put = |token: &'static str, body: Vec<u8>| {
        server
            .client
            .put(format!("{}/v1/plugins/title", server.base))
            .bearer_auth(token)
            .body(body)
            .send()
    };
    let response = put(RENDER, Vec::new()).await.expect("answered");
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"pagewright\""
    );
    error_message(response, 401, "unauthorized").await;
    let response = put("wrong-token-wrong-token", Vec::new())
        .await
        .expect("answered");
    error_message(response, 401, "unauthorized").await;
    assert_eq!(stored(data.path()).await, Vec::<String>::new());

    // The render token opens /v1/; /health and /metrics are always open.
    error_message(server.get("/v1/status").await, 401, "unauthorized").await;
    let with = |token: &'static str| {
        server
            .client
            .get(format!("{}/v1/status", server.base))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(with(RENDER).await.expect("answered").status(), 200);
    assert_eq!(with(ADMIN).await.expect("answered").status(), 200);
    assert_eq!(server.get("/health").await.status(), 200);
    assert_eq!(server.get("/metrics").await.status(), 200);
    let response = put(ADMIN, guest("title")).await.expect("answered");
    assert_eq!(response.status(), 201);
    server.shutdown().await;
}

#[tokio::test]
async fn hostile_uploads_are_refused_and_leave_nothing_behind() {
    let site = FixtureSite::start().await;
    let data = tempfile::tempdir().expect("data dir");
    let server = server_with_admin(data.path(), &["--plugin-max-upload-mib", "1"]).await;
    let title = guest("title");

    let refused = async |name: &str, bytes: Vec<u8>, manifest: Option<Value>, status, code| {
        let response = upload(&server, name, bytes, manifest).await;
        error_message(response, status, code).await
    };
    let truncated = title[..title.len() / 2].to_vec();
    let message = refused("t", truncated, None, 422, "invalid_plugin").await;
    assert!(message.contains("does not compile"), "{message}");
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let message = refused("t", random, None, 422, "invalid_plugin").await;
    assert!(message.contains("not a WebAssembly binary"), "{message}");
    let message = refused("t", wat("(module)"), None, 422, "invalid_plugin").await;
    assert!(message.contains("core WebAssembly module"), "{message}");
    for (import, why) in [
        ("wasi:http/outgoing-handler@0.2.6", "no HTTP requests"),
        ("acme:spy/exfiltrate@1.0.0", "does not provide it"),
    ] {
        let component = wat(&format!(r#"(component (import "{import}" (instance)))"#));
        let message = refused("t", component, None, 422, "invalid_plugin").await;
        assert!(
            message.contains(&format!("`{import}`")) && message.contains(why),
            "{message}"
        );
    }
    let wrong_type = wat(r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (instance $x (export "extract" (func $f)))
             (export "pagewright:plugin/extractor@0.1.0" (instance $x)))"#);
    let message = refused("t", wrong_type, None, 422, "invalid_plugin").await;
    assert!(
        message.contains("export `pagewright:plugin/extractor@0.1.0` does not match the WIT"),
        "{message}"
    );
    let message = refused(
        "t",
        guest("noop"),
        Some(json!({ "roles": ["scorer"] })),
        422,
        "invalid_plugin",
    )
    .await;
    assert!(
        message.contains("does not export pagewright:plugin/scorer"),
        "{message}"
    );

    // Limits above the server's, and manifests that do not parse.
    for (manifest, status, code, expected) in [
        (
            json!({ "limits": { "fuel": 1e12 as u64 } }),
            422,
            "invalid_limits",
            "limits.fuel",
        ),
        (
            json!({ "limits": { "memory_mib": 100000 } }),
            422,
            "invalid_limits",
            "limits.memory_mib",
        ),
        (
            json!({ "limits": { "fuels": 1 } }),
            400,
            "invalid_manifest",
            "fuels",
        ),
        (
            json!({ "version": "one" }),
            400,
            "invalid_manifest",
            "version",
        ),
        (
            json!({ "version": "1.0.0+b" }),
            400,
            "invalid_manifest",
            "build metadata",
        ),
        (
            json!({ "roles": ["crawler"] }),
            400,
            "invalid_manifest",
            "not a role",
        ),
    ] {
        let message = refused("t", title.clone(), Some(manifest), status, code).await;
        assert!(message.contains(expected), "{message}");
    }

    // Names that are paths.
    for name in ["..%2Fetc", "a%2Fb", "UPPER", "a@1.0.0"] {
        refused(name, title.clone(), None, 400, "invalid_name").await;
    }
    // A client library would resolve `..` away; a raw request does not.
    let answer = raw_put(&server, "/v1/plugins/..", "content-length: 4\r\n\r\nwasm").await;
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("invalid_name"),
        "{answer}"
    );
    refused("empty", Vec::new(), None, 400, "invalid_request").await;
    let message = refused("%FF", title.clone(), None, 400, "invalid_name").await;
    assert!(message.contains("UTF-8"), "{message}");

    // Over the size cap: a declared 1 GB body is refused before any of it is sent...
    let answer = raw_put(
        &server,
        "/v1/plugins/huge",
        "content-length: 1073741824\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 413") && answer.contains("plugin_too_large"),
        "{answer}"
    );
    // ... and one without a length is cut off at the cap.
    let chunks = futures::stream::iter((0..40).map(|_| {
        let chunk = axum::body::Bytes::from(vec![0u8; 65536]);
        Ok::<_, std::io::Error>(http_body::Frame::data(chunk))
    }));
    let sent = server
        .client
        .put(format!("{}/v1/plugins/huge", server.base))
        .bearer_auth(ADMIN)
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(chunks)))
        .send()
        .await;
    // The server answers and closes while the client is still sending, so the client may see the
    // connection reset instead of the answer; the server's own count says what it answered.
    if let Ok(response) = sent {
        error_message(response, 413, "plugin_too_large").await;
    }
    server
        .assert_metric(
            "pagewright_http_requests_total{endpoint=\"/v1/plugins/{name}\",status=\"413\"} 2",
        )
        .await;

    // Nothing was kept, and the server still renders.
    assert_eq!(stored(data.path()).await, Vec::<String>::new());
    let response = server
        .post("/v1/screenshot", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(response.status(), 200);
    server.shutdown().await;
}

/// A PUT written by hand with the admin token: `rest` is the remaining headers and the body. The
/// start of the answer.
async fn raw_put(server: &TestServer, path: &str, rest: &str) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let request = format!(
        "PUT {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {ADMIN}\r\n\
         connection: close\r\n{rest}"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes")
    .expect("an answer");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn uploads_racing_deletes_leave_one_consistent_state() {
    let data = tempfile::tempdir().expect("data dir");
    let server = server_with_admin(data.path(), &[]).await;
    // The delete starts later each round, so it lands before, during and after the upload's
    // commit.
    for round in 0..8u64 {
        let version = format!("1.0.{round}");
        let late_delete = async {
            tokio::time::sleep(std::time::Duration::from_millis(round * round * 5)).await;
            delete(&server, "racer").await
        };
        let (uploaded, deleted) = tokio::join!(
            upload(
                &server,
                "racer",
                guest("title"),
                Some(json!({ "version": version }))
            ),
            late_delete,
        );
        assert!(
            matches!(uploaded.status().as_u16(), 200 | 201),
            "{}",
            uploaded.status()
        );
        assert!(
            matches!(deleted.status().as_u16(), 200 | 404),
            "{}",
            deleted.status()
        );
        // Whatever the order, the registry and the disk agree.
        let described = server.get_json("/v1/plugins/racer").await;
        let versions = described["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let kept = stored(data.path()).await;
        assert_eq!(versions.len(), kept.len(), "{kept:?}");
        if !versions.is_empty() {
            run_title(&server, "racer").await;
        }
    }
    // Two uploads of one version with different components: one wins, the other is refused.
    let (first, second) = tokio::join!(
        upload(
            &server,
            "racer",
            guest("title"),
            Some(json!({ "version": "9.0.0" }))
        ),
        upload(
            &server,
            "racer",
            guest("noop"),
            Some(json!({ "version": "9.0.0" }))
        ),
    );
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    let before: Value = server.get_json("/v1/plugins/racer").await;
    server.shutdown().await;
    let server = server_with_admin(data.path(), &[]).await;
    let after: Value = server.get_json("/v1/plugins/racer").await;
    assert_eq!(before, after, "a restart restores exactly what was there");
    server.shutdown().await;
}

#[tokio::test]
async fn a_manifests_limits_apply_to_its_calls() {
    let data = tempfile::tempdir().expect("data dir");
    let server = server_with_admin(data.path(), &[]).await;
    let manifest = json!({ "limits": { "fuel": 50_000_000 } });
    assert_eq!(
        upload(&server, "spin", guest("spin"), Some(manifest))
            .await
            .status(),
        201
    );
    let response = server
        .post("/v1/run/spin", json!({ "html": "<p>x</p>" }))
        .await;
    let message = error_message(response, 422, "plugin_out_of_fuel").await;
    assert!(message.contains("50000000"), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_stored_version_that_does_not_load_here_stays_stored() {
    let data = tempfile::tempdir().expect("data dir");
    let server = server_with_admin(data.path(), &[]).await;
    let response = upload(&server, "shadowed", guest("title"), None).await;
    assert_eq!(response.status(), 201);
    server.shutdown().await;
    let stored_before = stored(data.path()).await;

    // A `--plugin` file takes the name: the upload does not load, but it stays in the store, and
    // its version number stays taken.
    let noop = pagewright_test_guests::path("noop");
    let flag = format!("shadowed={}", noop.display());
    let server = server_with_admin(data.path(), &["--plugin", &flag]).await;
    assert_eq!(
        server.get_json("/v1/plugins/shadowed").await["source"],
        "file"
    );
    assert_eq!(stored(data.path()).await, stored_before);
    server.shutdown().await;

    let server = server_with_admin(data.path(), &[]).await;
    assert_eq!(run_title(&server, "shadowed").await["title"], "T");
    server.shutdown().await;
}

#[tokio::test]
async fn uploads_a_data_directory_kept_before_the_store_move_into_it() {
    // The layout servers used before the store: components by hash, a manifest per version.
    let data = tempfile::tempdir().expect("data dir");
    let title = guest("title");
    let sha256 = pagewright::plugin::sha256_hex(&title);
    std::fs::create_dir_all(data.path().join("blobs")).expect("mkdir");
    std::fs::create_dir_all(data.path().join("manifests/title")).expect("mkdir");
    std::fs::write(data.path().join(format!("blobs/{sha256}.wasm")), &title).expect("write");
    let manifest = json!({ "name": "title", "version": "1.2.3", "sha256": sha256,
                           "size": title.len(), "uploaded_at": "2026-01-01T00:00:00Z" });
    std::fs::write(
        data.path().join("manifests/title/1.2.3.json"),
        manifest.to_string(),
    )
    .expect("write");

    let server = server_with_admin(data.path(), &[]).await;
    assert_eq!(run_title(&server, "title@1.2.3").await["title"], "T");
    assert_eq!(stored(data.path()).await, ["title@1.2.3"]);
    let left = files(data.path());
    assert!(
        !left
            .iter()
            .any(|file| file.starts_with("blobs/") || file.starts_with("manifests/")),
        "{left:?}"
    );
    server.shutdown().await;
    // From the store from now on.
    let server = server_with_admin(data.path(), &[]).await;
    assert_eq!(run_title(&server, "title").await["title"], "T");
    server.shutdown().await;
}
