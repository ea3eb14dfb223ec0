//! Chromium as an untrusted process, and hostile pages and callers (issue 15): what the server
//! hands Chromium, and what it refuses before any browser work.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{FixtureSite, ServerProcess, TestServer, error_code, error_message};

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

#[tokio::test]
async fn dialogs_are_answered_at_once_and_recorded() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    for key in ["default", "dialogs"] {
        let started = Instant::now();
        let response = server
            .post(
                "/v1/content",
                json!({ "url": site.url("/dialogs"), "page": { "isolation_key": key } }),
            )
            .await;
        let took = started.elapsed();
        assert_eq!(response.status(), 200, "a page with dialogs renders");
        let dialogs = response
            .headers()
            .get("x-pagewright-page-dialogs")
            .expect("the dialogs are reported")
            .to_str()
            .expect("ASCII")
            .to_owned();
        let dialogs: serde_json::Value = serde_json::from_str(&dialogs).expect("JSON");
        assert_eq!(
            dialogs,
            json!([
                { "kind": "alert", "message": "hello from alert" },
                { "kind": "confirm", "message": "sure?" },
                { "kind": "prompt", "message": "name?" },
            ])
        );
        let content: serde_json::Value = response.json().await.expect("JSON");
        assert!(
            content["html"]
                .as_str()
                .is_some_and(|text| text.contains("rendered after the dialogs")),
            "the page went on after its dialogs: {content}"
        );
        eprintln!("a page with three dialogs rendered in {took:?}");
        // The same key's next job renders, and reports no dialogs of its own.
        let next = server
            .post(
                "/v1/content",
                json!({ "url": site.url("/"), "page": { "isolation_key": key } }),
            )
            .await;
        assert_eq!(next.status(), 200);
        assert!(next.headers().get("x-pagewright-page-dialogs").is_none());
    }
    // An async job's document carries them too.
    let submitted: serde_json::Value = server
        .post(
            "/v1/jobs",
            json!({ "plugin": "content", "url": site.url("/dialogs") }),
        )
        .await
        .json()
        .await
        .expect("JSON");
    let id = submitted["id"].as_str().expect("an id").to_owned();
    let document =
        crate::harness::eventually("the job finishes", Duration::from_secs(30), || async {
            let document = server.get_json(&format!("/v1/jobs/{id}")).await;
            (document["state"] == "succeeded").then_some(document)
        })
        .await;
    assert_eq!(
        document["result"]["page"]["dialogs"][0],
        json!({ "kind": "alert", "message": "hello from alert" })
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_renderer_that_runs_out_of_memory_is_a_prompt_page_crashed() {
    let site = FixtureSite::start().await;
    let server = TestServer::start(&[]).await;
    let started = Instant::now();
    let response = server
        .post(
            "/v1/screenshot",
            json!({ "url": site.url("/oom"), "timeout_ms": 60000, "page": { "isolation_key": "oom" } }),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(error_code(response, 502).await, "page_crashed");
    eprintln!("a page that ran out of memory answered page_crashed after {took:?}");
    assert!(
        took < Duration::from_secs(45),
        "the crash was noticed when it happened, not at the 60 s deadline ({took:?})"
    );
    let next = server
        .post(
            "/v1/screenshot",
            json!({ "url": site.url("/"), "page": { "isolation_key": "oom" } }),
        )
        .await;
    assert_eq!(next.status(), 200, "the key renders again");
    server.shutdown().await;
}

#[tokio::test]
async fn certificate_errors_fail_unless_the_job_opts_in() {
    let site = FixtureSite::start().await;
    let https = site.https_front().await;
    let server = TestServer::start(&[]).await;
    let refused = || server.post("/v1/content", json!({ "url": format!("{https}/") }));
    let message = error_message(refused().await, 502, "navigation_failed").await;
    assert!(message.contains("ERR_CERT"), "{message}");

    let response = server
        .post(
            "/v1/content",
            json!({ "url": format!("{https}/"), "page": { "ignore_https_errors": true } }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert!(
        body["html"]
            .as_str()
            .expect("html")
            .contains("Hello pagewright")
    );

    // The exception was the job's alone: the key's next job verifies again (a connection opened
    // while errors were ignored is not reused for it).
    let message = error_message(refused().await, 502, "navigation_failed").await;
    assert!(message.contains("ERR_CERT"), "{message}");
    server.shutdown().await;
}

/// A `/proc/PID/status` field, e.g. `Seccomp` or `Uid`.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')
            .map(|value| value.trim().to_owned())
    })
}

/// A server process in a folder of its own that has rendered once, so that renderers run.
async fn server_after_a_render() -> (tempfile::TempDir, ServerProcess) {
    let data = tempfile::tempdir().expect("a temporary folder");
    let server = ServerProcess::start(
        &[
            "--data-dir",
            data.path().join("data").to_str().expect("UTF-8"),
        ],
        &data.path().join("server.log"),
    )
    .await;
    let response = server
        .post("/v1/content", json!({ "html": "<p>rendered</p>" }))
        .await;
    assert_eq!(response.status(), 200);
    (data, server)
}

#[tokio::test]
async fn chromium_runs_sandboxed_and_never_as_root() {
    let (_data, server) = server_after_a_render().await;
    let mut renderers = 0;
    for pid in descendants(server.pid()) {
        let Ok(command_line) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let command_line = String::from_utf8_lossy(&command_line).replace('\0', " ");
        if !command_line.contains("chrom") {
            continue;
        }
        assert!(
            !command_line.contains("--no-sandbox"),
            "Chromium runs without its sandbox: {command_line}"
        );
        let Some(uid) = status_field(pid, "Uid") else {
            continue;
        };
        assert!(
            uid.split_whitespace().all(|id| id != "0"),
            "Chromium process {pid} runs as root ({uid})"
        );
        if command_line.contains("--type=renderer") {
            renderers += 1;
            assert_eq!(
                status_field(pid, "Seccomp").as_deref(),
                Some("2"),
                "renderer {pid} runs without seccomp-bpf"
            );
        }
    }
    assert!(renderers > 0, "a renderer was found");
}

#[test]
fn a_chromium_user_the_system_lacks_is_a_clear_startup_error() {
    let args = [
        "pagewright",
        "serve",
        "--chromium-user",
        "no-such-account-4e1f",
    ];
    let said = pagewright::cli::serve_settings(args)
        .expect_err("no such account")
        .to_string();
    assert!(
        said.contains("--chromium-user must be an account this system has"),
        "{said}"
    );
}

/// The inodes of the TCP sockets listening on this machine (`/proc/net/tcp` and `tcp6`, state 0A).
fn listening_socket_inodes() -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) == Some(&"0A")
                && let Some(inode) = fields.get(9)
            {
                inodes.push((*inode).to_owned());
            }
        }
    }
    inodes
}

#[tokio::test]
async fn chromium_listens_on_no_port() {
    let (_data, server) = server_after_a_render().await;
    let listening = listening_socket_inodes();
    let mut looked_at = 0;
    for pid in descendants(server.pid()) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        looked_at += 1;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
            {
                assert!(
                    !listening.iter().any(|listening| listening == inode),
                    "Chromium process {pid} listens on a TCP port (its DevTools endpoint?)"
                );
            }
        }
    }
    assert!(looked_at > 0, "Chromium's processes were looked at");
}

/// Reads from `stream` until it closes or `within` passes; what it said, and whether it closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut said = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&said).into_owned(), true),
            Ok(Ok(read)) => said.extend_from_slice(&buffer[..read]),
            Err(_) => return (String::from_utf8_lossy(&said).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn slow_clients_and_too_many_connections_get_clear_answers() {
    use tokio::io::AsyncWriteExt;
    let server =
        TestServer::start(&["--header-read-timeout-ms", "600", "--max-connections", "3"]).await;
    let address = server.base.trim_start_matches("http://").to_owned();

    // Headers trickled past the timeout: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        closed,
        "a connection that never finished its headers stays open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed at the header-read timeout"
    );

    // Three idle connections fill the cap; the fourth is told so, not left hanging.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(&address)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let (said, closed) = read_until_closed(&mut fourth, Duration::from_secs(3)).await;
    assert!(closed && said.starts_with("HTTP/1.1 503"), "{said}");
    assert!(said.contains("too_many_connections"), "{said}");
    // Idle connections go at the header-read timeout, and the server takes requests again.
    drop(idle);
    crate::harness::eventually(
        "the server answers again",
        Duration::from_secs(10),
        || async {
            let response = server
                .client
                .get(format!("{}/health", server.base))
                .send()
                .await
                .ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;

    // A URL longer than any browser takes is refused before any browser work.
    let long = format!("http://127.0.0.1/{}", "a".repeat(40_000));
    let response = server.post("/v1/content", json!({ "url": long })).await;
    let message = error_message(response, 400, "invalid_url").await;
    assert!(message.contains("at most 32768"), "{message}");
    server.shutdown().await;
}
