//! Chromium as an untrusted process, and hostile pages and callers (issue 15): what the server
//! hands Chromium, and what it refuses before any browser work.

use std::collections::HashMap;

use crate::harness::ServerProcess;

/// Every process under `root` (not `root` itself), from `/proc`.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the name may hold spaces and parentheses.
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok())
        else {
            continue;
        };
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            next.push(child);
        }
    }
    found
}

#[tokio::test]
async fn chromium_never_sees_the_servers_tokens_or_secrets() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let log = data.path().join("server.log");
    let data_dir = data.path().join("data");
    let secrets = [
        ("PAGEWRIGHT_ADMIN_TOKEN", "admin-secret-4f1c"),
        ("PAGEWRIGHT_RENDER_TOKEN", "render-secret-9a2e"),
        ("PAGEWRIGHT_WEBHOOK_SECRET", "webhook-secret-77d0"),
        ("AWS_SECRET_ACCESS_KEY", "cloud-secret-3b6a"),
    ];
    let server = ServerProcess::start_with_env(
        &["--data-dir", data_dir.to_str().expect("UTF-8")],
        &secrets,
        &log,
    )
    .await;
    // A render, so that renderers run too.
    let response = server
        .client
        .post(format!("{}/v1/content", server.base))
        .bearer_auth("render-secret-9a2e")
        .json(&serde_json::json!({ "html": "<p>hi</p>" }))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    let chromium: Vec<u32> = descendants(server.pid())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.contains("chrom"))
        })
        .collect();
    assert!(!chromium.is_empty(), "Chromium runs under the server");
    let mut read = 0;
    for pid in chromium {
        // A process that ended meanwhile has nothing to show.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        read += 1;
        let environ = String::from_utf8_lossy(&environ);
        for (name, secret) in secrets {
            assert!(
                !environ.contains(secret) && !environ.contains(name),
                "Chromium process {pid} has {name} in its environment"
            );
        }
        assert!(
            !environ.contains("PAGEWRIGHT_"),
            "Chromium process {pid} has a PAGEWRIGHT_ variable"
        );
    }
    assert!(read > 0, "some Chromium process's environment was read");
}
