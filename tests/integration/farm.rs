//! A farm: three `pagewright serve` processes sharing one PostgreSQL (a throwaway cluster of the
//! test's own). Jobs, plugins and cancellations cross hosts; a host killed with SIGKILL loses its
//! jobs to the others when its leases run out; the farm claims in one order (band, then the tenant
//! furthest behind, then score and age); and a database that goes away mid-run loses nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FixtureSite, ServerProcess, eventually};
use crate::postgres::TestPostgres;

const ADMIN: &str = "admin-token-for-the-farm-0123456789";

/// Starts host `name` of the farm on `database`, with a data directory of its own under `dir`.
async fn start_host(database: &str, dir: &std::path::Path, name: &str) -> ServerProcess {
    let data_dir = dir.join(name);
    std::fs::create_dir_all(&data_dir).expect("a data directory");
    let data_dir = data_dir.to_str().expect("UTF-8").to_owned();
    ServerProcess::start(
        &[
            "--database-url",
            database,
            "--data-dir",
            &data_dir,
            "--admin-token",
            ADMIN,
            // A dead host's jobs run elsewhere after 3 s.
            "--job-lease-ms",
            "3000",
            "--max-pages",
            "4",
            // No cold job ages into hot during a test: the order under test is band, then tenant.
            "--aging-step-ms",
            "600000",
        ],
        &dir.join(format!("{name}.log")),
    )
    .await
}

/// Submits an async job through `host`; its id.
async fn submit(host: &ServerProcess, body: Value) -> String {
    let response = host.post("/v1/jobs", body).await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let job: Value = response.json().await.expect("a job");
    job["id"].as_str().expect("an id").to_owned()
}

/// Waits until job `id`, read through `host`, has succeeded; its document. Fails at once if it
/// fails or is cancelled, and with the host's log if it takes longer than `within`.
async fn succeeded(host: &ServerProcess, id: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let job = host.get_json(&format!("/v1/jobs/{id}")).await;
        assert!(
            job["state"] != "failed" && job["state"] != "cancelled",
            "{job}"
        );
        if job["state"] == "succeeded" {
            return job;
        }
        let log = host.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not succeed within {within:?}: {job}\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /v1/status`'s `jobs`.
async fn jobs_status(host: &ServerProcess) -> Value {
    host.get_json("/v1/status").await["jobs"].clone()
}

async fn upload(host: &ServerProcess, name: &str, guest: &str, version: &str) -> reqwest::Response {
    host.client
        .put(format!("{}/v1/plugins/{name}", host.base))
        .bearer_auth(ADMIN)
        .header(
            "x-pagewright-manifest",
            json!({ "version": version }).to_string(),
        )
        .body(pagewright_test_guests::bytes(guest))
        .send()
        .await
        .expect("answered")
}

async fn delete(host: &ServerProcess, reference: &str) -> reqwest::Response {
    host.client
        .delete(format!("{}/v1/plugins/{reference}", host.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("answered")
}

/// The versions of plugin `name` that `host` has (none if it has no such plugin).
async fn versions(host: &ServerProcess, name: &str) -> Vec<String> {
    let described = host.get_json(&format!("/v1/plugins/{name}")).await;
    described["versions"]
        .as_array()
        .map(|versions| {
            versions
                .iter()
                .map(|version| version["version"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn three_hosts_share_jobs_plugins_cancellations_and_a_dead_hosts_work() {
    let site = FixtureSite::start().await;
    let postgres = TestPostgres::start();
    let database = postgres.database("farm");
    let dir = tempfile::tempdir().expect("a folder for the hosts");
    let a = start_host(&database, dir.path(), "a").await;
    let b = start_host(&database, dir.path(), "b").await;
    let c = start_host(&database, dir.path(), "c").await;

    // A job submitted through A is visible through B.
    let id = submit(
        &a,
        json!({ "plugin": "content", "html": "<p id='farm'>shared</p>" }),
    )
    .await;
    let job = succeeded(&b, &id, Duration::from_secs(30)).await;
    assert!(
        job["result"]["json"]["html"]
            .as_str()
            .expect("inline HTML")
            .contains("shared"),
        "{job}"
    );

    // A plugin uploaded through A runs on C within seconds; a delete through B reaches A.
    assert_eq!(upload(&a, "title", "title", "1.0.0").await.status(), 201);
    let output = eventually("C has the plugin", Duration::from_secs(30), || async {
        let response = c
            .post(
                "/v1/run/title",
                json!({ "html": "<title>T</title><h1>farm</h1>" }),
            )
            .await;
        if response.status() == 200 {
            response.json::<Value>().await.ok()
        } else {
            None
        }
    })
    .await;
    assert_eq!(output["heading"], "farm");
    assert_eq!(delete(&b, "title").await.status(), 200);
    eventually("A forgets the plugin", Duration::from_secs(30), || async {
        versions(&a, "title").await.is_empty().then_some(())
    })
    .await;

    // The scorer set through A is every host's, and a new host's too.
    assert_eq!(upload(&a, "stamp", "stamp", "1.0.0").await.status(), 201);
    let set = a
        .client
        .put(format!("{}/v1/scheduler/scorer", a.base))
        .bearer_auth(ADMIN)
        .json(&json!({ "plugin": "stamp" }))
        .send()
        .await
        .expect("answered");
    assert_eq!(set.status(), 200, "{:?}", set.text().await);
    for host in [&b, &c] {
        eventually(
            "the host follows the scorer",
            Duration::from_secs(30),
            || async {
                (host.get_json("/v1/scheduler").await["scorer"] == "stamp@1.0.0").then_some(())
            },
        )
        .await;
    }
    let cleared = c
        .client
        .delete(format!("{}/v1/scheduler/scorer", c.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("answered");
    assert_eq!(cleared.status(), 200);
    eventually(
        "A follows the built-in score again",
        Duration::from_secs(30),
        || async {
            a.get_json("/v1/scheduler").await["scorer"]
                .is_null()
                .then_some(())
        },
    )
    .await;

    // Uploads racing deletes through different hosts: every host ends with what the store has.
    for round in 0..4 {
        let version = format!("1.0.{round}");
        let (uploaded, deleted) =
            tokio::join!(upload(&a, "racer", "title", &version), delete(&c, "racer"));
        assert!(
            matches!(uploaded.status().as_u16(), 200 | 201),
            "{}",
            uploaded.status()
        );
        assert!(
            matches!(deleted.status().as_u16(), 200 | 404),
            "{}",
            deleted.status()
        );
    }
    let stored = postgres.query(
        "farm",
        "SELECT string_agg(version, ',' ORDER BY version) FROM plugin_versions WHERE name = 'racer'",
    );
    let stored: Vec<String> = stored
        .split(',')
        .filter(|version| !version.is_empty())
        .map(str::to_owned)
        .collect();
    for host in [&a, &b, &c] {
        eventually(
            "every host agrees with the store",
            Duration::from_secs(30),
            || async { (versions(host, "racer").await == stored).then_some(()) },
        )
        .await;
    }

    // A cancellation sent to one host stops the job where it runs.
    let slow = submit(
        &a,
        json!({ "plugin": "content", "url": site.url("/slow?ms=60000"), "timeout_ms": 90000 }),
    )
    .await;
    let running = eventually("the slow job runs", Duration::from_secs(30), || async {
        let job = a.get_json(&format!("/v1/jobs/{slow}")).await;
        (job["state"] == "running").then_some(job)
    })
    .await;
    let runner_name = running["host"].as_str().expect("its host").to_owned();
    let mut runner = None;
    let mut other = None;
    for host in [&a, &b, &c] {
        if jobs_status(host).await["host"] == runner_name.as_str() {
            runner = Some(host);
        } else {
            other = Some(host);
        }
    }
    let (runner, other) = (runner.expect("the runner"), other.expect("another host"));
    let cancelled = other
        .client
        .delete(format!("{}/v1/jobs/{slow}", other.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(cancelled.status(), 200);
    eventually(
        "the runner stops the job",
        Duration::from_secs(5),
        || async { (jobs_status(runner).await["running_here"] == 0).then_some(()) },
    )
    .await;

    // SIGKILL a host while it runs jobs: they finish on the others once its leases run out.
    let mut ids = Vec::new();
    for n in 0..24 {
        let url = site.url(&format!("/slow?ms=2000&job={n}"));
        ids.push(submit(&a, json!({ "plugin": "content", "url": url })).await);
    }
    let victim_name = eventually("B runs some of them", Duration::from_secs(30), || async {
        let status = jobs_status(&b).await;
        (status["running_here"].as_u64() > Some(0)).then(|| status["host"].clone())
    })
    .await;
    let victims: Vec<String> = {
        let mut victims = Vec::new();
        for id in &ids {
            let job = a.get_json(&format!("/v1/jobs/{id}")).await;
            if job["host"] == victim_name {
                victims.push(id.clone());
            }
        }
        victims
    };
    tokio::task::spawn_blocking(move || b.kill())
        .await
        .expect("joined");
    for id in &ids {
        succeeded(&a, id, Duration::from_secs(90)).await;
    }
    for id in &victims {
        let job = c.get_json(&format!("/v1/jobs/{id}")).await;
        assert!(
            job["attempts"].as_u64() >= Some(2),
            "ran again after B died: {job}"
        );
    }
    assert!(
        a.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics")
            .contains("pagewright_jobs_claimed_total"),
    );

    // An urgent job submitted behind 500 cold ones starts before them, and a tenant with one job
    // is not stuck behind another tenant's 500.
    let mut backlog = Vec::new();
    for n in 0..500 {
        let url = site.url(&format!("/slow?ms=300&backlog={n}"));
        let body = json!({ "plugin": "content", "url": url, "tenant": "big",
                           "priority": { "class": "cold" } });
        backlog.push(submit(&a, body).await);
    }
    let urgent = submit(
        &c,
        json!({ "plugin": "content", "url": site.url("/slow?ms=10&urgent"), "tenant": "big",
                "priority": { "class": "urgent" } }),
    )
    .await;
    let small = submit(
        &c,
        json!({ "plugin": "content", "url": site.url("/slow?ms=10&small"), "tenant": "small",
                "priority": { "class": "cold" } }),
    )
    .await;
    let urgent = succeeded(&a, &urgent, Duration::from_secs(30)).await;
    let small = succeeded(&a, &small, Duration::from_secs(30)).await;
    let waiting = jobs_status(&a).await["queued"].as_u64().expect("a count");
    assert!(
        waiting > 300,
        "most of the backlog still waits ({waiting}) while the urgent job ({}) and the small \
         tenant's ({}) are done",
        urgent["queued_ms"],
        small["queued_ms"]
    );
    drop((a, c));
}

#[tokio::test]
async fn a_database_that_goes_away_mid_run_loses_nothing_and_marks_nothing_done_that_was_not() {
    let site = FixtureSite::start().await;
    let postgres = TestPostgres::start();
    let database = postgres.database("farm");
    let dir = tempfile::tempdir().expect("a folder for the host");
    let host = start_host(&database, dir.path(), "only").await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let url = site.url(&format!("/slow?ms=1500&job={n}"));
        ids.push(submit(&host, json!({ "plugin": "content", "url": url })).await);
    }
    eventually("jobs run", Duration::from_secs(30), || async {
        (jobs_status(&host).await["running_here"].as_u64() > Some(0)).then_some(())
    })
    .await;

    postgres.stop();
    // What needs the store says so; synchronous renders go on.
    let refused = host
        .post(
            "/v1/jobs",
            json!({ "plugin": "content", "html": "<p>x</p>" }),
        )
        .await;
    assert_eq!(refused.status(), 503);
    let error: Value = refused.json().await.expect("JSON");
    assert_eq!(error["error"]["code"], "store_unavailable", "{error}");
    let read = host.get(&format!("/v1/jobs/{}", ids[0])).await;
    assert_eq!(read.status(), 503);
    let rendered = host
        .post("/v1/content", json!({ "html": "<p>still rendering</p>" }))
        .await;
    assert_eq!(rendered.status(), 200);

    postgres.start_again();
    for id in &ids {
        let job = succeeded(&host, id, Duration::from_secs(90)).await;
        let result = host.get(&format!("/v1/jobs/{id}/result")).await;
        assert_eq!(result.status(), 200, "{job}");
        let body: Value = result.json().await.expect("the result");
        assert!(
            body["html"].as_str().expect("HTML").contains("finally"),
            "{body}"
        );
    }
    // Each job is stored once, with its result.
    assert_eq!(
        postgres.query(
            "farm",
            "SELECT count(*) FROM jobs j JOIN results r ON r.job_id = j.id WHERE j.state = 'succeeded'"
        ),
        "8"
    );
}
