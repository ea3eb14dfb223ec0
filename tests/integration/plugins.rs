//! Plugins: the built-ins behind the API, the page resource driven by a guest, and every hostile guest
//! fixture (trap, infinite loop, memory bomb, 100 MB output, bad arguments) answered with its own error
//! while other jobs keep succeeding.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FixtureSite, TestServer, error_code, error_message, eventually, png_size};

/// A job that must still succeed next to a failing plugin.
async fn screenshot_works(server: &TestServer, site: &FixtureSite) {
    let response = server
        .post("/v1/screenshot", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(response.status(), 200, "a normal screenshot still works");
    let bytes = response.bytes().await.expect("png body");
    assert_eq!(png_size(&bytes), (1280, 720));
}

#[tokio::test]
async fn builtin_plugins_serve_the_endpoints() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(&["stamp"], &[]).await;

    let response = server
        .post(
            "/v1/screenshot",
            json!({ "url": site.url("/"), "options": { "format": "jpeg", "quality": 50 } }),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let fuel: u64 = response.headers()["x-pagewright-plugin-fuel"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("fuel is a number");
    assert!(fuel > 0, "the plugin's fuel is reported");
    assert!(response.headers().contains_key("x-pagewright-plugin-ms"));
    assert!(
        response
            .bytes()
            .await
            .expect("body")
            .starts_with(&[0xFF, 0xD8])
    );

    let response = server
        .post(
            "/v1/pdf",
            json!({ "url": site.url("/"), "options": { "margin": { "top": "1cm" } } }),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert!(response.bytes().await.expect("body").starts_with(b"%PDF"));

    let content: Value = server
        .post("/v1/content", json!({ "url": site.url("/redirect") }))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(content["url"], site.url("/"));
    assert_eq!(content["status"], 200);
    assert!(
        content["html"]
            .as_str()
            .expect("html")
            .contains("Hello pagewright")
    );

    let text: Value = server
        .post(
            "/v1/run/content",
            json!({ "url": site.url("/"), "params": { "html": false, "text": true } }),
        )
        .await
        .json()
        .await
        .expect("json");
    assert!(text.get("html").is_none());
    assert!(
        text["text"]
            .as_str()
            .expect("text")
            .contains("Hello pagewright")
    );

    let scraped: Value = server
        .post(
            "/v1/scrape",
            json!({
                "url": site.url("/"),
                "options": { "fields": {
                    "title": "#title",
                    "missing": "#nothing",
                    "links": { "selector": "a.link", "attributes": ["href", "data-n", "data-none"] },
                    "first": { "selector": "a.link", "all": false },
                } }
            }),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(scraped["title"], "Hello pagewright");
    assert_eq!(scraped["missing"], Value::Null);
    assert_eq!(scraped["first"], "One");
    assert_eq!(
        scraped["links"],
        json!([
            { "text": "One", "attributes": { "href": "/one", "data-n": "1", "data-none": null } },
            { "text": "Two", "attributes": { "href": "/two", "data-n": "2", "data-none": null } },
        ])
    );

    let links: Value = server
        .post("/v1/run/links", json!({ "url": site.url("/") }))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        links["links"],
        json!([
            { "url": site.url("/one"), "text": "One" },
            { "url": site.url("/two"), "text": "Two" },
        ])
    );

    // Bad params are the caller's fault, named by the plugin.
    let response = server
        .post(
            "/v1/scrape",
            json!({ "url": site.url("/"), "options": { "feilds": {} } }),
        )
        .await;
    let message = error_message(response, 400, "invalid_input").await;
    assert!(message.contains("unknown field `feilds`"), "{message}");

    let response = server
        .post("/v1/scrape", json!({ "url": site.url("/") }))
        .await;
    let message = error_message(response, 400, "invalid_input").await;
    assert!(message.contains("missing field `fields`"), "{message}");

    // Unknown plugins and plugins without the role asked for.
    assert_eq!(
        error_code(
            server
                .post("/v1/run/nope", json!({ "url": site.url("/") }))
                .await,
            404
        )
        .await,
        "plugin_not_found"
    );
    assert_eq!(
        error_code(
            server
                .post("/v1/run/stamp", json!({ "url": site.url("/") }))
                .await,
            400
        )
        .await,
        "plugin_role_missing"
    );
    assert_eq!(
        error_code(
            server
                .post(
                    "/v1/run/links",
                    json!({ "url": site.url("/"), "scripts": ["links"] })
                )
                .await,
            400
        )
        .await,
        "plugin_role_missing"
    );
    server
        .assert_metric("pagewright_plugin_calls_total{plugin=\"links\",outcome=\"ok\"} 1")
        .await;
}

#[tokio::test]
async fn a_guest_drives_every_page_operation_in_both_wit_versions() {
    let site = FixtureSite::start().await;
    // The same tour, built against 0.2.0 with the SDK and against 0.1.0 with wit-bindgen alone.
    let server = TestServer::with_guests(&["page-tour", "page-tour-v0-1"], &[]).await;
    let mut reports = Vec::new();
    for guest in ["page-tour", "page-tour-v0-1"] {
        let response = server
            .post(
                &format!("/v1/run/{guest}"),
                json!({ "url": site.url("/"), "params": { "url": site.url("/tour") } }),
            )
            .await;
        assert_eq!(
            response.status(),
            200,
            "{guest}: {:?}",
            response.text().await
        );
        let mut tour: Value = response.json().await.expect("json");
        let since_0_2 = tour
            .as_object_mut()
            .and_then(|tour| tour.remove("since_0_2"));
        reports.push((guest, tour, since_0_2));
    }
    for (guest, tour, _) in &reports {
        assert_eq!(
            tour["navigation_before"],
            site.url("/"),
            "{guest}: the host's navigation is visible"
        );
        assert_eq!(tour["status"], 200);
        assert_eq!(
            tour["out"],
            json!({ "text": "hello wasm", "attributes": [["class", "done"], ["data-missing", null]] })
        );
        assert_eq!(tour["scrolled"], true);
        assert_eq!(tour["cookies"], json!(["tour"]));
        assert_eq!(tour["print"], true);
        assert_eq!(tour["dark"], true);
        assert_eq!(tour["user_agent"], "page-tour/1.0");
        assert_eq!(tour["width"], 800);
        assert_eq!(tour["content_has_form"], true);
        assert_eq!(tour["text_has_heading"], true);
        assert_eq!(tour["png_magic"], true);
        assert_eq!(tour["pdf_magic"], true);
        assert_eq!(tour["replaced_status"], 200);
        assert_eq!(tour["inline"], "inline");
    }
    assert_eq!(
        reports[0].1, reports[1].1,
        "0.1.0 and 0.2.0 tours see the same page"
    );
    assert!(reports[1].2.is_none());
    let since_0_2 = reports[0]
        .2
        .clone()
        .expect("the 0.2.0 tour reports its additions");
    assert_eq!(
        since_0_2,
        json!({
            "items": 3,
            "attribute_lookup": true,
            "tags": ["h1", "li", "li", "li"],
            "timezone": "Asia/Tokyo",
            "language": "fr-FR",
            "latitude": 48.85,
            "touch_points": 5,
            "png_width": 400,
            "pdf_title": true,
            "pdf_outline": true,
        })
    );
    let listed: Value = server.get("/v1/plugins").await.json().await.expect("json");
    let wit_of = |name: &str| {
        listed["plugins"]
            .as_array()
            .and_then(|plugins| plugins.iter().find(|plugin| plugin["name"] == name))
            .map(|plugin| plugin["versions"][0]["wit"].clone())
    };
    assert_eq!(wit_of("page-tour-v0-1"), Some(json!("0.1.0")), "{listed}");
    assert_eq!(wit_of("page-tour"), Some(json!("0.2.0")));
    assert_eq!(
        wit_of("screenshot"),
        Some(json!("0.2.0")),
        "the built-ins moved"
    );

    // The page went back to the pool reset: the next job sees none of the tour's overrides.
    let echo: Value = server
        .post(
            "/v1/run/content",
            json!({ "url": site.url("/echo"), "params": { "text": true, "html": false } }),
        )
        .await
        .json()
        .await
        .expect("json");
    let headers: Value =
        serde_json::from_str(echo["text"].as_str().expect("text")).expect("echoed headers");
    assert!(
        headers.get("x-tour").is_none(),
        "extra headers were reset: {headers}"
    );
    assert_ne!(headers["user-agent"], "page-tour/1.0");
}

#[tokio::test]
async fn page_operations_with_bad_arguments_are_refused_not_fatal() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(&["bad-args"], &[]).await;
    let response = server
        .post("/v1/run/bad-args", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let report: Value = response.json().await.expect("json");
    let report = report.as_object().expect("a report object");
    for (operation, outcome) in report {
        let outcome = outcome.as_str().expect("outcome text");
        let expected = match operation.as_str() {
            "still-usable" => "ok",
            "click-missing-element" => "not-found",
            "evaluate-syntax-error" => "script",
            "wait-too-long" => "timeout",
            _ => "invalid-input",
        };
        assert!(
            outcome.starts_with(expected),
            "{operation}: expected {expected}, got {outcome}"
        );
    }
    assert_eq!(report.len(), 22, "every check ran: {report:?}");
    screenshot_works(&server, &site).await;
}

#[tokio::test]
async fn a_trapping_plugin_is_a_422_and_the_server_carries_on() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(&["trap"], &[]).await;
    let response = server
        .post("/v1/run/trap", json!({ "url": site.url("/") }))
        .await;
    let message = error_message(response, 422, "plugin_trapped").await;
    assert!(
        message.contains("this plugin always panics"),
        "the panic message is quoted: {message}"
    );
    screenshot_works(&server, &site).await;
    server
        .assert_metric("pagewright_plugin_calls_total{plugin=\"trap\",outcome=\"trapped\"} 1")
        .await;
}

#[tokio::test]
async fn an_infinite_loop_runs_out_of_fuel() {
    let site = FixtureSite::start().await;
    // The default budget (1e10) lasts ~0.6 s of CPU here, so the screenshot runs while it spins.
    let server = TestServer::with_guests(&["spin"], &[]).await;
    let (spun, ()) = tokio::join!(
        server.post("/v1/run/spin", json!({ "url": site.url("/") })),
        async {
            eventually("the loop runs", Duration::from_secs(10), || async {
                let status = server.get_json("/v1/status").await;
                (status["plugin_host"]["instances"].as_u64() >= Some(1)).then_some(())
            })
            .await;
            screenshot_works(&server, &site).await;
        }
    );
    // The error carries what the plugin cost, as a success would: all of its budget.
    let fuel: u64 = spun.headers()["x-pagewright-plugin-fuel"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a number");
    assert!(fuel >= 10_000_000_000, "{fuel}");
    assert!(spun.headers().contains_key("x-pagewright-plugin-ms"));
    assert_eq!(error_code(spun, 422).await, "plugin_out_of_fuel");
    server
        .assert_metric("pagewright_plugin_calls_total{plugin=\"spin\",outcome=\"out_of_fuel\"} 1")
        .await;
}

#[tokio::test]
async fn an_infinite_loop_with_fuel_to_spare_hits_its_deadline() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(
        &["spin"],
        &[
            "--plugin-fuel",
            "1000000000000000",
            "--plugin-timeout-ms",
            "2000",
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let response = server
        .post("/v1/run/spin", json!({ "url": site.url("/") }))
        .await;
    let message = error_message(response, 408, "plugin_timeout").await;
    assert!(message.contains("2 s"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped near its limit"
    );

    // When the job's deadline comes first, it is the one that stops the plugin.
    let started = std::time::Instant::now();
    let response = server
        .post(
            "/v1/run/spin",
            json!({ "url": site.url("/"), "timeout_ms": 1000 }),
        )
        .await;
    assert_eq!(error_code(response, 408).await, "plugin_timeout");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "the job's 1 s deadline, not the plugin's 2 s: {:?}",
        started.elapsed()
    );
    screenshot_works(&server, &site).await;
}

#[tokio::test]
async fn bad_builtin_options_are_refused_before_any_browser_work() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let started = std::time::Instant::now();
    for (endpoint, options) in [
        ("/v1/screenshot", json!({ "format": "png", "quality": 50 })),
        (
            "/v1/screenshot",
            json!({ "full_page": true, "clip": { "x": 0, "y": 0, "width": 10, "height": 10 } }),
        ),
        ("/v1/pdf", json!({ "scale": 50 })),
    ] {
        let response = server
            .post(
                endpoint,
                json!({ "url": site.url("/slow?ms=5000"), "options": options }),
            )
            .await;
        assert_eq!(error_code(response, 400).await, "invalid_input");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no navigation was waited for"
    );
    server
        .assert_metric("pagewright_pool_pages_created_total 0")
        .await;
}

/// The page, not the plugin, took the job's time: a screenshot of a page that spins in JavaScript
/// hangs in the page operation until the job's deadline. Here the plugin, returning from that
/// operation, must also wait for the one CPU slot, which a spinning urgent plugin holds: the call is
/// still stopped at the deadline, and the answer is the page's timeout (`render_timeout`), not the
/// plugin's (this interleaving used to answer `plugin_timeout`).
#[tokio::test]
async fn a_page_that_uses_up_the_jobs_time_is_a_render_timeout_even_when_its_plugin_waits_for_the_cpu()
 {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(
        &["spin"],
        &[
            "--plugin-workers",
            "1",
            "--plugin-fuel",
            "1000000000000000",
            "--plugin-timeout-ms",
            "60000",
        ],
    )
    .await;
    let screenshot = server.post(
        "/v1/screenshot",
        json!({ "url": site.url("/spin"), "timeout_ms": 3000, "priority": { "class": "cold" } }),
    );
    let spinner = async {
        // The screenshot plugin is blocked in its page operation: an instance, and no CPU slot held
        // (seen twice in a row, so not the moment between taking an instance and starting).
        let seen = std::cell::Cell::new(0);
        eventually(
            "the screenshot waits on the page",
            Duration::from_secs(10),
            || async {
                let status = server.get_json("/v1/status").await;
                let host = &status["plugin_host"];
                let blocked = host["instances"] == 1 && host["cpu"]["busy"] == 0;
                seen.set(if blocked { seen.get() + 1 } else { 0 });
                (seen.get() >= 2).then_some(())
            },
        )
        .await;
        let client = server.client.clone();
        let url = format!("{}/v1/run/spin", server.base);
        let body =
            json!({ "url": site.url("/"), "timeout_ms": 10000, "priority": { "class": "urgent" } });
        tokio::spawn(async move { client.post(url).json(&body).send().await }).abort_handle()
    };
    let (response, spinning) = tokio::join!(screenshot, spinner);
    let message = error_message(response, 408, "render_timeout").await;
    assert!(message.contains("capture"), "{message}");
    assert!(
        message.starts_with("in plugin `screenshot`: "),
        "named: {message}"
    );
    // The spinning job goes with its client.
    spinning.abort();
}

#[tokio::test]
async fn a_memory_bomb_stops_at_the_memory_limit() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(&["memory-bomb"], &["--plugin-memory-mib", "32"]).await;
    let response = server
        .post("/v1/run/memory-bomb", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(error_code(response, 422).await, "plugin_memory_limit");
    screenshot_works(&server, &site).await;
}

#[tokio::test]
async fn a_100_mb_output_is_refused_as_too_large() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(&["huge-output"], &[]).await;
    let response = server
        .post("/v1/run/huge-output", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(error_code(response, 413).await, "plugin_output_too_large");
    screenshot_works(&server, &site).await;
}

#[tokio::test]
async fn page_script_plugins_run_before_and_after_load() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(&["stamp"], &[]).await;
    let content: Value = server
        .post(
            "/v1/content",
            json!({
                "url": site.url("/"),
                "scripts": [{ "plugin": "stamp", "params": { "stamp": "from-the-plugin" } }],
            }),
        )
        .await
        .json()
        .await
        .expect("json");
    let html = content["html"].as_str().expect("html");
    assert!(html.contains(r#"data-stamp="from-the-plugin""#), "{html}");

    // A page script's bad params fail the job with the plugin's message.
    let response = server
        .post(
            "/v1/content",
            json!({ "url": site.url("/"), "scripts": ["stamp"] }),
        )
        .await;
    assert_eq!(error_code(response, 400).await, "invalid_input");
}

#[tokio::test]
async fn native_builtins_serve_without_plugins() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&["--native-builtins"]).await;
    let response = server
        .post("/v1/screenshot", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("x-pagewright-plugin-fuel"));
    assert_eq!(png_size(&response.bytes().await.expect("png")), (1280, 720));
    let content: Value = server
        .post("/v1/content", json!({ "url": site.url("/") }))
        .await
        .json()
        .await
        .expect("json");
    assert!(
        content["html"]
            .as_str()
            .expect("html")
            .contains("Hello pagewright")
    );
}

#[tokio::test]
async fn a_client_that_goes_away_mid_plugin_gets_its_page_reset_and_reused() {
    let site = FixtureSite::start().await;
    let server = TestServer::with_guests(
        &["spin"],
        &[
            "--plugin-fuel",
            "1000000000000000",
            "--plugin-timeout-ms",
            "60000",
        ],
    )
    .await;
    // The client gives up while the plugin spins: the request is dropped, the plugin's worker task is
    // aborted, and its lease is dropped on the plugin workers.
    let gave_up = server
        .client
        .post(format!("{}/v1/run/spin", server.base))
        .json(&json!({ "url": site.url("/") }))
        .timeout(Duration::from_millis(1_500))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    eventually(
        "the page came back and its render slot freed",
        Duration::from_secs(10),
        || async {
            let status = server.get_json("/v1/status").await;
            let pool = &status["pool"];
            (pool["leased_pages"] == 0
                && pool["returning_pages"] == 0
                && pool["running_renders"] == 0)
                .then_some(())
        },
    )
    .await;
    screenshot_works(&server, &site).await;
    // The spinning plugin was not in a page operation, so its page was reset and served the next job.
    server
        .assert_metric("pagewright_pool_pages_created_total 1")
        .await;
    server
        .assert_metric("pagewright_pool_pages_reused_total 1")
        .await;
}

#[tokio::test]
async fn a_plugin_of_ones_own_runs_without_a_page_when_given_none() {
    let server = TestServer::with_guests(&["noop", "title", "stamp"], &[]).await;
    // Neither `url` nor `html`: the extractor runs on the plugin workers alone.
    let response = server.post("/v1/run/noop", json!({})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("text"), "");
    // Its page calls fail, as the plugin is told; this one answers that as an invalid input.
    let response = server.post("/v1/run/title", json!({})).await;
    let message = error_message(response, 400, "invalid_input").await;
    assert!(message.contains("no page"), "{message}");
    // As an async job too, and no page was ever opened for them.
    let job = server.post("/v1/jobs", json!({ "plugin": "noop" })).await;
    assert_eq!(job.status(), 202);
    let job: Value = job.json().await.expect("a job");
    let id = job["id"].as_str().expect("an id").to_owned();
    eventually(
        "the page-less job succeeds",
        Duration::from_secs(30),
        || async {
            let job = server.get_json(&format!("/v1/jobs/{id}")).await;
            (job["state"] == "succeeded").then_some(())
        },
    )
    .await;
    assert_eq!(server.get_json("/v1/status").await["pool"]["live_pages"], 0);

    // The built-ins render a page, and page scripts need one.
    for path in ["/v1/run/content", "/v1/content", "/v1/screenshot"] {
        let message =
            error_message(server.post(path, json!({})).await, 400, "invalid_request").await;
        assert!(message.contains("`url` or `html`"), "{path}: {message}");
    }
    let message = error_message(
        server
            .post("/v1/run/noop", json!({ "scripts": ["stamp"] }))
            .await,
        400,
        "invalid_input",
    )
    .await;
    assert!(message.contains("page scripts need a page"), "{message}");
    server.shutdown().await;
}
