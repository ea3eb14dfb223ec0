//! The egress policy on everything a page does (issue 15): with `--deny-private-networks`, no path a
//! page has (redirects, subresources, frames, fetch, XHR, beacons, WebSockets, workers, popups,
//! inline HTML) reaches a loopback-only service; without it, the same page does (so the page
//! really tries each path). The "public" site is another loopback address the rules allow.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{FixtureSite, TestServer, error_message};

/// A service only this machine should reach, on 127.0.0.1: it records the first line of every
/// connection it gets (`GET /fetch HTTP/1.1`) and answers 200.
struct LoopbackService {
    origin: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl LoopbackService {
    async fn start() -> Self {
        Self::start_on(0).await
    }

    /// The service on `127.0.0.1:port` (0: any free port).
    async fn start_on(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 4096];
                    let read = stream.read(&mut buffer).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buffer[..read]);
                    let line = request.lines().next().unwrap_or("(nothing)").to_owned();
                    record.lock().expect("lock").push(line);
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecret",
                        )
                        .await;
                });
            }
        });
        Self { origin, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }

    fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self
            .seen()
            .iter()
            .filter_map(|line| line.split_whitespace().nth(1).map(str::to_owned))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// Renders the page that reaches for `service` by every path, by URL and as inline HTML, and waits
/// for its requests to settle.
async fn reach(server: &TestServer, site: &FixtureSite, service: &LoopbackService) {
    let page = site.url(&format!("/reaches-for?origin={}", service.origin));
    let response = server
        .post(
            "/v1/content",
            json!({ "url": page, "goto": { "wait_until": "networkidle" } }),
        )
        .await;
    assert_eq!(response.status(), 200, "the page itself renders");
    let html = crate::site::reaching_for(&service.origin);
    let response = server
        .post(
            "/v1/content",
            json!({ "html": html, "goto": { "wait_until": "networkidle" } }),
        )
        .await;
    assert_eq!(response.status(), 200, "the inline page renders");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn no_path_a_page_has_reaches_a_loopback_service_when_private_networks_are_denied() {
    let site = FixtureSite::start_on([127, 0, 0, 2]).await;

    // Without the switch, every path gets through: the page really tries each.
    let service = LoopbackService::start().await;
    let open = TestServer::start(&[]).await;
    reach(&open, &site, &service).await;
    let reached = service.paths();
    for path in [
        "/image",
        "/style",
        "/frame",
        "/fetch",
        "/xhr",
        "/beacon",
        "/websocket",
        "/worker",
    ] {
        assert!(
            reached.iter().any(|seen| seen == path),
            "without the switch, {path} got through (it reached {reached:?})"
        );
    }
    open.shutdown().await;

    let service = LoopbackService::start().await;
    let closed = TestServer::start(&[
        "--deny-private-networks",
        "--egress-allow-network",
        "127.0.0.2/32",
    ])
    .await;
    reach(&closed, &site, &service).await;
    // A redirect from the allowed site into the loopback service.
    let redirect = closed
        .post(
            "/v1/content",
            json!({ "url": site.url(&format!("/redirect-to?origin={}", service.origin)) }),
        )
        .await;
    let message = error_message(redirect, 502, "navigation_failed").await;
    assert!(message.contains("egress policy refused"), "{message}");
    // The job's own URL is refused before any browser work.
    let direct = closed
        .post(
            "/v1/content",
            json!({ "url": format!("{}/direct", service.origin) }),
        )
        .await;
    error_message(direct, 400, "url_not_allowed").await;
    assert_eq!(
        service.seen(),
        Vec::<String>::new(),
        "the loopback service was reached with private networks denied"
    );
    let metrics = closed.get("/metrics").await.text().await.expect("metrics");
    let refused: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("pagewright_egress_refused_total "))
        .and_then(|count| count.trim().parse().ok())
        .expect("the refusal count");
    assert!(refused >= 8, "the proxy counted its refusals ({refused})");
    closed.shutdown().await;
}

/// A DNS server on `127.0.0.153:53` for one name: its first `public_answers` A queries get
/// `127.0.0.2`, every later one `127.0.0.1` (the rebinding trick); AAAA queries get no address, other
/// names NXDOMAIN. Counts the A queries it answered.
async fn rebinding_dns(name: &'static str, public_answers: usize) -> Arc<Mutex<usize>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.153:53")
        .await
        .expect("bind the DNS stub (port 53 needs root)");
    let queries = Arc::new(Mutex::new(0));
    let counted = queries.clone();
    tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        while let Ok((read, from)) = socket.recv_from(&mut buffer).await {
            let query = &buffer[..read];
            let Some(answer) = dns_answer(query, name, &counted, public_answers) else {
                continue;
            };
            let _ = socket.send_to(&answer, from).await;
        }
    });
    queries
}

/// The answer to one DNS query (RFC 1035 wire format), or `None` for what is not a query.
fn dns_answer(
    query: &[u8],
    name: &str,
    queries: &Mutex<usize>,
    public_answers: usize,
) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to a zero byte, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    while *query.get(at)? != 0 {
        let length = usize::from(query[at]);
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + length)?).to_lowercase());
        at += 1 + length;
    }
    let question_end = at + 5;
    let kind = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let known = labels.join(".") == name;
    let mut answer = query[..2].to_vec();
    // A response, recursion available; NXDOMAIN for other names.
    answer.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
    let address = if known && kind == 1 {
        let mut count = queries.lock().expect("lock");
        *count += 1;
        Some(if *count <= public_answers {
            [127, 0, 0, 2]
        } else {
            [127, 0, 0, 1]
        })
    } else {
        None
    };
    answer.extend_from_slice(&[0, 1, 0, u8::from(address.is_some()), 0, 0, 0, 0]);
    answer.extend_from_slice(query.get(12..question_end)?);
    if let Some(address) = address {
        // A pointer to the question's name, type A, class IN, TTL 0, four bytes of address.
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        answer.extend_from_slice(&address);
    }
    Some(answer)
}

/// A site on `127.0.0.2:port` that closes every connection after its answer (so each request
/// needs a new connection, and a new lookup): `/` is a page whose script fetches `/secret` from its
/// own origin.
async fn closing_site(listener: tokio::net::TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buffer = vec![0; 4096];
            let read = stream.read(&mut buffer).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
            let body = if request.starts_with("GET / ") {
                "<!doctype html><p id='public'>the public page</p>\
                 <script>fetch('/secret').then(r => r.text()).then(t => document.title = t).catch(() => document.title = 'refused')</script>"
            } else {
                "public"
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[tokio::test]
async fn a_name_that_resolves_elsewhere_the_second_time_gets_nowhere() {
    // The server needs a resolver of the test's own: a mount namespace where /etc/resolv.conf names
    // the stub. Both need root (as CI runs).
    if !std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    }) {
        eprintln!("skipped: the rebinding test needs root for its DNS stub and mount namespace");
        return;
    }
    const NAME: &str = "rebind.pagewright.test";
    // Two public answers: the API's check of the job's URL and the proxy's connection for the
    // document. Every later lookup says 127.0.0.1.
    let queries = rebinding_dns(NAME, 2).await;
    let public = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind");
    let port = public.local_addr().expect("address").port();
    tokio::spawn(closing_site(public));
    let service = LoopbackService::start_on(port).await;

    let folder = tempfile::tempdir().expect("a temporary folder");
    let resolv = folder.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.153\noptions attempts:1 timeout:2\n",
    )
    .expect("write");
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec \"$0\" \"$@\"",
        resolv.display()
    );
    let data = folder.path().join("data");
    let server = crate::harness::ServerProcess::start_wrapped(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ],
        &[
            "--data-dir",
            data.to_str().expect("UTF-8"),
            "--deny-private-networks",
            "--egress-allow-network",
            "127.0.0.2/32",
        ],
        &[],
        &folder.path().join("server.log"),
    )
    .await;
    let response = server
        .post(
            "/v1/content",
            json!({ "url": format!("http://{NAME}:{port}/"), "goto": { "wait_until": "networkidle" } }),
        )
        .await;
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["html"]
            .as_str()
            .expect("html")
            .contains("the public page"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        *queries.lock().expect("lock") > 2,
        "the page's fetch looked the name up again (the rebinding was tried)"
    );
    assert_eq!(
        service.seen(),
        Vec::<String>::new(),
        "the loopback service was reached through a name that rebound to it"
    );
}
