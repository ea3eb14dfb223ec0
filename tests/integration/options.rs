//! Page setup and failure policies through the HTTP API (issue 16): the almost-idle wait, best
//! attempts, scrolling, added scripts and styles, headers scoped to origins, basic
//! authentication, emulation presets, and `fail_on`; bad values refused naming the field.

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, error_code, error_message};

/// The page's HTML and the response's headers for a `/v1/content` request that must succeed.
async fn content(server: &TestServer, body: Value) -> (String, reqwest::header::HeaderMap) {
    let response = server.post("/v1/content", body.clone()).await;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{body}: {text}");
    let content: Value = serde_json::from_str(&text).expect("JSON");
    (content["html"].as_str().expect("html").to_owned(), headers)
}

#[tokio::test]
async fn waits_best_attempts_scrolling_and_additions() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;

    // A page that holds one connection open for 3 s after load is almost idle long before it is
    // idle.
    let holding = site.url("/holds-a-connection");
    let started = std::time::Instant::now();
    content(
        &server,
        json!({ "url": holding, "goto": { "wait_until": "networkalmostidle" } }),
    )
    .await;
    let almost = started.elapsed();
    let started = std::time::Instant::now();
    content(
        &server,
        json!({ "url": holding, "goto": { "wait_until": "networkidle" } }),
    )
    .await;
    let idle = started.elapsed();
    assert!(
        almost.as_millis() + 1500 < idle.as_millis(),
        "almost idle {almost:?}, idle {idle:?}"
    );

    // A page that never goes idle: a timeout without best_attempt, the page with a warning with it.
    let beacon = site.url("/beacon");
    let failed = server
        .post(
            "/v1/content",
            json!({ "url": beacon, "goto": { "wait_until": "networkidle", "timeout_ms": 1500 } }),
        )
        .await;
    assert_eq!(error_code(failed, 504).await, "navigation_timeout");
    let (html, headers) = content(
        &server,
        json!({ "url": beacon, "goto": { "wait_until": "networkidle", "timeout_ms": 1500, "best_attempt": true } }),
    )
    .await;
    assert!(html.contains("beacon"), "{html}");
    let warnings = headers
        .get("x-pagewright-warnings")
        .expect("a warnings header")
        .to_str()
        .expect("ASCII");
    assert!(warnings.contains("best_attempt"), "{warnings}");
    // The same for a selector that never shows up, within a job budget the wait would use up.
    let (_, headers) = content(
        &server,
        json!({ "url": site.url("/"), "timeout_ms": 4000, "goto": { "best_attempt": true,
                "wait_for_selector": { "selector": "#never" } } }),
    )
    .await;
    let warnings = headers["x-pagewright-warnings"].to_str().expect("ASCII");
    assert!(warnings.contains("wait for selector"), "{warnings}");
    // And nothing when every wait was met.
    let (_, headers) = content(
        &server,
        json!({ "url": site.url("/"), "goto": { "best_attempt": true } }),
    )
    .await;
    assert!(headers.get("x-pagewright-warnings").is_none());

    // What loads only when scrolled to is there with `page.scroll`, and the page is back at the top.
    let lazy = site.url("/lazy");
    let (html, _) = content(&server, json!({ "url": lazy })).await;
    assert!(!html.contains("data-seen"), "{html}");
    let (html, _) = content(&server, json!({ "url": lazy, "page": { "scroll": true } })).await;
    assert!(html.contains("data-seen=\"bottom\""), "{html}");
    let (html, _) = content(
        &server,
        json!({ "url": lazy, "page": { "scroll": { "step_px": 2000, "delay_ms": 20 } } }),
    )
    .await;
    assert!(html.contains("data-seen=\"bottom\""), "{html}");

    // Scripts before the page's own and after load, and a style sheet, without a plugin.
    let (html, _) = content(
        &server,
        json!({ "url": site.url("/"), "page": {
            "add_scripts": [
                { "content": "window.earlyMark = 'set before the page ran'", "at": "start" },
                { "content": "document.body.dataset.early = window.earlyMark; document.body.dataset.late = 'after load'" }
            ],
            "add_styles": [ { "content": "#title { color: rgb(1, 2, 3) }" } ] } }),
    )
    .await;
    assert!(
        html.contains("data-early=\"set before the page ran\""),
        "{html}"
    );
    assert!(html.contains("data-late=\"after load\""), "{html}");
    assert!(html.contains("rgb(1, 2, 3)"), "{html}");
    // By URL: a script that loads, and one that does not, named.
    let missing = server
        .post(
            "/v1/content",
            json!({ "url": site.url("/"), "page": { "add_scripts": [
                { "content": "1" }, { "url": site.url("/no-such-script.js") } ] } }),
        )
        .await;
    let message = error_message(missing, 422, "script_error").await;
    assert!(message.contains("page.add_scripts[1]"), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn headers_and_credentials_reach_only_their_origins() {
    let site = FixtureSite::start().await;
    // Another origin the page reaches for: a third party.
    let third = FixtureSite::start_on([127, 0, 0, 2]).await;
    let server = TestServer::start(&[]).await;
    let page = site.url(&format!("/reaches-for?origin={}", third.base));
    let secret = |request: &crate::harness::SeenRequest| request.headers.get("x-secret").cloned();

    // By default the headers go to the target's origin only.
    content(
        &server,
        json!({ "url": page, "page": { "headers": { "X-Secret": "s3cret" } } }),
    )
    .await;
    let asked = site.requests_to("/reaches-for");
    assert_eq!(secret(&asked[0]).as_deref(), Some("s3cret"));
    let reached = third.requests_to("/");
    assert!(!reached.is_empty(), "the page reached for the third party");
    assert!(
        reached.iter().all(|request| secret(request).is_none()),
        "{reached:?}"
    );

    // `"all"` sends them everywhere; a list of origins to those only.
    third.requests.lock().expect("requests").clear();
    content(
        &server,
        json!({ "url": page, "page": { "headers": { "X-Secret": "everywhere" }, "headers_scope": "all" } }),
    )
    .await;
    assert!(
        third
            .requests_to("/")
            .iter()
            .any(|request| secret(request).as_deref() == Some("everywhere"))
    );
    site.requests.lock().expect("requests").clear();
    third.requests.lock().expect("requests").clear();
    content(
        &server,
        json!({ "url": page, "page": { "headers": { "X-Secret": "listed" }, "headers_scope": [third.base] } }),
    )
    .await;
    assert!(secret(&site.requests_to("/reaches-for")[0]).is_none());
    assert!(
        third
            .requests_to("/")
            .iter()
            .any(|request| secret(request).as_deref() == Some("listed"))
    );

    // Basic credentials go to the target's origin only.
    site.requests.lock().expect("requests").clear();
    third.requests.lock().expect("requests").clear();
    content(
        &server,
        json!({ "url": page, "page": { "authenticate": { "username": "ada", "password": "lovelace" } } }),
    )
    .await;
    assert_eq!(
        site.requests_to("/reaches-for")[0]
            .headers
            .get("authorization")
            .map(String::as_str),
        Some("Basic YWRhOmxvdmVsYWNl")
    );
    assert!(
        third
            .requests_to("/")
            .iter()
            .all(|request| !request.headers.contains_key("authorization"))
    );

    let locked = server
        .post("/v1/content", json!({ "url": site.url("/digest") }))
        .await;
    // Chromium fails a challenge it has no credentials for, and the message says what to do.
    let message = error_message(locked, 502, "navigation_failed").await;
    assert!(message.contains("give page.authenticate"), "{message}");
    // Digest: Chromium answers the target's challenge; wrong credentials get the 401 page, and the
    // page's URL never shows them.
    let digest = |password: &str| {
        json!({ "url": site.url("/digest"),
                "page": { "authenticate": { "username": "ann", "password": password, "scheme": "digest" } } })
    };
    let response = server.post("/v1/content", digest("s3cret")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-pagewright-page-status"], "200");
    assert_eq!(
        response.headers()["x-pagewright-page-url"],
        site.url("/digest").as_str()
    );
    let answered: Value = response.json().await.expect("JSON");
    assert!(
        answered["html"]
            .as_str()
            .unwrap_or_default()
            .contains("digest secret"),
        "{answered}"
    );
    let response = server.post("/v1/content", digest("guess")).await;
    let message = error_message(response, 502, "navigation_failed").await;
    assert!(
        message.contains("ERR_INVALID_AUTH_CREDENTIALS"),
        "{message}"
    );
    assert!(
        !message.contains("guess"),
        "the password never shows: {message}"
    );

    // Bad values are refused before any browser work, naming the field.
    for (page_options, field) in [
        (json!({ "headers_scope": "some" }), "headers_scope"),
        (
            json!({ "headers": { "x": "1" }, "headers_scope": ["https://a.example/path"] }),
            "page.headers_scope",
        ),
        (
            json!({ "authenticate": { "username": "a:b", "password": "c" } }),
            "page.authenticate.username",
        ),
        (
            json!({ "authenticate": { "username": "a", "password": "c" }, "headers": { "Authorization": "x" } }),
            "page.authenticate",
        ),
        (json!({ "timezone": "not a zone" }), "page.timezone"),
        (json!({ "locale": "fr FR" }), "page.locale"),
        (
            json!({ "geolocation": { "latitude": 91, "longitude": 0 } }),
            "page.geolocation",
        ),
        (json!({ "device": "toaster" }), "toaster"),
        (json!({ "scroll": { "step_px": 1 } }), "page.scroll"),
        (
            json!({ "add_scripts": [{ "url": "ftp://x/y.js" }] }),
            "page.add_scripts[0].url",
        ),
        (
            json!({ "add_scripts": [{ "url": "http://x/y.js", "at": "start" }] }),
            "page.add_scripts[0]",
        ),
        (json!({ "add_styles": [{}] }), "page.add_styles[0]"),
    ] {
        let response = server
            .post(
                "/v1/content",
                json!({ "url": site.url("/"), "page": page_options }),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(status, 400, "{page_options}: {body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(field), "{page_options}: {message}");
    }
    // Headers on inline HTML need a scope: it has no origin of its own.
    let response = server
        .post(
            "/v1/content",
            json!({ "html": "<p>x</p>", "page": { "headers": { "X-Secret": "s" } } }),
        )
        .await;
    let message = error_message(response, 400, "invalid_input").await;
    assert!(message.contains("headers_scope"), "{message}");
    server.shutdown().await;
}

#[tokio::test]
async fn fail_on_turns_what_the_page_shows_into_a_conflict() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;

    // A 404 renders as the page it is, unless the job says it is a failure.
    let missing = site.url("/status?code=404");
    let (html, headers) = content(&server, json!({ "url": missing })).await;
    assert!(html.contains("status 404"));
    assert_eq!(headers["x-pagewright-page-status"], "404");
    for fail_on in [json!([404]), json!(["4xx"]), json!(["400-499", 503])] {
        let response = server
            .post(
                "/v1/content",
                json!({ "url": missing, "fail_on": { "status": fail_on } }),
            )
            .await;
        let message = error_message(response, 409, "fail_on_status").await;
        assert!(message.contains("404"), "{message}");
    }
    content(
        &server,
        json!({ "url": missing, "fail_on": { "status": ["5xx"] } }),
    )
    .await;

    // A subresource's status, and an uncaught exception.
    let broken = site.url("/broken-image");
    content(&server, json!({ "url": broken })).await;
    let response = server
        .post(
            "/v1/content",
            json!({ "url": broken, "fail_on": { "resource_status": ["5xx"] } }),
        )
        .await;
    let message = error_message(response, 409, "fail_on_resource_status").await;
    assert!(message.contains("500"), "{message}");
    let throws = site.url("/throws");
    content(&server, json!({ "url": throws })).await;
    let response = server
        .post(
            "/v1/content",
            json!({ "url": throws, "fail_on": { "console_exception": true } }),
        )
        .await;
    let message = error_message(response, 409, "fail_on_console_exception").await;
    assert!(message.contains("the page broke"), "{message}");
    // A page without any of it passes every rule.
    content(
        &server,
        json!({ "url": site.url("/"), "fail_on": { "status": ["4xx", "5xx"],
                "resource_status": ["4xx", "5xx"], "console_exception": true } }),
    )
    .await;

    for (fail_on, field) in [
        (json!({ "status": ["6xx"] }), "6xx"),
        (json!({ "status": [99] }), "99"),
        (json!({ "status": ["500-400"] }), "500-400"),
        (json!({ "statuses": [404] }), "statuses"),
    ] {
        let response = server
            .post("/v1/content", json!({ "url": missing, "fail_on": fail_on }))
            .await;
        let message = error_message(response, 400, "invalid_request").await;
        assert!(message.contains(field), "{message}");
    }
    server.shutdown().await;
}

/// A `multipart/form-data` body of `(field, file name, content)` parts, and its content type.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "pagewright-test-boundary";
    let mut body = Vec::new();
    for (field, file_name, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match file_name {
            Some(file_name) => {
                format!(
                    "Content-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\n"
                )
            }
            None => format!("Content-Disposition: form-data; name=\"{field}\"\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A script that writes what the served page sees into `<body data-...>`: its URL, a style from
/// its style sheet, its image's width, and the status of a file the upload lacks.
const SEES: &str = "(async () => { const body = document.body; \
    body.dataset.href = location.href; \
    body.dataset.color = getComputedStyle(document.getElementById('t')).color; \
    body.dataset.width = String(document.getElementById('i').naturalWidth); \
    body.dataset.missing = String((await fetch('missing.js')).status); })()";

#[tokio::test]
async fn html_is_served_at_its_base_url_with_its_files() {
    use base64::Engine as _;
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let pixel_png = reqwest::get(site.url("/pixel.png"))
        .await
        .expect("the pixel")
        .bytes()
        .await
        .expect("its bytes");
    let page = "<!doctype html><link rel=stylesheet href='css/site.css'>\
                <h1 id=t>served</h1><img id=i src='img/dot.png'>";

    // Files beside the document, at a made-up origin that never reaches the network.
    let (html, _) = content(
        &server,
        json!({ "html": page, "assets": [
            { "path": "css/site.css", "content": "#t { color: rgb(4, 5, 6) }" },
            { "path": "img/dot.png", "base64": base64::engine::general_purpose::STANDARD.encode(&pixel_png) }
        ], "page": { "add_scripts": [{ "content": SEES }] } }),
    )
    .await;
    assert!(
        html.contains("data-href=\"http://pagewright.invalid/\""),
        "{html}"
    );
    assert!(html.contains("data-color=\"rgb(4, 5, 6)\""), "{html}");
    assert!(html.contains("data-width=\"1\""), "{html}");
    assert!(html.contains("data-missing=\"404\""), "{html}");

    // At a real site's URL: the document comes from the request, its other links from the site,
    // and target-scoped headers go to that origin.
    let base = site.url("/docs/guide.html");
    let (html, headers) = content(
        &server,
        json!({ "html": "<!doctype html><h1>guide</h1><img src='../pixel.png?from-guide'>",
                "base_url": base, "page": { "headers": { "X-Secret": "to-the-site" } } }),
    )
    .await;
    assert!(html.contains("guide"), "{html}");
    assert_eq!(headers["x-pagewright-page-url"], base.as_str());
    assert!(
        site.requests_to("/docs").is_empty(),
        "the document came from the request"
    );
    let image = site.requests_to("/pixel.png?from-guide");
    assert_eq!(image.len(), 1);
    assert_eq!(
        image[0].headers.get("x-secret").map(String::as_str),
        Some("to-the-site")
    );

    // The same upload as a multipart form, as Gotenberg takes it.
    let (content_type, body) = multipart(&[
        (
            "request",
            None,
            br#"{"page": {"add_scripts": [{"content": "document.body.dataset.ok = 'yes'"}]}}"#,
        ),
        ("files", Some("index.html"), page.as_bytes()),
        ("files", Some("css/site.css"), b"#t { color: rgb(7, 8, 9) }"),
        ("files", Some("img/dot.png"), &pixel_png),
    ]);
    let response = server
        .client
        .post(format!("{}/v1/content", server.base))
        .header("content-type", &content_type)
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    let html = answer["html"].as_str().expect("html");
    assert!(html.contains("data-ok=\"yes\""), "{html}");
    assert!(html.contains("<h1 id=\"t\">served</h1>"), "{html}");
    let response = server
        .client
        .post(format!("{}/v1/screenshot", server.base))
        .header("content-type", &content_type)
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");

    // Uploads and bases that cannot mean anything.
    for (parts, named) in [
        (
            vec![("files", Some("style.css"), &b"p {}"[..])],
            "index.html",
        ),
        (
            vec![
                ("files", Some("index.html"), &b"<p>x</p>"[..]),
                ("format", None, &b"png"[..]),
            ],
            "format",
        ),
        (
            vec![
                ("files", Some("index.html"), &b"<p>x</p>"[..]),
                ("files", Some("../up.css"), &b"p {}"[..]),
            ],
            "assets[0].path",
        ),
    ] {
        let (content_type, body) = multipart(&parts);
        let response = server
            .client
            .post(format!("{}/v1/content", server.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("answered");
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON");
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(named), "{message}");
    }
    for (body, named) in [
        (
            json!({ "url": site.url("/"), "base_url": site.url("/") }),
            "base_url",
        ),
        (
            json!({ "html": "<p>x</p>", "base_url": "ftp://example.com/" }),
            "ftp",
        ),
        (
            json!({ "html": "<p>x</p>", "assets": [{ "path": "a.css" }] }),
            "assets[0]",
        ),
    ] {
        let response = server.post("/v1/content", body.clone()).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON");
        assert_eq!(status, 400, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(named), "{body}: {message}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn markdown_gives_the_page_or_its_main_content() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let article = site.url("/article");

    let markdown = |body: Value| {
        let server = &server;
        async move {
            let response = server.post("/v1/markdown", body).await;
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"],
                "text/markdown; charset=utf-8"
            );
            response.text().await.expect("text")
        }
    };
    let whole = markdown(json!({ "url": article })).await;
    assert!(whole.starts_with("# Rivers of the North\n"), "{whole}");
    for kept in [
        "World",
        "Accept cookies",
        "Buy now",
        "Copyright the Northern Gazette",
    ] {
        assert!(
            whole.contains(kept),
            "the whole page keeps {kept:?}:\n{whole}"
        );
    }
    for never in ["secret hidden text", "analytics", "display: none"] {
        assert!(!whole.contains(never), "{never:?} is not shown:\n{whole}");
    }

    let main = markdown(json!({ "url": article, "options": { "main_content": true } })).await;
    assert!(main.starts_with("# Rivers of the North\n"), "{main}");
    for kept in [
        "**November**",
        &format!("[more about the thaw]({})", site.url("/more")),
        &format!("![A map of the rivers]({})", site.url("/pixel.png")),
        "## What the rivers carry",
        "Timber from the forests upstream",
        "flow = area * velocity",
    ] {
        assert!(
            main.contains(kept),
            "the main content keeps {kept:?}:\n{main}"
        );
    }
    for dropped in [
        "World",
        "Accept cookies",
        "Buy now",
        "Copyright",
        "Share on every network",
        "secret hidden text",
    ] {
        assert!(
            !main.contains(dropped),
            "the main content drops {dropped:?}:\n{main}"
        );
    }
    let response = server
        .post(
            "/v1/markdown",
            json!({ "url": article, "options": { "main": true } }),
        )
        .await;
    assert_eq!(response.status(), 400);
    server.shutdown().await;
}

#[tokio::test]
async fn debug_returns_the_console_the_errors_and_a_har_of_the_requests() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let noisy = site.url("/noisy");
    let response = server
        .post(
            "/v1/debug",
            json!({ "url": noisy, "goto": { "wait_ms": 300 }, "options": { "bodies": true } }),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let debug: Value = response.json().await.expect("JSON");
    assert_eq!(debug["status"], 200);
    let console = debug["console"].as_array().expect("console");
    assert!(
        console
            .iter()
            .any(|message| message["type"] == "log" && message["text"] == "hello 42"),
        "{debug}"
    );
    assert!(
        console
            .iter()
            .any(|message| message["type"] == "warning" && message["text"] == "careful"),
        "{debug}"
    );
    assert!(
        debug["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("late failure")),
        "{debug}"
    );
    let entries = debug["har"]["log"]["entries"].as_array().expect("entries");
    let entry = |path: &str| {
        entries
            .iter()
            .find(|entry| entry["request"]["url"] == site.url(path).as_str())
            .unwrap_or_else(|| panic!("no entry for {path}: {debug}"))
            .clone()
    };
    let document = entry("/noisy");
    assert_eq!(document["response"]["status"], 200);
    assert_eq!(document["_resourceType"], "document");
    assert!(
        document["response"]["content"]["text"]
            .as_str()
            .is_some_and(|text| text.contains("console.log")),
        "{document}"
    );
    assert!(document["time"].as_f64().is_some_and(|time| time >= 0.0));
    assert_eq!(entry("/pixel.png")["_resourceType"], "image");
    assert_eq!(entry("/status?code=404")["response"]["status"], 404);
    assert_eq!(debug["har"]["log"]["version"], "1.2");

    for options in [json!({ "max_body_bytes": 0 }), json!({ "body": true })] {
        let response = server
            .post("/v1/debug", json!({ "url": noisy, "options": options }))
            .await;
        assert_eq!(response.status(), 400, "{options}");
    }
    server.shutdown().await;
}

/// A PNG's width and height, from its header.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let number = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (number(16), number(20))
}

async fn bytes_of(server: &TestServer, path: &str, body: Value) -> Vec<u8> {
    let response = server.post(path, body.clone()).await;
    let status = response.status();
    let bytes = response.bytes().await.expect("body").to_vec();
    assert_eq!(status, 200, "{body}: {}", String::from_utf8_lossy(&bytes));
    bytes
}

#[tokio::test]
async fn screenshot_scale_viewport_capture_and_pdf_outline_tags_and_metadata() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let tour = site.url("/tour");

    // `scale` sets image pixels per CSS pixel whatever the device scale factor.
    let half = bytes_of(
        &server,
        "/v1/screenshot",
        json!({ "url": tour, "options": { "scale": 0.5 } }),
    )
    .await;
    assert_eq!(png_size(&half), (640, 360));
    let retina_halved = bytes_of(
        &server,
        "/v1/screenshot",
        json!({ "url": tour, "page": { "viewport": { "width": 400, "height": 300, "device_scale_factor": 2 } },
                "options": { "scale": 1, "optimize_for_speed": true } }),
    )
    .await;
    assert_eq!(png_size(&retina_halved), (400, 300));

    // An element below the fold, captured as laid out and as scrolled into view: the same box.
    for beyond in [true, false] {
        let shot = bytes_of(
            &server,
            "/v1/screenshot",
            json!({ "url": tour, "options": { "selector": "#bottom", "capture_beyond_viewport": beyond } }),
        )
        .await;
        let (width, height) = png_size(&shot);
        assert!(
            width > 100 && (10..40).contains(&height),
            "beyond {beyond}: {width}x{height}"
        );
    }

    let pdf = bytes_of(
        &server,
        "/v1/pdf",
        json!({ "url": site.url("/article"), "options": {
            "outline": true, "omit_background": true,
            "metadata": { "title": "Field guide", "author": "Ada", "keywords": ["birds", "rivers"],
                          "creation_date": "2026-12-05T10:00:00Z" } } }),
    )
    .await;
    let document = lopdf::Document::load_mem(&pdf).expect("a PDF");
    let info_id = document
        .trailer
        .get(b"Info")
        .and_then(lopdf::Object::as_reference)
        .expect("document information");
    let info = document.get_dictionary(info_id).expect("Info");
    let text = |key: &[u8]| {
        String::from_utf8_lossy(info.get(key).and_then(lopdf::Object::as_str).expect("set"))
            .into_owned()
    };
    assert_eq!(text(b"Title"), "Field guide");
    assert_eq!(text(b"Author"), "Ada");
    assert_eq!(text(b"Keywords"), "birds, rivers");
    assert_eq!(text(b"CreationDate"), "D:20261205100000Z");
    let catalog = document.catalog().expect("catalog");
    assert!(catalog.has(b"Outlines"), "an outline from the headings");
    assert!(catalog.has(b"StructTreeRoot"), "the outline implies tags");

    let plain = bytes_of(&server, "/v1/pdf", json!({ "url": site.url("/article") })).await;
    let plain = lopdf::Document::load_mem(&plain).expect("a PDF");
    assert!(!plain.catalog().expect("catalog").has(b"Outlines"));

    // Values of the wrong type are refused as the request is read, values out of range as it is
    // checked: both before any browser work, naming the field.
    for (path, options, code, field) in [
        (
            "/v1/screenshot",
            json!({ "scale": 9 }),
            "invalid_input",
            "scale",
        ),
        (
            "/v1/screenshot",
            json!({ "capture_beyond_viewport": "yes" }),
            "invalid_request",
            "capture_beyond_viewport",
        ),
        (
            "/v1/pdf",
            json!({ "metadata": { "creation_date": "tomorrow" } }),
            "invalid_input",
            "creation_date",
        ),
        (
            "/v1/pdf",
            json!({ "metadata": { "publisher": "me" } }),
            "invalid_request",
            "publisher",
        ),
        (
            "/v1/pdf",
            json!({ "tagged": 1 }),
            "invalid_request",
            "tagged",
        ),
    ] {
        let response = server
            .post(path, json!({ "url": tour, "options": options }))
            .await;
        let message = error_message(response, 400, code).await;
        assert!(message.contains(field), "{field}: {message}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn several_pages_merge_into_one_pdf_in_order() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let pdf = bytes_of(
        &server,
        "/v1/pdf/merge",
        json!({
            "pages": [
                { "url": site.url("/article") },
                { "html": "<h1>Inline</h1><p>one page</p>" },
                { "url": site.url("/tall") },
            ],
            "options": { "paper": "a4", "metadata": { "title": "Bundle" } },
        }),
    )
    .await;
    let merged = lopdf::Document::load_mem(&pdf).expect("a PDF");
    let mut separately = 0;
    for body in [
        json!({ "url": site.url("/article"), "options": { "paper": "a4" } }),
        json!({ "html": "<h1>Inline</h1><p>one page</p>", "options": { "paper": "a4" } }),
        json!({ "url": site.url("/tall"), "options": { "paper": "a4" } }),
    ] {
        let one = bytes_of(&server, "/v1/pdf", body).await;
        separately += lopdf::Document::load_mem(&one)
            .expect("a PDF")
            .get_pages()
            .len();
    }
    assert_eq!(
        merged.get_pages().len(),
        separately,
        "every page of every document"
    );
    // The inline page's text sits on the page after the article's pages.
    let article_pages = {
        let one = bytes_of(
            &server,
            "/v1/pdf",
            json!({ "url": site.url("/article"), "options": { "paper": "a4" } }),
        )
        .await;
        lopdf::Document::load_mem(&one)
            .expect("a PDF")
            .get_pages()
            .len()
    };
    let inline_page = u32::try_from(article_pages + 1).expect("few pages");
    let text = merged.extract_text(&[inline_page]).unwrap_or_default();
    assert!(text.contains("Inline"), "page {inline_page}: {text:?}");
    let info_id = merged
        .trailer
        .get(b"Info")
        .and_then(lopdf::Object::as_reference)
        .expect("document information");
    let title = merged
        .get_dictionary(info_id)
        .and_then(|info| info.get(b"Title"))
        .and_then(lopdf::Object::as_str)
        .expect("a title");
    assert_eq!(title, b"Bundle");

    // A page that fails names its place; bad lists and misplaced fields are refused up front.
    let response = server
        .post(
            "/v1/pdf/merge",
            json!({ "pages": [{ "url": site.url("/") }, { "url": "ftp://example.com/" }] }),
        )
        .await;
    let message = error_message(response, 400, "url_not_allowed").await;
    assert!(message.starts_with("pages[1]: "), "{message}");
    for (body, code, needle) in [
        (json!({ "pages": [] }), "invalid_input", "pages"),
        (
            json!({ "pages": [{ "url": site.url("/"), "goto": {} }] }),
            "invalid_request",
            "goto",
        ),
        (
            json!({ "url": site.url("/"), "pages": [{ "url": site.url("/") }] }),
            "invalid_request",
            "url",
        ),
        (
            json!({ "pages": [{ "url": site.url("/") }], "options": { "metadata": { "title": 5 } } }),
            "invalid_request",
            "metadata.title",
        ),
    ] {
        let response = server.post("/v1/pdf/merge", body.clone()).await;
        let message = error_message(response, 400, code).await;
        assert!(message.contains(needle), "{body}: {message}");
    }
    server.shutdown().await;
}
