//! Tenants as an authorization boundary (issue 15): with a tokens file, a token decides the tenant,
//! its classes, its in-flight cap and rate; a tenant's isolation keys and jobs are its own; only the
//! admin token sees the keys in `/v1/status`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, error_code};

const ACME: &str = "acme-token-0123456789";
const GLOBEX: &str = "globex-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

async fn post_as(
    server: &TestServer,
    token: Option<&str>,
    path: &str,
    body: Value,
) -> reqwest::Response {
    let mut request = server
        .client
        .post(format!("{}{path}", server.base))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the server answers")
}

async fn get_as(server: &TestServer, token: &str, path: &str) -> reqwest::Response {
    server
        .client
        .get(format!("{}{path}", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers")
}

/// The `cookie` request header the fixture's `/echo` page saw.
async fn cookies_seen(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let html = body["html"].as_str().expect("html").to_owned();
    let start = html
        .find("<pre id=\"headers\">")
        .expect("the echoed headers")
        + 18;
    let end = html[start..].find("</pre>").expect("the end") + start;
    let headers: Value =
        serde_json::from_str(&html[start..end].replace("&amp;", "&")).expect("headers as JSON");
    headers["cookie"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn tokens_decide_the_tenant_and_its_keys_jobs_and_limits_are_its_own() {
    let site = FixtureSite::start().await;
    let folder = tempfile::tempdir().expect("a temporary folder");
    let tokens = folder.path().join("tokens.json");
    std::fs::write(
        &tokens,
        json!([
            { "token": ACME, "tenant": "acme", "classes": ["hot", "cold"], "max_in_flight": 1 },
            { "token": GLOBEX, "tenant": "globex", "rate_per_second": 0.2 },
        ])
        .to_string(),
    )
    .expect("write the tokens file");
    let server = TestServer::start(&[
        "--tokens-file",
        tokens.to_str().expect("UTF-8"),
        "--admin-token",
        ADMIN,
    ])
    .await;
    let echo = site.url("/echo");

    // No token, or one the file does not have: 401.
    let none = post_as(&server, None, "/v1/content", json!({ "url": echo })).await;
    assert_eq!(error_code(none, 401).await, "unauthorized");
    let unknown = post_as(
        &server,
        Some("not-a-token-0123456789"),
        "/v1/content",
        json!({ "url": echo }),
    )
    .await;
    assert_eq!(error_code(unknown, 401).await, "unauthorized");

    // A token speaks for its tenant only, in its classes only.
    let other = post_as(
        &server,
        Some(ACME),
        "/v1/content",
        json!({ "url": echo, "tenant": "globex" }),
    )
    .await;
    assert_eq!(error_code(other, 403).await, "tenant_not_allowed");
    let urgent = post_as(
        &server,
        Some(ACME),
        "/v1/content",
        json!({ "url": echo, "priority": { "class": "urgent" } }),
    )
    .await;
    assert_eq!(error_code(urgent, 403).await, "class_not_allowed");

    // The same isolation key is another context for another tenant.
    let with_cookie = json!({ "url": echo, "page": { "isolation_key": "shared",
        "cookies": [{ "name": "secret", "value": "acme" }] } });
    post_as(&server, Some(ACME), "/v1/content", with_cookie).await;
    let same_key = json!({ "url": echo, "page": { "isolation_key": "shared" } });
    let acme_again =
        cookies_seen(post_as(&server, Some(ACME), "/v1/content", same_key.clone()).await).await;
    assert!(
        acme_again.contains("secret=acme"),
        "the key keeps acme's cookie for acme: {acme_again:?}"
    );
    let globex = cookies_seen(post_as(&server, Some(GLOBEX), "/v1/content", same_key).await).await;
    assert!(
        !globex.contains("secret"),
        "globex saw acme's cookie: {globex:?}"
    );

    // Over its rate (0.2 a second, so a burst of one: the first request above used it).
    let limited = post_as(&server, Some(GLOBEX), "/v1/content", json!({ "url": echo })).await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(error_code(limited, 429).await, "rate_limited");

    // At its in-flight cap (one): a second render while one runs is refused.
    let slow = json!({ "url": site.url("/slow?ms=1500") });
    let (first, second) = tokio::join!(
        post_as(&server, Some(ACME), "/v1/content", slow.clone()),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            post_as(&server, Some(ACME), "/v1/content", slow.clone()).await
        }
    );
    assert_eq!(first.status(), 200);
    assert_eq!(error_code(second, 429).await, "too_many_in_flight");

    // A tenant's async jobs are its own.
    let submitted: Value = post_as(
        &server,
        Some(ACME),
        "/v1/jobs",
        json!({ "plugin": "content", "url": echo }),
    )
    .await
    .json()
    .await
    .expect("JSON");
    let id = submitted["id"].as_str().expect("an id");
    assert_eq!(submitted["tenant"], "acme");
    let theirs = get_as(&server, GLOBEX, &format!("/v1/jobs/{id}")).await;
    assert_eq!(error_code(theirs, 404).await, "job_not_found");
    assert_eq!(
        get_as(&server, ACME, &format!("/v1/jobs/{id}"))
            .await
            .status(),
        200
    );

    // Keys in /v1/status are the admin's to see.
    let status: Value = get_as(&server, ACME, "/v1/status")
        .await
        .json()
        .await
        .expect("JSON");
    assert!(status["prewarm"].is_string(), "{}", status["prewarm"]);
    let status: Value = get_as(&server, ADMIN, "/v1/status")
        .await
        .json()
        .await
        .expect("JSON");
    assert!(status["prewarm"].is_array(), "{}", status["prewarm"]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_bad_tokens_file_is_a_clear_startup_error() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let tokens = folder.path().join("tokens.json");
    std::fs::write(&tokens, r#"[{ "token": "short", "tenant": "acme" }]"#).expect("write");
    let args = [
        "pagewright",
        "serve",
        "--tokens-file",
        tokens.to_str().expect("UTF-8"),
    ];
    let said = pagewright::cli::serve_settings(args)
        .expect_err("a token too short")
        .to_string();
    assert!(
        said.contains("grant 1: a token must have at least 16 characters"),
        "{said}"
    );
}
