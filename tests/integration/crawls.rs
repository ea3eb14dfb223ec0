//! Crawls (issue 16): from a start URL, links followed to a depth and a page limit, with include and
//! exclude patterns, the start origin only by default, the sitemap as a source, robots.txt obeyed
//! by default; every page rendered with the request's output, each a job whose result is ready as
//! it finishes, and the crawl's webhook at the end.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, error_message, eventually, webhook_receiver};

async fn crawl(server: &TestServer, body: Value) -> String {
    let response = server.post("/v1/crawls", body.clone()).await;
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 202, "{body}: {text}");
    let crawl: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(crawl["kind"], "crawl");
    crawl["id"].as_str().expect("id").to_owned()
}

async fn finished(server: &TestServer, id: &str) -> Value {
    eventually("the crawl finished", Duration::from_secs(90), || async {
        let crawl = server.get_json(&format!("/v1/crawls/{id}")).await;
        (crawl["state"] == "finished").then_some(crawl)
    })
    .await
}

fn paths(crawl: &Value) -> BTreeSet<String> {
    crawl["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            let url = item["url"].as_str().expect("a url");
            url[url.find("/crawl/").expect("a crawl page")..].to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_crawl_follows_its_rules_and_renders_every_page_with_its_output() {
    let site = FixtureSite::start().await;
    let (hook, mut posts) = webhook_receiver().await;
    let server = TestServer::start(&[]).await;
    let id = crawl(
        &server,
        json!({ "plugin": "markdown", "url": site.url("/crawl/start"), "webhook": hook,
                "crawl": { "max_depth": 1, "exclude": ["\\.pdf$"] } }),
    )
    .await;
    let (_, body) = tokio::time::timeout(Duration::from_secs(90), posts.recv())
        .await
        .expect("the webhook was called")
        .expect("a post");
    let done: Value = serde_json::from_slice(&body).expect("the crawl's document");
    assert_eq!(done["id"], id.as_str());
    // Not `private` (robots.txt), `doc.pdf` (excluded), the other origin, the fragment (the start
    // again), nor depth 2.
    assert_eq!(
        paths(&done),
        BTreeSet::from(["/crawl/start".into(), "/crawl/a".into(), "/crawl/b".into()]),
        "{done}"
    );
    assert_eq!(done["progress"]["succeeded"], 3, "{done}");
    let a = done["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|item| item["url"] == site.url("/crawl/a"))
        })
        .expect("page a");
    let markdown = server
        .get(a["result"]["href"].as_str().expect("a result"))
        .await
        .text()
        .await
        .expect("markdown");
    assert!(markdown.contains("Page a"), "{markdown}");
    let asked = site.requests_to("/crawl/private").len() + site.requests_to("/crawl/doc.pdf").len();
    assert_eq!(
        asked, 0,
        "nothing robots.txt or the rules refuse was fetched"
    );

    // Deeper, with the sitemap, to a page limit; then without robots.txt.
    let id = crawl(
        &server,
        json!({ "plugin": "content", "url": site.url("/crawl/start"),
                "crawl": { "max_depth": 3, "max_pages": 5, "sitemap": true } }),
    )
    .await;
    let deep = finished(&server, &id).await;
    let pages = paths(&deep);
    assert_eq!(pages.len(), 5, "{pages:?}");
    assert!(pages.contains("/crawl/from-sitemap?a=1&b=2"), "{pages:?}");
    assert!(!pages.contains("/crawl/private"));
    let id = crawl(
        &server,
        json!({ "plugin": "content", "url": site.url("/crawl/start"),
                "crawl": { "robots": false, "include": ["/crawl/(start|private)"] } }),
    )
    .await;
    let unruled = finished(&server, &id).await;
    assert_eq!(
        paths(&unruled),
        BTreeSet::from(["/crawl/start".into(), "/crawl/private".into()])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_crawls_are_refused_before_any_page_is_rendered() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let start = site.url("/crawl/start");
    let response = server
        .post(
            "/v1/crawls",
            json!({ "plugin": "content", "url": site.url("/crawl/private") }),
        )
        .await;
    let message = error_message(response, 422, "robots_disallowed").await;
    assert!(message.contains("robots.txt"), "{message}");
    for (body, code, needle) in [
        (
            json!({ "plugin": "content", "url": start, "crawl": { "max_depth": 99 } }),
            "invalid_input",
            "max_depth",
        ),
        (
            json!({ "plugin": "content", "url": start, "crawl": { "include": ["("] } }),
            "invalid_input",
            "include[0]",
        ),
        (
            json!({ "plugin": "content", "url": start, "crawl": { "depth": 1 } }),
            "invalid_request",
            "depth",
        ),
        (
            json!({ "plugin": "content", "html": "<p>x</p>" }),
            "invalid_request",
            "url",
        ),
        (
            json!({ "plugin": "content", "urls": [start] }),
            "invalid_request",
            "urls",
        ),
    ] {
        let response = server.post("/v1/crawls", body.clone()).await;
        let message = error_message(response, 400, code).await;
        assert!(message.contains(needle), "{body}: {message}");
    }
    server.shutdown().await;
}
