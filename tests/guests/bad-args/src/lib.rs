//! Calls page operations with bad arguments and reports, as JSON, the error each one got:
//! `{"operation": "error-case: message"}`. Every one must be refused by the host with an error the
//! plugin can see, never a trap or a hang, and the page must stay usable (the last entry reads it).

use std::collections::BTreeMap;

use pagewright_sdk::{
    Clip, Cookie, Error, Extractor, GotoOptions, ImageFormat, Output, Page, PdfMetadata,
    PdfOptions, ScreenshotOptions, Viewport,
};

struct BadArgs;

fn outcome<T>(result: Result<T, Error>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(error) => {
            let case = match &error {
                Error::InvalidInput(_) => "invalid-input",
                Error::Timeout(_) => "timeout",
                Error::Navigation(_) => "navigation",
                Error::NotFound(_) => "not-found",
                Error::Script(_) => "script",
                Error::TooLarge(_) => "too-large",
                Error::Crashed(_) => "crashed",
                Error::Failed(_) => "failed",
            };
            format!("{case}: {}", error.message())
        }
    }
}

impl Extractor for BadArgs {
    type Params = serde_json::Value;

    fn extract(page: Page<'_>, _params: serde_json::Value) -> Result<Output, Error> {
        let mut report = BTreeMap::new();
        let mut check = |name: &str, result: String| {
            report.insert(name.to_owned(), result);
        };
        check("goto-not-a-url", outcome(page.goto("not a url")));
        check("goto-file-scheme", outcome(page.goto("file:///etc/passwd")));
        check(
            "goto-timeout-zero",
            outcome(page.goto_with(
                "http://127.0.0.1:9/",
                &GotoOptions {
                    timeout_ms: Some(0),
                    ..GotoOptions::default()
                },
            )),
        );
        check("query-invalid-selector", outcome(page.query("a[", &[])));
        check("click-invalid-selector", outcome(page.click("###")));
        check(
            "click-missing-element",
            outcome(page.click("#no-such-element")),
        );
        check(
            "wait-invalid-selector",
            outcome(page.wait_for_visible("a[", Some(100))),
        );
        check(
            "viewport-zero",
            outcome(page.set_viewport(Viewport {
                width: 0,
                height: 0,
                ..Viewport::default()
            })),
        );
        check(
            "viewport-huge",
            outcome(page.set_viewport(Viewport {
                width: 100_000,
                height: 10,
                ..Viewport::default()
            })),
        );
        check("user-agent-empty", outcome(page.set_user_agent("")));
        check(
            "header-invalid-name",
            outcome(page.set_extra_headers([("bad header\n", "value")])),
        );
        check(
            "cookie-without-name",
            outcome(page.set_cookies(&[Cookie {
                name: String::new(),
                value: "v".into(),
                url: Some("not a url".into()),
                domain: None,
                path: None,
                secure: false,
                http_only: false,
                same_site: None,
                expires: None,
            }])),
        );
        check(
            "screenshot-png-quality",
            outcome(page.screenshot(&ScreenshotOptions {
                format: ImageFormat::Png,
                quality: Some(50),
                ..ScreenshotOptions::default()
            })),
        );
        check(
            "screenshot-negative-clip",
            outcome(page.screenshot(&ScreenshotOptions {
                clip: Some(Clip {
                    x: 0.0,
                    y: 0.0,
                    width: -5.0,
                    height: 10.0,
                }),
                ..ScreenshotOptions::default()
            })),
        );
        check(
            "pdf-scale",
            outcome(page.pdf(&PdfOptions {
                scale: Some(50.0),
                ..PdfOptions::default()
            })),
        );
        check(
            "screenshot-scale",
            outcome(page.screenshot(&ScreenshotOptions {
                scale: Some(10.0),
                ..ScreenshotOptions::default()
            })),
        );
        check(
            "pdf-metadata-date",
            outcome(page.pdf(&PdfOptions {
                metadata: Some(PdfMetadata {
                    creation_date: Some("yesterday".into()),
                    ..PdfMetadata::default()
                }),
                ..PdfOptions::default()
            })),
        );
        check("timezone", outcome(page.set_timezone("Mars/Olympus Mons")));
        check(
            "wait-for-function-empty",
            outcome(page.wait_for_function("", None)),
        );
        check(
            "evaluate-syntax-error",
            outcome(page.evaluate_json("this is not javascript")),
        );
        check("wait-too-long", outcome(page.wait_for_timeout(u32::MAX)));
        check("still-usable", outcome(page.evaluate::<u32>("6 * 7")));
        Output::json(&report)
    }
}

pagewright_sdk::plugin!(BadArgs: extractor);
