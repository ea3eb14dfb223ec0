//! Durable async jobs on the embedded store: a server killed with SIGKILL mid-way loses no job and
//! no webhook, and a SIGTERM lets running jobs finish and leaves the rest queued for the next start.
//! The servers are processes of their own (`pagewright serve`) on one data directory.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{
    FixtureSite, ServerProcess, eventually, standard_webhook_signature, webhook_receiver,
};

const SECRET: &str = "a-webhook-secret-for-tests";

/// Submits `body` as an async job; its id.
async fn submit(server: &ServerProcess, body: Value) -> String {
    let response = server.post("/v1/jobs", body).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.expect("a job");
    job["id"].as_str().expect("an id").to_owned()
}

/// The store's job counts, from `/v1/status`.
async fn counts(server: &ServerProcess) -> Value {
    server.get_json("/v1/status").await["jobs"].clone()
}

/// Checks a webhook post (its Standard Webhooks id and signature, a succeeded job) and counts it.
fn record_post(delivered: &mut HashMap<String, usize>, headers: &HeaderMap, body: &[u8]) {
    let document: Value = serde_json::from_slice(body).expect("the job's document");
    let id = document["id"].as_str().expect("an id").to_owned();
    assert_eq!(headers["webhook-id"], id.as_str(), "a stable id per job");
    assert_eq!(
        headers["webhook-signature"],
        standard_webhook_signature(SECRET.as_bytes(), headers, body).as_str()
    );
    assert_eq!(document["state"], "succeeded", "{document}");
    *delivered.entry(id).or_default() += 1;
}

#[tokio::test]
async fn two_hundred_jobs_survive_a_kill_9_and_every_webhook_arrives_with_its_stable_id() {
    const JOBS: usize = 200;
    let site = FixtureSite::start().await;
    let (hook, mut posts) = webhook_receiver().await;
    let data = tempfile::tempdir().expect("a data directory");
    let data_dir = data.path().to_str().expect("UTF-8").to_owned();
    let flags = ["--data-dir", &data_dir, "--webhook-secret", SECRET];
    let first = ServerProcess::start(&flags, &data.path().join("first.log")).await;

    let mut ids = Vec::with_capacity(JOBS);
    for n in 0..JOBS {
        let url = site.url(&format!("/slow?ms=50&job={n}"));
        ids.push(
            submit(
                &first,
                json!({ "plugin": "content", "url": url, "webhook": hook }),
            )
            .await,
        );
    }
    // Kill it a fifth of the way through: some jobs finished, some running, most queued.
    let mut delivered: HashMap<String, usize> = HashMap::new();
    while delivered.len() < JOBS / 5 {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(60), posts.recv())
            .await
            .unwrap_or_else(|_| panic!("webhooks stopped coming:\n{}", first.log()))
            .expect("a post");
        record_post(&mut delivered, &headers, &body);
    }
    let before_kill = counts(&first).await;
    first.kill();

    let second = ServerProcess::start(&flags, &data.path().join("second.log")).await;
    let after = eventually(
        "every job finishes on the restarted server",
        Duration::from_secs(120),
        || async {
            let counts = counts(&second).await;
            (counts["queued"] == 0 && counts["running"] == 0).then_some(counts)
        },
    )
    .await;
    assert_eq!(after["finished"], JOBS, "{after}");
    let mut ran_again = 0;
    for id in &ids {
        let job = second.get_json(&format!("/v1/jobs/{id}")).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert!(
            job["result"]["json"]["html"]
                .as_str()
                .expect("the page's HTML")
                .contains("finally"),
            "{job}"
        );
        let attempts = job["attempts"].as_u64().expect("attempts");
        assert!(attempts >= 1, "{job}");
        if attempts > 1 {
            ran_again += 1;
        }
        let result = second.get(&format!("/v1/jobs/{id}/result")).await;
        assert_eq!(result.status(), 200);
    }
    // Every webhook arrives at least once, duplicates carrying the same id.
    let expected: HashSet<&String> = ids.iter().collect();
    while delivered.len() < JOBS {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(60), posts.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {JOBS} webhooks arrived:\n{}",
                    delivered.len(),
                    second.log()
                )
            })
            .expect("a post");
        record_post(&mut delivered, &headers, &body);
    }
    assert!(delivered.keys().all(|id| expected.contains(id)));
    let duplicates: usize = delivered.values().map(|posts| posts - 1).sum();
    eprintln!(
        "killed with {before_kill}; {ran_again} jobs ran twice, {duplicates} webhooks came twice"
    );
    assert!(
        tokio::task::spawn_blocking(move || second.terminate())
            .await
            .expect("joined"),
        "the second server stops cleanly"
    );
}

#[tokio::test]
async fn a_sigterm_lets_running_jobs_finish_and_leaves_the_rest_queued_for_the_next_start() {
    let site = FixtureSite::start().await;
    let data = tempfile::tempdir().expect("a data directory");
    let data_dir = data.path().to_str().expect("UTF-8").to_owned();
    let flags = [
        "--data-dir",
        &data_dir,
        "--max-concurrent-renders",
        "1",
        "--max-pages",
        "1",
        "--shutdown-grace-ms",
        "20000",
    ];
    let first = ServerProcess::start(&flags, &data.path().join("first.log")).await;
    let running = submit(
        &first,
        json!({ "plugin": "content", "url": site.url("/slow?ms=2000") }),
    )
    .await;
    eventually("the first job runs", Duration::from_secs(10), || async {
        let job = first.get_json(&format!("/v1/jobs/{running}")).await;
        (job["state"] == "running").then_some(())
    })
    .await;
    let mut waiting = Vec::new();
    for n in 0..3 {
        let url = site.url(&format!("/slow?ms=10&job={n}"));
        waiting.push(submit(&first, json!({ "plugin": "content", "url": url })).await);
    }
    let stopped_at = std::time::Instant::now();
    assert!(
        tokio::task::spawn_blocking(move || first.terminate())
            .await
            .expect("joined"),
        "the server stops cleanly"
    );
    // It waited for the running job (2 s), not for the grace period (20 s).
    let took = stopped_at.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");

    let second = ServerProcess::start(&flags, &data.path().join("second.log")).await;
    let job = second.get_json(&format!("/v1/jobs/{running}")).await;
    assert_eq!(
        job["state"], "succeeded",
        "it finished before the server stopped: {job}"
    );
    assert_eq!(job["attempts"], 1, "{job}");
    for id in &waiting {
        let job = eventually(
            "a queued job runs after the restart",
            Duration::from_secs(30),
            || async {
                let job = second.get_json(&format!("/v1/jobs/{id}")).await;
                (job["state"] == "succeeded").then_some(job)
            },
        )
        .await;
        assert_eq!(job["attempts"], 1, "it never started before: {job}");
    }
}
