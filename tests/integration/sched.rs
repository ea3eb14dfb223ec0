//! The scheduler in front of the renderer: 429 when the queue is full, `/v1/pressure` for load
//! balancers, queue-wait deadlines, and priorities deciding who gets a free slot.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestServer, error_message, eventually};

/// One render slot, so a slow job holds everything else in the queue.
async fn one_slot_server(queue_capacity: &str) -> TestServer {
    TestServer::start(&[
        "--max-concurrent-renders",
        "1",
        "--max-pages",
        "1",
        "--queue-capacity",
        queue_capacity,
    ])
    .await
}

/// A job that holds its slot for `ms` milliseconds (waiting for an element that never appears),
/// then fails with 408.
fn slow_job(ms: u64) -> Value {
    json!({ "html": "<p>slow</p>", "goto": { "wait_for_selector": { "selector": "#never" } },
            "timeout_ms": ms })
}

/// Starts a [`slow_job`] and waits until it holds the (only) run slot; its answer, later.
async fn occupy_the_slot(
    server: &TestServer,
    ms: u64,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let (client, base) = (server.client.clone(), server.base.clone());
    let slow = tokio::spawn(async move {
        client
            .post(format!("{base}/v1/content"))
            .json(&slow_job(ms))
            .send()
            .await
    });
    wait_until(server, "one running", |s| s["running"] == 1).await;
    slow
}

/// Holds the only slot with a slow job, queues `jobs` (`/v1/content` bodies) one after the other,
/// frees the slot, and returns the jobs' names in the order they finished, all with 200.
async fn finishing_order<const N: usize>(
    server: &TestServer,
    jobs: [(&'static str, Value); N],
) -> Vec<&'static str> {
    let slow = occupy_the_slot(server, 1_000).await;
    let (finished_tx, mut finished) = tokio::sync::mpsc::unbounded_channel();
    let mut running = Vec::new();
    for (queued, (name, body)) in jobs.into_iter().enumerate() {
        let (client, base, finished_tx) = (
            server.client.clone(),
            server.base.clone(),
            finished_tx.clone(),
        );
        running.push(tokio::spawn(async move {
            let response = client
                .post(format!("{base}/v1/content"))
                .json(&body)
                .send()
                .await
                .expect("answered");
            assert_eq!(response.status(), 200, "{name}");
            finished_tx.send(name).expect("send");
        }));
        wait_until(server, "the job queued", |s| s["queued"] == queued + 1).await;
    }
    let _ = slow.await;
    for job in running {
        job.await.expect("job");
    }
    std::iter::from_fn(|| finished.try_recv().ok()).collect()
}

async fn wait_until(server: &TestServer, what: &str, done: impl Fn(&Value) -> bool) {
    status_until(server, what, |status| done(&status["scheduler"])).await;
}

#[tokio::test]
async fn a_full_queue_answers_429_and_pressure_says_route_elsewhere() {
    let server = one_slot_server("1").await;
    let pressure = server.get("/v1/pressure").await;
    assert_eq!(pressure.status(), 200);
    let slow = occupy_the_slot(&server, 2_000).await;
    let queued = tokio::spawn({
        let (client, base) = (server.client.clone(), server.base.clone());
        async move {
            client
                .post(format!("{base}/v1/content"))
                .json(&json!({ "html": "<p>queued</p>" }))
                .send()
                .await
        }
    });
    wait_until(&server, "one queued", |s| s["queued"] == 1).await;

    let pressure = server.get("/v1/pressure").await;
    assert_eq!(pressure.status(), 503);
    let body: Value = pressure.json().await.expect("JSON");
    assert_eq!(body["accepting"], false);
    assert_eq!(body["queue"]["queued"], 1);
    assert_eq!(body["queue"]["running"], 1);

    let refused = server
        .post("/v1/content", json!({ "html": "<p>one too many</p>" }))
        .await;
    assert_eq!(refused.headers()["retry-after"], "1");
    error_message(refused, 429, "queue_full").await;

    let slow = slow.await.expect("task").expect("answered");
    assert_eq!(slow.status(), 408);
    let queued = queued.await.expect("task").expect("answered");
    assert_eq!(
        queued.status(),
        200,
        "the queued job ran once the slot was free"
    );
    assert_eq!(server.get("/v1/pressure").await.status(), 200);
    server
        .assert_metric("pagewright_sched_rejections_total{reason=\"queue_full\"} 1")
        .await;
    server
        .assert_metric("pagewright_sched_wait_seconds_count{band=\"hot\"} 2")
        .await;
    server.assert_metric("pagewright_sched_running 0").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_job_that_waits_past_its_queue_deadline_never_starts() {
    let server = one_slot_server("8").await;
    let slow = occupy_the_slot(&server, 1_500).await;
    let response = server
        .post(
            "/v1/content",
            json!({ "html": "<p>impatient</p>", "queue_timeout_ms": 200 }),
        )
        .await;
    let message = error_message(response, 503, "queue_timeout").await;
    assert!(message.contains("not started"), "{message}");
    assert_eq!(
        server.get_json("/v1/status").await["scheduler"]["queued"],
        0
    );
    server
        .assert_metric("pagewright_sched_rejections_total{reason=\"queue_timeout\"} 1")
        .await;
    let _ = slow.await;

    // Bad scheduling fields are refused like any other.
    let response = server
        .post(
            "/v1/content",
            json!({ "html": "x", "priority": { "class": "lukewarm" } }),
        )
        .await;
    error_message(response, 400, "invalid_request").await;
    let response = server
        .post(
            "/v1/content",
            json!({ "html": "x", "priority": { "number": 51 } }),
        )
        .await;
    error_message(response, 400, "invalid_request").await;
    let response = server
        .post("/v1/content", json!({ "html": "x", "tenant": "a/b" }))
        .await;
    error_message(response, 400, "invalid_request").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_free_slot_goes_to_the_highest_priority() {
    let server = one_slot_server("8").await;
    let jobs = ["cold", "hot", "urgent"].map(|class| {
        let body = json!({ "html": format!("<p>{class}</p>"), "priority": { "class": class } });
        (class, body)
    });
    assert_eq!(
        finishing_order(&server, jobs).await,
        ["urgent", "hot", "cold"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_scorer_plugin_decides_the_order_and_a_failing_one_falls_back() {
    const ADMIN: &str = "sched-admin-token-0123456789";
    let site = crate::harness::FixtureSite::start().await;
    let server = TestServer::with_guests(
        &["stamp", "spin-scorer", "noop"],
        &[
            "--max-concurrent-renders",
            "1",
            "--max-pages",
            "1",
            "--admin-token",
            ADMIN,
        ],
    )
    .await;
    // `stamp` scores a job by the length of its URL: 200 or more is the urgent band.
    let set_scorer = |plugin: &'static str| {
        server
            .client
            .put(format!("{}/v1/scheduler/scorer", server.base))
            .bearer_auth(ADMIN)
            .json(&json!({ "plugin": plugin }))
            .send()
    };
    let response = set_scorer("stamp").await.expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        server.get_json("/v1/scheduler").await["scorer"],
        "stamp@0.0.0"
    );
    let response = set_scorer("noop").await.expect("answered");
    error_message(response, 400, "plugin_role_missing").await;

    // The urgent class with a short URL, then the cold class with a long one: the scorer's order
    // is the reverse of the built-in one.
    let long_url = format!("{}?{}", site.url("/"), "x".repeat(250));
    let jobs = [
        (
            "short urgent",
            json!({ "url": site.url("/"), "priority": { "class": "urgent" } }),
        ),
        (
            "long cold",
            json!({ "url": long_url, "priority": { "class": "cold" } }),
        ),
    ];
    assert_eq!(
        finishing_order(&server, jobs).await,
        ["long cold", "short urgent"]
    );

    // A scorer that never returns is stopped at its small budget; the job runs on the built-in
    // score and the failure is counted.
    assert_eq!(
        set_scorer("spin-scorer").await.expect("answered").status(),
        200
    );
    let response = server
        .post("/v1/content", json!({ "url": site.url("/") }))
        .await;
    assert_eq!(response.status(), 200);
    server
        .assert_metric("pagewright_sched_scorer_failures_total 1")
        .await;
    let cleared = server
        .client
        .delete(format!("{}/v1/scheduler/scorer", server.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("answered");
    assert_eq!(cleared.status(), 200);
    assert_eq!(
        server.get_json("/v1/scheduler").await["scorer"],
        Value::Null
    );
    server.shutdown().await;
}

/// Polls `/v1/status` until `done` holds for it.
async fn status_until(server: &TestServer, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(what, Duration::from_secs(10), || async {
        let status = server.get_json("/v1/status").await;
        done(&status).then_some(status)
    })
    .await
}

#[tokio::test]
async fn a_spinning_cold_plugin_gives_the_cpu_to_an_urgent_job() {
    let site = crate::harness::FixtureSite::start().await;
    // One CPU slot for plugin code, two run slots: the urgent job gets a page at once, and its
    // plugin code can only run if the spinning one gives the CPU up.
    let server = TestServer::with_guests(
        &["spin"],
        &[
            "--plugin-workers",
            "1",
            "--max-concurrent-renders",
            "2",
            "--max-pages",
            "2",
            "--plugin-fuel",
            "1000000000000000",
        ],
    )
    .await;
    let spinning = server
        .post(
            "/v1/jobs",
            json!({ "plugin": "spin", "url": site.url("/"), "priority": { "class": "cold" } }),
        )
        .await;
    assert_eq!(spinning.status(), 202);
    let spinning: Value = spinning.json().await.expect("a job");
    let spinning = spinning["id"].as_str().expect("an id").to_owned();
    status_until(&server, "the loop holds the CPU", |status| {
        status["plugin_host"]["cpu"]["busy"] == 1
    })
    .await;
    let urgent = server
        .post(
            "/v1/content",
            json!({ "url": site.url("/"), "priority": { "class": "urgent" } }),
        )
        .await;
    assert_eq!(urgent.status(), 200);
    assert_eq!(
        server.get_json(&format!("/v1/jobs/{spinning}")).await["state"],
        "running",
        "the urgent job finished while the loop still ran"
    );
    let preemptions = server.get_json("/v1/status").await["plugin_host"]["cpu"]["preemptions"]
        .as_u64()
        .expect("a count");
    assert!(preemptions >= 1, "{preemptions}");
    server
        .client
        .delete(format!("{}/v1/jobs/{spinning}", server.base))
        .send()
        .await
        .expect("answered");
    server.shutdown().await;
}

#[tokio::test]
async fn a_plugin_waiting_on_its_page_holds_no_cpu_slot() {
    // One CPU slot: if the waiting plugin kept it, the second job's plugin could not run until the
    // wait was over.
    let server = TestServer::with_guests(
        &["sleeper"],
        &[
            "--plugin-workers",
            "1",
            "--max-concurrent-renders",
            "2",
            "--max-pages",
            "2",
        ],
    )
    .await;
    let waiting = server
        .post(
            "/v1/jobs",
            json!({ "plugin": "sleeper", "html": "<p>zzz</p>", "params": { "ms": 5_000 } }),
        )
        .await;
    assert_eq!(waiting.status(), 202);
    let waiting: Value = waiting.json().await.expect("a job");
    let waiting = waiting["id"].as_str().expect("an id").to_owned();
    let status = status_until(&server, "the plugin is waiting on its page", |status| {
        status["plugin_host"]["instances"] == 1
    })
    .await;
    assert_eq!(status["plugin_host"]["cpu"]["busy"], 0, "{status}");
    let other = server
        .post("/v1/content", json!({ "html": "<p>awake</p>" }))
        .await;
    assert_eq!(other.status(), 200);
    assert_eq!(
        server.get_json(&format!("/v1/jobs/{waiting}")).await["state"],
        "running",
        "the other job finished while the plugin still waited"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn pages_stay_warm_for_keys_jobs_arrive_for_and_are_opened_ahead() {
    let server = TestServer::start(&["--page-idle-timeout-ms", "500"]).await;
    let job = |extra: Value| {
        let mut body = json!({ "html": "<p>warm</p>", "page": { "isolation_key": "steady" } });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    for _ in 0..3 {
        assert_eq!(
            server.post("/v1/content", job(json!({}))).await.status(),
            200
        );
    }
    // Past the idle timeout, the key's page is still there: jobs are arriving for it. (A test about
    // time itself: the page outlives its 500 ms idle timeout by several once-a-second ticks.)
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let status = server.get_json("/v1/status").await;
    let warm = status["prewarm"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|key| key["key"] == "steady")
        .unwrap_or_else(|| panic!("no demand for the key: {status}"))
        .clone();
    assert_eq!(warm["warm_pages"], 1, "{warm}");
    assert_eq!(status["pool"]["live_pages"], 1, "{status}");
    assert_eq!(status["pool"]["warm_pages_wanted"], 1, "{status}");

    // A job that times out takes its page with it; a new one is opened ahead of the next job.
    let failed = server
        .post(
            "/v1/content",
            job(json!({ "timeout_ms": 300,
                        "goto": { "wait_for_selector": { "selector": "#never" } } })),
        )
        .await;
    assert_eq!(failed.status(), 408);
    status_until(&server, "a page opened ahead", |status| {
        status["pool"]["idle_pages"] == 1
    })
    .await;
    server
        .assert_metric("pagewright_pool_pages_prewarmed_total 1")
        .await;
    let reused_before = reused(&server).await;
    assert_eq!(
        server.post("/v1/content", job(json!({}))).await.status(),
        200
    );
    assert_eq!(
        reused(&server).await,
        reused_before + 1,
        "the job found the warm page"
    );
    server.shutdown().await;
}

async fn reused(server: &TestServer) -> u64 {
    let metrics = server.get("/metrics").await.text().await.expect("metrics");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("pagewright_pool_pages_reused_total "))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}
