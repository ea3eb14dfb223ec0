//! Drives every page operation once and reports what it saw, as JSON. The integration test serves the
//! page at `params.url` (a form, a button that copies the input into `#out`, a tall body) and checks
//! each entry.

use pagewright_sdk::{
    Cookie, Error, Extractor, GotoOptions, MediaType, Output, Page, PdfOptions, ScreenshotOptions,
    Viewport, WaitUntil, log,
};
use serde::Deserialize;
use serde_json::json;

struct PageTour;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: String,
}

impl Extractor for PageTour {
    type Params = Params;

    fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
        log::info(format!("touring {}", params.url));
        let before = page.navigation();
        page.set_viewport(Viewport {
            width: 800,
            height: 600,
            device_scale_factor: 1.0,
            mobile: false,
        })?;
        page.set_user_agent("page-tour/1.0")?;
        page.set_extra_headers([("x-tour", "yes")])?;
        let navigation = page.goto_with(
            &params.url,
            &GotoOptions {
                wait_until: WaitUntil::Load,
                timeout_ms: Some(10_000),
                referrer: None,
            },
        )?;
        page.wait_for_selector("#name")?;
        page.type_text("#name", "wasm")?;
        page.click("#go")?;
        page.wait_for_visible("#out.done", Some(5_000))?;
        let out = page.query("#out", &["class", "data-missing"])?;
        page.scroll_to_bottom()?;
        let scrolled: f64 = page.evaluate("window.scrollY")?;
        page.scroll_by(0.0, -scrolled)?;
        page.scroll_to("#bottom")?;
        page.set_cookies(&[Cookie {
            name: "tour".into(),
            value: "cookie".into(),
            url: None,
            domain: None,
            path: None,
            secure: false,
            http_only: false,
            same_site: None,
            expires: None,
        }])?;
        let cookies: Vec<String> = page
            .cookies()?
            .into_iter()
            .map(|cookie| cookie.name)
            .collect();
        page.emulate_media(Some(MediaType::Print), [("prefers-color-scheme", "dark")])?;
        let print: bool = page.evaluate("matchMedia('print').matches")?;
        let dark: bool = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")?;
        let user_agent: String = page.evaluate("navigator.userAgent")?;
        let width: u32 = page.evaluate("window.innerWidth")?;
        let content = page.content()?;
        let text = page.text()?;
        page.wait_for_timeout(10)?;
        let png = page.screenshot(&ScreenshotOptions::default())?;
        let pdf = page.pdf(&PdfOptions::default())?;
        let replaced = page.set_content("<title>replaced</title><p id=p>inline</p>")?;
        let inline: String = page.evaluate("document.getElementById('p').textContent")?;
        Output::json(&json!({
            "navigation_before": before.map(|navigation| navigation.url),
            "status": navigation.status,
            "out": out.first().map(|element| json!({
                "text": element.text,
                "attributes": element.attributes,
            })),
            "scrolled": scrolled > 0.0,
            "cookies": cookies,
            "print": print,
            "dark": dark,
            "user_agent": user_agent,
            "width": width,
            "content_has_form": content.contains("<form"),
            "text_has_heading": text.contains("Tour"),
            "png_magic": png.starts_with(b"\x89PNG"),
            "pdf_magic": pdf.starts_with(b"%PDF"),
            "replaced_status": replaced.status,
            "inline": inline,
            "navigation_after": page.navigation().map(|navigation| navigation.url),
        }))
    }
}

pagewright_sdk::plugin!(PageTour: extractor);
