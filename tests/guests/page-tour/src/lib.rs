//! Drives every page operation once and reports what it saw, as JSON. The integration test serves the
//! page at `params.url` (a form, a button that copies the input into `#out`, a tall body) and checks
//! each entry.

use pagewright_sdk::{
    Cookie, Error, Extractor, GotoOptions, MediaType, Output, Page, PdfMetadata, PdfOptions,
    ScreenshotOptions, Viewport, WaitUntil, log,
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
                ..GotoOptions::default()
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
        let since_0_2 = since_0_2(page)?;
        Output::json(&json!({
            "since_0_2": since_0_2,
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

/// The operations `pagewright:plugin@0.2.0` added.
fn since_0_2(page: Page<'_>) -> Result<serde_json::Value, Error> {
    page.set_content(
        "<h1 id=title class=big>Report</h1><h2>Part</h2><p id=spin>loading</p><script>setTimeout(() => { \
           document.getElementById('spin').remove(); window.ready = true; \
           document.body.insertAdjacentHTML('beforeend', '<ul><li>a</li><li>b</li><li>c</li></ul>'); \
         }, 100)</script>",
    )?;
    page.wait_for_hidden("#spin", Some(5_000))?;
    page.wait_for_function("window.ready === true", Some(5_000))?;
    let items = page.count("li")?;
    let heading = page.query("h1", &["class", "id"])?;
    let class = heading.first().map(|heading| {
        heading.attribute("id") == Some("title")
            && heading.attribute("class") == Some("big")
            && heading.attribute("lang").is_none()
    });
    let tags: Vec<String> = page
        .query("li, h1", &[])?
        .into_iter()
        .map(|element| element.tag_name)
        .collect();
    page.set_timezone("Asia/Tokyo")?;
    page.set_locale("fr-FR")?;
    page.set_geolocation(48.85, 2.35)?;
    page.set_touch(true)?;
    let timezone: String = page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")?;
    let language: String = page.evaluate("navigator.language")?;
    let latitude: serde_json::Value = page.evaluate(
        "new Promise(done => navigator.geolocation.getCurrentPosition( \
           position => done(position.coords.latitude), error => done(error.message)))",
    )?;
    let touch_points: u32 = page.evaluate("navigator.maxTouchPoints")?;
    let png = page.screenshot(&ScreenshotOptions {
        scale: Some(0.5),
        ..ScreenshotOptions::default()
    })?;
    let pdf = page.pdf(&PdfOptions {
        outline: true,
        metadata: Some(PdfMetadata {
            title: Some("Tour report".into()),
            ..PdfMetadata::default()
        }),
        ..PdfOptions::default()
    })?;
    let contains = |needle: &[u8]| pdf.windows(needle.len()).any(|window| window == needle);
    Ok(json!({
        "items": items,
        "attribute_lookup": class,
        "tags": tags,
        "timezone": timezone,
        "language": language,
        "latitude": latitude,
        "touch_points": touch_points,
        // A PNG's width is the big-endian u32 at bytes 16..20.
        "png_width": png.get(16..20).map(|width| u32::from_be_bytes([width[0], width[1], width[2], width[3]])),
        "pdf_title": contains(b"Tour report"),
        "pdf_outline": contains(b"/Outlines"),
    }))
}

pagewright_sdk::plugin!(PageTour: extractor);
