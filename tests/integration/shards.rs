//! NUMA shards on a configured two-node topology (one CPU each): each shard's Chromium processes
//! and plugin workers are pinned to its node's CPUs, jobs of one isolation key stay on one shard
//! while it has room, and one shard's browser dying leaves the other serving.

use std::time::Duration;

use futures::future::join_all;
use pagewright::topology::format_cpu_list;
use serde_json::json;

use crate::harness::{FixtureSite, TestServer, eventually};

/// `--numa-nodes` for two nodes of one CPU each, from the first two CPUs this process may use.
fn two_nodes() -> (String, [String; 2]) {
    let allowed = std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|line| {
            line.strip_prefix("Cpus_allowed_list:")
                .map(str::trim)
                .map(str::to_owned)
        })
        .expect("Cpus_allowed_list");
    let cpus = pagewright::topology::parse_cpu_list(&allowed).expect("a CPU list");
    let cpus: Vec<usize> = cpus.into_iter().take(2).collect();
    assert_eq!(
        cpus.len(),
        2,
        "these tests need two CPUs, this process may use {allowed}"
    );
    (
        format!("{};{}", cpus[0], cpus[1]),
        [cpus[0].to_string(), cpus[1].to_string()],
    )
}

/// A server with two shards and four renders at once, two per shard. First come, first served:
/// no job is favoured, so four of one tenant run at once.
async fn two_shard_server() -> (TestServer, [String; 2]) {
    let (spec, cpus) = two_nodes();
    let flags = [
        "--numa-nodes",
        spec.as_str(),
        "--fixed-concurrency",
        "--max-concurrent-renders",
        "4",
        "--queue-order",
        "fifo",
    ];
    (TestServer::start(&flags).await, cpus)
}

fn cpus_allowed(status_path: &str) -> Option<String> {
    std::fs::read_to_string(status_path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
}

/// `pid` and every process below it, from each process's parent in `/proc/PID/stat`.
fn process_tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| {
            let child: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // The command sits in parentheses and may hold spaces: the parent comes after it.
            let after = &stat[stat.rfind(')')? + 2..];
            let parent = after.split(' ').nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut tree = vec![pid];
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    tree
}

/// Renders `path` `count` times at once, each with an isolation key of its own (`{prefix}-N`),
/// and asserts that every one succeeds.
async fn render_with_keys(
    server: &TestServer,
    site: &FixtureSite,
    path: &str,
    prefix: &str,
    count: usize,
) {
    let renders = (0..count).map(|n| {
        server.post(
            "/v1/content",
            json!({ "url": site.url(path), "page": { "isolation_key": format!("{prefix}-{n}") } }),
        )
    });
    for response in join_all(renders).await {
        assert_eq!(response.status(), 200);
    }
}

/// Renders with several isolation keys at once, so that both shards open pages and renderers.
async fn render_on_both(server: &TestServer, site: &FixtureSite) {
    render_with_keys(server, site, "/slow?ms=300", "key", 4).await;
}

#[tokio::test]
async fn each_shard_runs_its_browser_and_plugin_workers_on_its_own_cpus() {
    let site = FixtureSite::start().await;
    let (server, cpus) = two_shard_server().await;
    render_on_both(&server, &site).await;

    let status = server.get_json("/v1/status").await;
    assert_eq!(status["topology"]["source"], "configured", "{status}");
    let shards = status["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 2);
    for (index, shard) in shards.iter().enumerate() {
        let expected = &cpus[index];
        assert_eq!(
            format_cpu_list(
                &serde_json::from_value::<Vec<usize>>(shard["node"]["cpus"].clone()).expect("cpus")
            ),
            *expected
        );
        assert!(shard["pool"]["live_pages"].as_u64() >= Some(1), "{shard}");
        let pid = shard["browser"]["pid"].as_u64().expect("a browser pid") as u32;
        let tree = process_tree(pid);
        // The browser, its zygotes, GPU, network and utility processes, and at least one renderer.
        assert!(tree.len() >= 4, "shard {index}'s Chromium is only {tree:?}");
        for process in tree {
            if let Some(allowed) = cpus_allowed(&format!("/proc/{process}/status")) {
                assert_eq!(
                    allowed, *expected,
                    "Chromium process {process} of shard {index}"
                );
            }
        }
        // A node the kernel has with memory: the browser's memory policy prefers it.
        if let Some(node) = shard["node"]["memory_node"].as_u64() {
            let maps =
                std::fs::read_to_string(format!("/proc/{pid}/numa_maps")).expect("numa_maps");
            let first = maps.lines().next().unwrap_or_default();
            assert!(
                first.contains(&format!("prefer:{node}")),
                "shard {index}'s browser should prefer node {node}'s memory: {first}"
            );
        }
    }

    // The plugin workers: threads of this process named after their shard.
    let mut workers = [0, 0];
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let task = task.expect("a task").path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        let Some(shard) = name.trim().strip_prefix("pw-plugin-") else {
            continue;
        };
        let shard: usize = shard.parse().expect("a shard number");
        let allowed = cpus_allowed(task.join("status").to_str().expect("a path"));
        assert_eq!(
            allowed.as_ref(),
            Some(&cpus[shard]),
            "plugin worker {task:?}"
        );
        workers[shard] += 1;
    }
    assert!(
        workers[0] >= 1 && workers[1] >= 1,
        "plugin workers per shard: {workers:?}"
    );
}

/// `placements_total` by shard from `/metrics`, all reasons together.
async fn placements(server: &TestServer) -> [u64; 2] {
    let metrics = server.get("/metrics").await.text().await.expect("metrics");
    let mut counts = [0, 0];
    for line in metrics
        .lines()
        .filter(|line| line.starts_with("pagewright_placements_total{"))
    {
        let shard = if line.contains("shard=\"0\"") { 0 } else { 1 };
        counts[shard] += line
            .rsplit(' ')
            .next()
            .and_then(|count| count.parse::<u64>().ok())
            .expect("a count");
    }
    counts
}

#[tokio::test]
async fn jobs_of_one_key_stay_on_one_shard_while_it_has_room() {
    let site = FixtureSite::start().await;
    let (server, _) = two_shard_server().await;
    let body = json!({ "url": site.url("/"), "page": { "isolation_key": "sticky" } });
    for _ in 0..8 {
        assert_eq!(server.post("/v1/content", body.clone()).await.status(), 200);
    }
    let one_by_one = placements(&server).await;
    assert!(
        one_by_one.contains(&8) && one_by_one.contains(&0),
        "eight jobs of one key, one at a time, spread over the shards: {one_by_one:?}"
    );
    server
        .assert_metric("pagewright_placements_total{shard=\"0\",placement=\"least_loaded\"}")
        .await;

    // Four at once, each holding its page for a while: more than the key's shard has room for, so
    // two go to the other shard.
    let slow = json!({ "url": site.url("/slow?ms=800"), "page": { "isolation_key": "sticky" } });
    let responses = join_all((0..4).map(|_| server.post("/v1/content", slow.clone()))).await;
    for response in responses {
        assert_eq!(response.status(), 200);
    }
    let after = placements(&server).await;
    let added = [after[0] - one_by_one[0], after[1] - one_by_one[1]];
    assert_eq!(
        added,
        [2, 2],
        "four at once over two shards of room two: {after:?}"
    );
}

#[tokio::test]
async fn a_shard_whose_browser_dies_relaunches_while_the_other_serves() {
    let site = FixtureSite::start().await;
    let (server, _) = two_shard_server().await;
    render_on_both(&server, &site).await;
    let pid_of = |status: &serde_json::Value, shard: usize| {
        status["shards"][shard]["browser"]["pid"]
            .as_u64()
            .expect("a pid")
    };
    let before = server.get_json("/v1/status").await;
    let (dying, surviving) = (pid_of(&before, 0), pid_of(&before, 1));

    let killed = std::process::Command::new("kill")
        .args(["-KILL", &dying.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    // Jobs keep succeeding: placed on the surviving shard while the other is down, or retried on
    // its relaunched browser.
    render_with_keys(&server, &site, "/", "after", 6).await;
    assert_eq!(server.get("/health").await.status(), 200);

    let status = eventually(
        "shard 0's browser is relaunched",
        Duration::from_secs(10),
        || async {
            let status = server.get_json("/v1/status").await;
            (status["shards"][0]["browser"]["state"] == "connected" && pid_of(&status, 0) != dying)
                .then_some(status)
        },
    )
    .await;
    assert_eq!(status["shards"][0]["browser"]["restarts"], 1, "{status}");
    assert_eq!(
        pid_of(&status, 1),
        surviving,
        "shard 1's browser was left alone"
    );
    assert_eq!(status["shards"][1]["browser"]["restarts"], 0, "{status}");
}
