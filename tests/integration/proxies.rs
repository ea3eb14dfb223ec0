//! Proxies (issue 16): a job's `page.proxy` and the server's `--proxy` carry the page's requests,
//! HTTP and HTTPS, through another proxy with its credentials, which Chromium and the site never
//! see; a key with another proxy is another context; a proxy the egress rules refuse is a 400; a
//! proxy that refuses the credentials fails the navigation naming it.

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, error_message};
use crate::upstream_proxy::UpstreamProxy;

/// The headers the fixture's `/echo` page received, from `/v1/content`'s HTML.
async fn echoed_headers(server: &TestServer, body: Value) -> Value {
    let response = server.post("/v1/content", body.clone()).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{body}: {text}");
    let content: Value = serde_json::from_str(&text).expect("JSON");
    let html = content["html"].as_str().expect("html");
    let start = html.find("<pre id=\"headers\">").expect("the echo") + "<pre id=\"headers\">".len();
    let end = html[start..].find("</pre>").expect("the echo's end") + start;
    let json = html[start..end]
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    serde_json::from_str(&json).expect("echoed headers")
}

#[tokio::test]
async fn a_jobs_proxy_carries_its_pages_with_credentials_nobody_else_sees() {
    let site = FixtureSite::start().await;
    let https = site.https_front().await;
    let proxy = UpstreamProxy::start([127, 0, 0, 3], Some(("ann", "s3cret"))).await;
    let server = TestServer::start(&[]).await;
    let via = json!({ "server": proxy.url, "username": "ann", "password": "s3cret" });

    // Plain HTTP goes to the proxy in absolute form, with the credentials.
    let headers = echoed_headers(
        &server,
        json!({ "url": site.url("/echo"), "page": { "proxy": via, "isolation_key": "p" } }),
    )
    .await;
    assert!(headers.get("proxy-authorization").is_none(), "{headers}");
    let seen = proxy.requests();
    assert!(
        seen.iter().any(|request| request.method == "GET"
            && request.target == site.url("/echo")
            && request.authorized),
        "{seen:?}"
    );

    // HTTPS goes through the proxy's CONNECT.
    let response = server
        .post(
            "/v1/content",
            json!({ "url": format!("{https}/"), "page": { "proxy": via, "isolation_key": "p", "ignore_https_errors": true } }),
        )
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let tunnel = https.trim_start_matches("https://");
    assert!(
        proxy
            .requests()
            .iter()
            .any(|request| request.method == "CONNECT"
                && request.target == tunnel
                && request.authorized),
        "{:?}",
        proxy.requests()
    );

    // The same key without a proxy is another context: nothing goes through the proxy.
    let before = proxy.requests().len();
    echoed_headers(
        &server,
        json!({ "url": site.url("/echo"), "page": { "isolation_key": "p" } }),
    )
    .await;
    assert_eq!(
        proxy.requests().len(),
        before,
        "no request went through the proxy"
    );

    // A proxy that refuses the credentials fails the navigation, naming the proxy.
    let wrong = json!({ "server": proxy.url, "username": "ann", "password": "guess" });
    let response = server
        .post(
            "/v1/content",
            json!({ "url": site.url("/echo"), "page": { "proxy": wrong } }),
        )
        .await;
    let message = error_message(response, 502, "navigation_failed").await;
    assert!(
        message.contains(&proxy.url) && message.contains("407"),
        "{message}"
    );

    // Bad proxies are refused before any browser work, naming the field.
    for (proxy_option, needle) in [
        (
            json!({ "server": "socks5://127.0.0.3:1080" }),
            "only http://",
        ),
        (json!({ "server": proxy.url, "pasword": "x" }), "pasword"),
    ] {
        let response = server
            .post(
                "/v1/content",
                json!({ "url": site.url("/"), "page": { "proxy": proxy_option } }),
            )
            .await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.expect("JSON");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_servers_proxy_carries_every_page_and_a_jobs_proxy_must_pass_the_egress_rules() {
    let site = FixtureSite::start().await;
    let proxy = UpstreamProxy::start([127, 0, 0, 3], Some(("op", "pw"))).await;
    let with_credentials = proxy.url.replace("http://", "http://op:pw@");
    let server = TestServer::start(&["--proxy", &with_credentials]).await;
    let headers = echoed_headers(&server, json!({ "url": site.url("/echo") })).await;
    assert!(headers.get("proxy-authorization").is_none(), "{headers}");
    assert!(
        proxy
            .requests()
            .iter()
            .any(|request| request.target == site.url("/echo") && request.authorized),
        "{:?}",
        proxy.requests()
    );
    server.shutdown().await;

    // The operator's proxy may be internal; a job's may not when private networks are denied.
    let server = TestServer::start(&["--deny-private-networks"]).await;
    let response = server
        .post(
            "/v1/content",
            json!({ "html": "<p>x</p>", "page": { "proxy": { "server": proxy.url } } }),
        )
        .await;
    let message = error_message(response, 400, "url_not_allowed").await;
    assert!(message.starts_with("page.proxy: "), "{message}");
    server.shutdown().await;
}
