//! The page operations (what the WIT `page` resource exposes) and the reset, through the Rust API,
//! on pages of a real browser.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{Page, PageError, PageHandle, ScrollTarget};
use crate::browser::{BrowserSession, BrowserSupervisor};
use crate::job::options::{
    BlockOptions, Cookie, GotoOptions, MediaType, PageOptions, ResourceType, WaitForSelector,
    WaitUntil,
};
use crate::testing::FixtureSite;

/// A browser of its own, for opening pages.
struct TestBrowser {
    supervisor: BrowserSupervisor,
    session: Arc<BrowserSession>,
}

impl TestBrowser {
    async fn start() -> Self {
        let (supervisor, session) = BrowserSupervisor::start_for_tests().await;
        Self {
            supervisor,
            session,
        }
    }

    /// A page in a context of its own, as the pool opens one for a new isolation key.
    async fn page(&self) -> PageHandle {
        let context = self
            .session
            .create_context("default")
            .await
            .expect("a context");
        PageHandle::open(&self.session, &context)
            .await
            .expect("a page")
    }

    async fn close(self) {
        self.supervisor.shutdown().await;
    }
}

/// What the pool does between two jobs on one page.
async fn between_jobs(page: &PageHandle) {
    page.mark_used();
    page.reset().await.expect("the reset");
}

/// The request headers the fixture's `/echo` page shows.
async fn echoed_headers(page: &Page<'_>) -> serde_json::Value {
    let text = page
        .evaluate("document.getElementById('headers').textContent")
        .await
        .expect("headers");
    serde_json::from_str(text.as_str().expect("text")).expect("JSON")
}

/// A job's set-up on `page`: `options` applied for `url`, then `url` loaded.
async fn set_up_and_load(page: &Page<'_>, options: &PageOptions, url: &str) {
    page.apply(options, Some(url), None).await.expect("apply");
    page.goto(url, &GotoOptions::default()).await.expect("goto");
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

#[tokio::test]
async fn evaluate_query_click_type_scroll() {
    let site = FixtureSite::start().await;
    let browser = TestBrowser::start().await;
    let handle = browser.page().await;
    let page = Page::new(&handle, deadline());
    let navigation = page
        .goto(&site.url("/"), &GotoOptions::default())
        .await
        .expect("goto");
    assert_eq!(navigation.status, 200);

    assert_eq!(page.evaluate("1 + 2").await.expect("evaluate"), json!(3));
    assert_eq!(
        page.evaluate("Promise.resolve({a: [1]})")
            .await
            .expect("promise"),
        json!({ "a": [1] })
    );
    assert_eq!(
        page.evaluate("undefined").await.expect("undefined"),
        json!(null)
    );
    match page.evaluate("throw new Error('boom')").await {
        Err(PageError::Script(message)) => assert!(message.contains("boom"), "{message}"),
        other => panic!("expected a script error, got {other:?}"),
    }

    let links = page
        .query(
            "a.link",
            &["href".into(), "data-n".into(), "missing".into()],
        )
        .await
        .expect("query");
    assert_eq!(links.len(), 2);
    assert_eq!(links[0].text, "One");
    assert_eq!(links[1].attributes["data-n"].as_deref(), Some("2"));
    assert_eq!(links[0].attributes["missing"], None);
    assert!(matches!(
        page.query("a[", &[]).await,
        Err(PageError::InvalidInput(_))
    ));

    page.type_text("#name", "Ada").await.expect("type");
    page.click("#go").await.expect("click");
    assert_eq!(
        page.evaluate("document.getElementById('out').textContent")
            .await
            .expect("out"),
        "clicked Ada"
    );
    assert!(matches!(
        page.click("#absent").await,
        Err(PageError::NotFound(_))
    ));

    page.scroll(&ScrollTarget::By { x: 0.0, y: 50.0 })
        .await
        .expect("scroll");
    assert!(
        page.content()
            .await
            .expect("content")
            .starts_with("<!DOCTYPE html>")
    );
    browser.close().await;
}

/// What the page says of its clock, language, position, touch and screen, as one JSON object.
async fn emulated(page: &Page<'_>) -> serde_json::Value {
    page.evaluate(
        "new Promise(resolve => { \
           const seen = { \
             timezone: Intl.DateTimeFormat().resolvedOptions().timeZone, \
             language: navigator.language, \
             number: new Intl.NumberFormat().format(1234.5), \
             touch: 'ontouchstart' in window, \
             width: screen.width, \
             agent: navigator.userAgent }; \
           navigator.geolocation.getCurrentPosition( \
             position => resolve({ ...seen, position: [position.coords.latitude, position.coords.longitude] }), \
             () => resolve({ ...seen, position: null }), { timeout: 1000 }); })",
    )
    .await
    .expect("what the page sees")
}

#[tokio::test]
async fn emulation_applies_and_resets() {
    let site = FixtureSite::start().await;
    let browser = TestBrowser::start().await;
    let handle = browser.page().await;
    let echo = site.url("/echo");

    let before = {
        let page = Page::new(&handle, deadline());
        set_up_and_load(&page, &PageOptions::default(), &echo).await;
        emulated(&page).await
    };
    assert_eq!(before["touch"], json!(false), "{before}");
    assert_eq!(before["position"], json!(null), "{before}");
    between_jobs(&handle).await;
    {
        let page = Page::new(&handle, deadline());
        let options: PageOptions = serde_json::from_value(json!({
            "device": "iphone",
            "timezone": "Asia/Tokyo",
            "locale": "de-DE",
            "geolocation": { "latitude": 48.85, "longitude": 2.35 },
        }))
        .expect("options");
        set_up_and_load(&page, &options, &echo).await;
        let seen = emulated(&page).await;
        assert_eq!(seen["timezone"], "Asia/Tokyo", "{seen}");
        assert_eq!(seen["language"], "de-DE", "{seen}");
        assert_eq!(seen["number"], "1.234,5", "{seen}");
        assert_eq!(seen["touch"], json!(true), "{seen}");
        assert_eq!(seen["width"], json!(393), "{seen}");
        assert!(
            seen["agent"]
                .as_str()
                .unwrap_or_default()
                .contains("iPhone"),
            "{seen}"
        );
        assert_eq!(seen["position"], json!([48.85, 2.35]), "{seen}");
        let headers = echoed_headers(&page).await;
        assert!(
            headers["accept-language"]
                .as_str()
                .unwrap_or_default()
                .starts_with("de-DE"),
            "{headers}"
        );
    }
    // The next job on the page finds it as the first did.
    between_jobs(&handle).await;
    {
        let page = Page::new(&handle, deadline());
        set_up_and_load(&page, &PageOptions::default(), &echo).await;
        assert_eq!(emulated(&page).await, before);
    }
    // A time zone Chromium does not know is the caller's mistake, named.
    between_jobs(&handle).await;
    {
        let page = Page::new(&handle, deadline());
        let options = PageOptions {
            timezone: Some("Mars/Olympus_Mons".into()),
            ..PageOptions::default()
        };
        let refused = page.apply(&options, Some(&echo), None).await;
        assert!(
            matches!(&refused, Err(PageError::InvalidInput(message)) if message.contains("page.timezone")),
            "{refused:?}"
        );
    }
    browser.close().await;
}

#[tokio::test]
async fn scripts_credentials_and_served_documents_are_gone_after_the_reset() {
    let site = FixtureSite::start().await;
    let browser = TestBrowser::start().await;
    let handle = browser.page().await;
    let echo = site.url("/echo");
    {
        let page = Page::new(&handle, deadline());
        let options: PageOptions = serde_json::from_value(json!({
            "authenticate": { "username": "ada", "password": "lovelace" },
            "add_scripts": [{ "content": "window.addedBefore = 'yes'", "at": "start" }],
        }))
        .expect("options");
        set_up_and_load(&page, &options, &echo).await;
        assert!(echoed_headers(&page).await["authorization"].is_string());
        assert_eq!(
            page.evaluate("window.addedBefore").await.expect("added"),
            json!("yes")
        );
    }
    between_jobs(&handle).await;
    {
        // A document served from memory at the site's own URL, in place of the site's answer.
        let page = Page::new(&handle, deadline());
        let base = crate::job::HtmlBase {
            url: echo.clone(),
            assets: Vec::new(),
        };
        let served = super::Served::new(&base, "<p id='served'>from memory</p>").expect("served");
        page.apply(&PageOptions::default(), Some(&echo), Some(served))
            .await
            .expect("apply");
        page.goto(&echo, &GotoOptions::default())
            .await
            .expect("goto");
        assert_eq!(page.query("#served", &[]).await.expect("query").len(), 1);
    }
    between_jobs(&handle).await;
    {
        // The next job gets the site itself, without the credentials or the script.
        let page = Page::new(&handle, deadline());
        set_up_and_load(&page, &PageOptions::default(), &echo).await;
        let headers = echoed_headers(&page).await;
        assert!(headers.get("authorization").is_none(), "{headers}");
        assert_eq!(
            page.evaluate("window.addedBefore === undefined")
                .await
                .expect("not added"),
            json!(true)
        );
    }
    browser.close().await;
}

#[tokio::test]
async fn page_options_apply_and_reset() {
    let site = FixtureSite::start().await;
    let browser = TestBrowser::start().await;
    let handle = browser.page().await;
    let echo = site.url("/echo");

    {
        let page = Page::new(&handle, deadline());
        let options = PageOptions {
            headers: BTreeMap::from([("x-test".into(), "yes".into())]),
            user_agent: Some("pagewright-test/1".into()),
            cookies: vec![Cookie {
                name: "session".into(),
                value: "abc".into(),
                url: None,
                domain: None,
                path: None,
                secure: false,
                http_only: false,
                same_site: None,
                expires: None,
            }],
            media: Some(MediaType::Print),
            media_features: BTreeMap::from([("prefers-color-scheme".into(), "dark".into())]),
            ..PageOptions::default()
        };
        set_up_and_load(&page, &options, &echo).await;
        let headers = echoed_headers(&page).await;
        assert_eq!(headers["x-test"], "yes");
        assert_eq!(headers["user-agent"], "pagewright-test/1");
        assert_eq!(headers["cookie"], "session=abc");
        assert_eq!(
            page.evaluate("matchMedia('print').matches")
                .await
                .expect("media"),
            json!(true)
        );
        assert_eq!(
            page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
                .await
                .expect("dark"),
            json!(true)
        );
        let cookies = page.cookies().await.expect("cookies");
        assert!(cookies.iter().any(|cookie| cookie.name == "session"));
    }
    // The next job on the same page sees none of it but the key's cookies.
    between_jobs(&handle).await;
    {
        let page = Page::new(&handle, deadline());
        page.goto(&echo, &GotoOptions::default())
            .await
            .expect("goto");
        let headers = echoed_headers(&page).await;
        assert!(
            headers.get("x-test").is_none(),
            "extra headers were reset: {headers}"
        );
        assert_ne!(
            headers["user-agent"], "pagewright-test/1",
            "user agent was reset"
        );
        assert_eq!(
            page.evaluate("matchMedia('print').matches")
                .await
                .expect("media"),
            json!(false)
        );
    }
    // JavaScript off and blocked images in one job; both are back on for the next.
    between_jobs(&handle).await;
    {
        let page = Page::new(&handle, deadline());
        let options = PageOptions {
            javascript: false,
            block: BlockOptions {
                resource_types: vec![ResourceType::Image],
                url_patterns: vec![],
            },
            ..PageOptions::default()
        };
        page.apply(&options, None, None).await.expect("apply");
        page.goto(&site.url("/image"), &GotoOptions::default())
            .await
            .expect("goto");
    }
    assert_eq!(site.pixel_requests.load(Ordering::SeqCst), 0);
    between_jobs(&handle).await;
    {
        let page = Page::new(&handle, deadline());
        page.goto(&site.url("/image"), &GotoOptions::default())
            .await
            .expect("goto");
        assert_eq!(
            site.pixel_requests.load(Ordering::SeqCst),
            1,
            "images are no longer blocked"
        );
        page.goto(&site.url("/"), &GotoOptions::default())
            .await
            .expect("goto");
        assert_eq!(
            page.query("#noscript", &[]).await.expect("query").len(),
            0,
            "JavaScript is back on"
        );
    }
    browser.close().await;
}

#[tokio::test]
async fn blocking_javascript_and_waits() {
    let site = FixtureSite::start().await;
    let browser = TestBrowser::start().await;

    {
        let handle = browser.page().await;
        let page = Page::new(&handle, deadline());
        let options = PageOptions {
            block: BlockOptions {
                resource_types: vec![ResourceType::Image],
                url_patterns: vec![],
            },
            ..PageOptions::default()
        };
        page.apply(&options, None, None).await.expect("apply");
        page.goto(&site.url("/image"), &GotoOptions::default())
            .await
            .expect("goto");
        assert_eq!(
            page.evaluate("document.getElementById('pixel').naturalWidth")
                .await
                .expect("img"),
            json!(0)
        );
    }
    assert_eq!(
        site.pixel_requests.load(Ordering::SeqCst),
        0,
        "the image never left the browser"
    );

    {
        let handle = browser.page().await;
        let page = Page::new(&handle, deadline());
        let options = PageOptions {
            block: BlockOptions {
                resource_types: vec![],
                url_patterns: vec!["*pixel.png*".into()],
            },
            ..PageOptions::default()
        };
        page.apply(&options, None, None).await.expect("apply");
        page.goto(&site.url("/image"), &GotoOptions::default())
            .await
            .expect("goto");
    }
    assert_eq!(
        site.pixel_requests.load(Ordering::SeqCst),
        0,
        "blocked by URL pattern"
    );

    {
        let handle = browser.page().await;
        let page = Page::new(&handle, deadline());
        page.apply(
            &PageOptions {
                javascript: false,
                ..PageOptions::default()
            },
            None,
            None,
        )
        .await
        .expect("apply");
        page.goto(&site.url("/"), &GotoOptions::default())
            .await
            .expect("goto");
        let found = page.query("#noscript", &[]).await.expect("query");
        assert_eq!(found.len(), 1, "noscript content shows with JavaScript off");
    }

    {
        let handle = browser.page().await;
        let page = Page::new(&handle, deadline());
        for wait_until in [
            WaitUntil::Load,
            WaitUntil::DomContentLoaded,
            WaitUntil::NetworkIdle,
        ] {
            let goto = GotoOptions {
                wait_until,
                wait_for_selector: Some(WaitForSelector {
                    selector: "#late".into(),
                    visible: true,
                    hidden: false,
                    timeout_ms: Some(5000),
                }),
                ..GotoOptions::default()
            };
            page.goto(&site.url("/late"), &goto)
                .await
                .expect("waits for #late");
            assert_eq!(
                page.query("#late", &[]).await.expect("query").len(),
                1,
                "{wait_until:?}"
            );
        }
    }
    browser.close().await;
}

/// The page targets the browser has open now, by URL.
async fn open_page_urls(session: &BrowserSession) -> Vec<String> {
    use chromiumoxide::cdp::browser_protocol::target::GetTargetsParams;
    let targets = session
        .cdp()
        .execute(GetTargetsParams::default())
        .await
        .expect("the browser lists its targets");
    targets
        .result
        .target_infos
        .into_iter()
        .filter(|target| target.r#type == "page")
        .map(|target| target.url)
        .collect()
}

#[tokio::test]
async fn windows_a_page_opens_are_closed() {
    let site = FixtureSite::start().await;
    let browser = TestBrowser::start().await;
    let handle = browser.page().await;
    let page = Page::new(&handle, deadline());
    let beacon = site.url("/beacon");
    // Clicks carry a user gesture, which Chromium's popup blocker lets through.
    let html = format!(
        "<a id='link' target='_blank' href='{beacon}?link'>link</a> \
         <a id='noopener' target='_blank' rel='noopener' href='{beacon}?noopener'>noopener</a> \
         <button id='open' onclick=\"window.open('{beacon}?script')\">open</button>"
    );
    page.set_html(&html, &GotoOptions::default())
        .await
        .expect("the page loads");
    for selector in ["#link", "#noopener", "#open"] {
        page.click(selector).await.expect("the click");
    }
    // Each popup would load the beacon, which fetches its pixel every 50 ms while it is open.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let open = open_page_urls(&browser.session).await;
    assert!(
        open.iter().all(|url| !url.contains("/beacon")),
        "popups are still open: {open:?}"
    );
    let settled = site.pixel_requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        site.pixel_requests.load(Ordering::SeqCst),
        settled,
        "a popup is still fetching"
    );
    // The page that opened them is fine.
    assert_eq!(page.evaluate("1 + 1").await.expect("evaluate"), json!(2));
    browser.close().await;
}
