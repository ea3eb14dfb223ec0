//! Test harness: a real pagewright server on 127.0.0.1:0 with a real Chromium, and a fixture site the
//! tests serve themselves on another loopback port.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use clap::Parser;
use pagewright::api::AppState;
use pagewright::config::{Cli, Command};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The server's own data directory, unless the test gave one.
    _data_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with `pagewright serve` flags (plus a loopback port) and waits for its browser.
    pub async fn start(flags: &[&str]) -> Self {
        // reqwest's TLS has no crypto provider of its own: every client needs the process's first.
        pagewright::install_tls_provider();
        let mut argv = vec!["pagewright", "serve", "--listen", "127.0.0.1:0"];
        argv.extend_from_slice(flags);
        let data_dir = if flags.contains(&"--data-dir") {
            None
        } else {
            Some(tempfile::tempdir().expect("a temporary data directory"))
        };
        if let Some(dir) = &data_dir {
            argv.extend(["--data-dir", dir.path().to_str().expect("a UTF-8 path")]);
        }
        let Command::Serve(args) = Cli::try_parse_from(argv).expect("flags parse").command else {
            panic!("parsed as another command");
        };
        let settings = args.validate().expect("settings are valid");
        let listener = TcpListener::bind(settings.listen).await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let state = pagewright::start_services(settings).expect("services start");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(pagewright::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        for shard in state.shards.iter() {
            shard
                .browser
                .ready(tokio::time::Instant::now() + Duration::from_secs(30))
                .await
                .expect("Chromium starts");
        }
        Self {
            base: format!("http://{address}"),
            state,
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _data_dir: data_dir,
        }
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request is answered")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request is answered")
    }

    /// `GET path`, answered with JSON (any status).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("a JSON answer")
    }

    /// Asserts that `/metrics` has a line containing `expected` (a metric with its labels and value).
    pub async fn assert_metric(&self, expected: &str) {
        let metrics = self
            .get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text");
        assert!(metrics.contains(expected), "no `{expected}` in:\n{metrics}");
    }

    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    /// Loads a test guest (`tests/guests/NAME`, built by `host/build.rs`) as a plugin named `name`.
    pub fn load_guest(&self, name: &str) {
        let path =
            std::path::Path::new(pagewright::plugin::TEST_GUESTS_DIR).join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        self.state
            .plugins
            .load(name, &bytes)
            .expect("the guest loads");
    }

    pub fn browser_pid(&self) -> u32 {
        self.state.shards[0]
            .browser
            .current()
            .expect("a browser is up")
            .pid
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts a JSON error response and returns its code.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    error_of(response, status).await.0
}

/// Asserts a JSON error response with `status` and `code` and returns its message.
pub async fn error_message(response: reqwest::Response, status: u16, code: &str) -> String {
    let (actual, message) = error_of(response, status).await;
    assert_eq!(actual, code, "error.code ({message})");
    message
}

/// Asserts a JSON error response with `status` and a non-empty message; its code and message.
async fn error_of(response: reqwest::Response, status: u16) -> (String, String) {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!message.is_empty(), "error.message: {body}");
    (code, message)
}

/// Width and height from a PNG header.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    (width, height)
}

/// The fixture site. Pages:
/// - `/`: a small page with a heading, links and a form;
/// - `/tall`: 3000 px tall;
/// - `/slow?ms=N`: answers after N ms;
/// - `/echo`: shows the request headers (cookies, user agent, extras) as JSON in the page;
/// - `/late`: adds `#late` 300 ms after load;
/// - `/spin`: loops forever in JavaScript after load;
/// - `/image`: a page with an image, and `/pixel.png` counts its requests;
/// - `/nocontent`: 204 No Content; `/download`: a file sent as an attachment;
/// - `/redirect`: 307 to `/`; `/starts-download`: a page that sends itself to `/download`;
/// - `/tour`: what the `page-tour` guest drives: a form whose button marks `#out` done, a tall body.
pub struct FixtureSite {
    pub base: String,
    pub pixel_requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: u64,
}

const INDEX: &str = r#"<!doctype html><html><head><title>Fixture</title></head>
<body style="background:#fff;margin:0">
<h1 id="title">Hello pagewright</h1>
<ul><li><a class="link" href="/one" data-n="1">One</a></li><li><a class="link" href="/two" data-n="2">Two</a></li></ul>
<input id="name" value=""><button id="go" onclick="document.getElementById('out').textContent = 'clicked ' + document.getElementById('name').value">Go</button>
<p id="out"></p>
<noscript><p id="noscript">scripts are off</p></noscript>
<div id="box" style="position:absolute;left:100px;top:200px;width:120px;height:80px;background:#c00"></div>
</body></html>"#;

const TOUR: &str = r#"<!doctype html><html><head><title>Tour</title></head>
<body><h1>Tour</h1><form onsubmit="return false"><input id="name"></form>
<button id="go" onclick="const out = document.getElementById('out'); out.textContent = 'hello ' + document.getElementById('name').value; out.className = 'done'">Go</button>
<p id="out" class="waiting"></p><div style="height:4000px"></div><p id="bottom">bottom</p></body></html>"#;

impl FixtureSite {
    pub async fn start() -> Self {
        let pixel_requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = pixel_requests.clone();
        let app = Router::new()
            .route("/", get(|| async { Html(INDEX) }))
            .route("/tour", get(|| async { Html(TOUR) }))
            .route(
                "/tall",
                get(|| async {
                    Html("<!doctype html><body style='margin:0'><div style='height:3000px;background:linear-gradient(#fff,#00f)'>tall</div></body>")
                }),
            )
            .route(
                "/slow",
                get(|Query(query): Query<SlowQuery>| async move {
                    tokio::time::sleep(Duration::from_millis(query.ms)).await;
                    Html("<!doctype html><p id='slow'>finally</p>")
                }),
            )
            .route(
                "/echo",
                get(|headers: HeaderMap| async move {
                    let map: std::collections::BTreeMap<String, String> = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    let json = serde_json::to_string(&map).unwrap_or_default();
                    Html(format!("<!doctype html><pre id='headers'>{}</pre>", html_escape(&json)))
                }),
            )
            .route(
                "/late",
                get(|| async {
                    Html("<!doctype html><body><script>setTimeout(() => { const p = document.createElement('p'); p.id = 'late'; p.textContent = 'here'; document.body.appendChild(p); }, 300)</script></body>")
                }),
            )
            .route(
                "/spin",
                get(|| async {
                    Html("<!doctype html><body><p>spinning</p><script>addEventListener('load', () => setTimeout(() => { while (true) {} }, 0))</script></body>")
                }),
            )
            .route(
                "/redirect",
                get(|| async { axum::response::Redirect::temporary("/") }),
            )
            .route(
                "/starts-download",
                get(|| async {
                    Html("<!doctype html><p id='landing'>Your download starts now</p><script>location.href = '/download'</script>")
                }),
            )
            .route(
                "/nocontent",
                get(|| async { axum::http::StatusCode::NO_CONTENT }),
            )
            .route(
                "/download",
                get(|| async {
                    (
                        [
                            (header::CONTENT_TYPE, "application/octet-stream"),
                            (header::CONTENT_DISPOSITION, "attachment; filename=data.bin"),
                        ],
                        vec![0u8; 4096],
                    )
                }),
            )
            .route(
                "/image",
                get(|| async { Html("<!doctype html><body><img id='pixel' src='/pixel.png'></body>") }),
            )
            .route(
                "/pixel.png",
                get(move || {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async {
                        // A 1x1 transparent PNG.
                        const PIXEL: &[u8] = &[
                            0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
                            0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
                            0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00,
                            0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49,
                            0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
                        ];
                        ([(header::CONTENT_TYPE, "image/png")], PIXEL).into_response()
                    }
                }),
            );
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind fixture site");
        let address = listener.local_addr().expect("fixture address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: format!("http://{address}"),
            pixel_requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
