//! `/playground`, driven in a real Chromium (its own, through chromiumoxide) as a user would: a
//! render shows up with its status and timing headers, an async job's states show as it moves, an
//! error shows readably, and an upload without the admin token is refused by the server and says so.

use std::time::Duration;

use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;

use crate::eventually::eventually;
use crate::harness::{FixtureSite, TestServer};

const ADMIN: &str = "playground-admin-token-0123456789";

/// A headless Chromium to drive the page with, apart from the server's: the test is its user.
async fn driver() -> (Browser, tempfile::TempDir) {
    let settings =
        pagewright::cli::serve_settings(["pagewright", "serve"]).expect("default settings");
    let profile = tempfile::tempdir().expect("a profile folder");
    let config = BrowserConfig::builder()
        .chrome_executable(&settings.browser.executable)
        .user_data_dir(profile.path())
        // The tests run as root, where Chromium's sandbox refuses to start; this browser visits
        // only the test's own server.
        .no_sandbox()
        .build()
        .expect("a browser config");
    let (browser, mut handler) = Browser::launch(config).await.expect("Chromium starts");
    tokio::spawn(async move { while handler.next().await.is_some() {} });
    (browser, profile)
}

/// Runs `script` in the page and returns its value.
async fn eval<T: serde::de::DeserializeOwned>(page: &Page, script: &str) -> T {
    page.evaluate(script)
        .await
        .unwrap_or_else(|error| panic!("`{script}` failed: {error}"))
        .into_value()
        .unwrap_or_else(|error| panic!("`{script}`'s value: {error}"))
}

/// Waits until `condition` (a JavaScript expression) is true in the page.
async fn until(page: &Page, what: &str, condition: &str) {
    let script = format!("Boolean({condition})");
    eventually(what, Duration::from_secs(60), || async {
        eval::<bool>(page, &script).await.then_some(())
    })
    .await;
}

/// Sets an input's value as typing would (with its `input` and `change` events).
async fn fill(page: &Page, id: &str, value: &str) {
    let script = format!(
        "(() => {{ const e = document.getElementById({id:?}); e.value = {value:?}; \
         e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change')); return true; }})()"
    );
    assert!(eval::<bool>(page, &script).await, "filling #{id}");
}

async fn click(page: &Page, id: &str) {
    let script = format!("(() => {{ document.getElementById({id:?}).click(); return true; }})()");
    assert!(eval::<bool>(page, &script).await, "clicking #{id}");
}

async fn text_of(page: &Page, id: &str) -> String {
    eval(page, &format!("document.getElementById({id:?}).innerText")).await
}

/// Starts a render and waits for its answer: a result (`done`) or an error shown.
async fn render(page: &Page) {
    eval::<bool>(
        page,
        "(() => { delete document.getElementById('result').dataset.state; \
         delete document.getElementById('error').dataset.state; return true; })()",
    )
    .await;
    click(page, "render").await;
    until(
        page,
        "the render's answer shows",
        "document.getElementById('result').dataset.state === 'done' || \
         document.getElementById('error').dataset.state === 'error'",
    )
    .await;
}

#[tokio::test]
async fn the_playground_renders_shows_errors_and_refuses_an_upload_without_the_token() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&["--admin-token", ADMIN]).await;
    let response = server.get("/playground").await;
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    // Only the page's own script runs (by its hash): the page below working proves the hash.
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'sha256-"),
        "{policy}"
    );
    let (mut browser, _profile) = driver().await;
    let page = browser
        .new_page(format!("{}/playground", server.base))
        .await
        .expect("the playground opens");

    until(
        &page,
        "the plugin list shows the built-ins",
        "document.querySelector('#output option[value=\"plugin:markdown\"]')",
    )
    .await;

    // A screenshot of a served page: the image, the status and the server's timing headers.
    fill(&page, "url", &site.url("/")).await;
    fill(&page, "output", "screenshot").await;
    render(&page).await;
    assert_eq!(
        eval::<String>(
            &page,
            "document.getElementById('result').dataset.state || ''"
        )
        .await,
        "done",
        "{}",
        text_of(&page, "error").await
    );
    assert!(text_of(&page, "status").await.contains("200"));
    until(
        &page,
        "the screenshot is drawn",
        "document.querySelector('#result img') && document.querySelector('#result img').naturalWidth > 0",
    )
    .await;
    let headers = text_of(&page, "headers").await;
    assert!(headers.contains("x-pagewright-plugin-fuel"), "{headers}");

    // Markdown of inline HTML, as text.
    eval::<bool>(
        &page,
        "(() => { document.getElementById('source-html').click(); return true; })()",
    )
    .await;
    fill(
        &page,
        "html",
        "<h1>Playground heading</h1><p>Some text.</p>",
    )
    .await;
    fill(&page, "output", "markdown").await;
    render(&page).await;
    let result = text_of(&page, "result").await;
    assert!(result.contains("# Playground heading"), "{result}");

    // An error, shown with its code and message.
    eval::<bool>(
        &page,
        "(() => { document.getElementById('source-url').click(); return true; })()",
    )
    .await;
    fill(&page, "html", "").await;
    fill(&page, "url", "file:///etc/passwd").await;
    fill(&page, "output", "screenshot").await;
    render(&page).await;
    let error = text_of(&page, "error").await;
    assert!(error.contains("url_not_allowed"), "{error}");
    assert!(text_of(&page, "status").await.contains("400"));

    // An async job: its states as it moves, then its result.
    fill(&page, "url", &site.url("/")).await;
    fill(&page, "output", "content").await;
    eval::<bool>(
        &page,
        "(() => { document.getElementById('async').checked = true; return true; })()",
    )
    .await;
    render(&page).await;
    let states = text_of(&page, "job-states").await;
    assert!(
        states.contains("queued") && states.contains("succeeded"),
        "{states}"
    );
    assert!(text_of(&page, "result").await.contains("Hello pagewright"));

    // An upload without the admin token: sent, refused by the server, and said so.
    fill(&page, "admin-token", "").await;
    fill(&page, "upload-name", "nobody").await;
    eval::<bool>(
        &page,
        "(() => { delete document.getElementById('error').dataset.state; return true; })()",
    )
    .await;
    click(&page, "upload").await;
    until(
        &page,
        "the refused upload shows",
        "document.getElementById('error').dataset.state === 'error'",
    )
    .await;
    let error = text_of(&page, "error").await;
    assert!(
        error.contains("unauthorized") && error.contains("admin token"),
        "{error}"
    );
    let plugins = server.get_json("/v1/plugins").await;
    assert!(
        !plugins.to_string().contains("\"nobody\""),
        "nothing was registered"
    );

    browser.close().await.ok();
    server.shutdown().await;
}
