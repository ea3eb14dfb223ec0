//! The page tour (`tests/guests/page-tour`) as a plugin built before `pagewright:plugin@0.2.0`
//! existed: against 0.1.0, with wit-bindgen alone, no SDK. The integration test runs both tours
//! and expects the same report, so the host's 0.1.0 imports and exports keep their meaning.

// wit-bindgen's export glue is the component's FFI: `export_name` functions and unsafe lifting.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../../wit/plugin@0.1.0",
    world: "extractor-plugin",
});

use exports::pagewright::plugin::extractor::Guest;
use pagewright::plugin::log::{Level, log};
use pagewright::plugin::page::{
    Cookie, GotoOptions, MediaType, Page, PdfOptions, ScreenshotOptions, ScrollBy, ScrollTarget,
    Viewport, WaitUntil,
};
use pagewright::plugin::types::{Error, Output};
use serde_json::{Value, json};

struct PageTour;

fn evaluate(page: &Page, expression: &str) -> Result<Value, Error> {
    let json = page.evaluate(expression)?;
    serde_json::from_str(&json).map_err(|error| Error::Failed(error.to_string()))
}

impl Guest for PageTour {
    fn extract(page: &Page, params: String) -> Result<Output, Error> {
        let params: Value = serde_json::from_str(&params)
            .map_err(|error| Error::InvalidInput(error.to_string()))?;
        let url = params["url"]
            .as_str()
            .ok_or_else(|| Error::InvalidInput("params.url is missing".into()))?;
        log(Level::Info, &format!("touring {url}"));
        let before = page.navigation();
        page.set_viewport(Viewport {
            width: 800,
            height: 600,
            device_scale_factor: 1.0,
            mobile: false,
        })?;
        page.set_user_agent("page-tour/1.0")?;
        page.set_extra_headers(&[("x-tour".into(), "yes".into())])?;
        let navigation = page.goto(
            url,
            &GotoOptions {
                wait_until: WaitUntil::Load,
                timeout_ms: Some(10_000),
                referrer: None,
            },
        )?;
        page.wait_for_selector("#name", false, None)?;
        page.type_text("#name", "wasm")?;
        page.click("#go")?;
        page.wait_for_selector("#out.done", true, Some(5_000))?;
        let out = page.query("#out", &["class".into(), "data-missing".into()])?;
        page.scroll(&ScrollTarget::Bottom)?;
        let scrolled = evaluate(page, "window.scrollY")?.as_f64().unwrap_or(0.0);
        page.scroll(&ScrollTarget::By(ScrollBy {
            x: 0.0,
            y: -scrolled,
        }))?;
        page.scroll(&ScrollTarget::Selector("#bottom".into()))?;
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
        page.emulate_media(
            Some(MediaType::Print),
            &[("prefers-color-scheme".into(), "dark".into())],
        )?;
        let print = evaluate(page, "matchMedia('print').matches")?;
        let dark = evaluate(page, "matchMedia('(prefers-color-scheme: dark)').matches")?;
        let user_agent = evaluate(page, "navigator.userAgent")?;
        let width = evaluate(page, "window.innerWidth")?;
        let content = page.content()?;
        let text = evaluate(page, "document.body ? document.body.innerText : ''")?;
        page.wait_for_timeout(10)?;
        let png = page.screenshot(&ScreenshotOptions {
            format: pagewright::plugin::page::ImageFormat::Png,
            quality: None,
            full_page: false,
            clip: None,
            selector: None,
            omit_background: false,
        })?;
        let pdf = page.pdf(&PdfOptions {
            paper: None,
            width: None,
            height: None,
            landscape: false,
            print_background: false,
            scale: None,
            margin: pagewright::plugin::page::Margins {
                top: None,
                right: None,
                bottom: None,
                left: None,
            },
            page_ranges: None,
            header_template: None,
            footer_template: None,
            prefer_css_page_size: false,
        })?;
        let replaced = page.set_content(
            "<title>replaced</title><p id=p>inline</p>",
            &GotoOptions {
                wait_until: WaitUntil::Load,
                timeout_ms: None,
                referrer: None,
            },
        )?;
        let inline = evaluate(page, "document.getElementById('p').textContent")?;
        let report = json!({
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
            "text_has_heading": text.as_str().unwrap_or_default().contains("Tour"),
            "png_magic": png.starts_with(b"\x89PNG"),
            "pdf_magic": pdf.starts_with(b"%PDF"),
            "replaced_status": replaced.status,
            "inline": inline,
            "navigation_after": page.navigation().map(|navigation| navigation.url),
        });
        Ok(Output::Json(report.to_string()))
    }
}

export!(PageTour);
