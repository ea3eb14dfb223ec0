//! Test harness: a real pagewright server on 127.0.0.1:0 with a real Chromium, started through the
//! same entry points as `pagewright serve` (`cli::serve_settings`, `start_services`, `serve`) and
//! driven over HTTP only; the fixture site and `eventually` come from `tests/support/`.

use std::time::Duration;

use axum::http::HeaderMap;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::eventually::eventually;
pub use crate::site::{FixtureSite, SeenRequest};

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The server's own data directory, unless the test gave one.
    _data_dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with `pagewright serve` flags (plus a loopback port) and waits for its
    /// browsers.
    pub async fn start(flags: &[&str]) -> Self {
        Self::with_guests(&[], flags).await
    }

    /// Starts a server that loads the test guests `guests` (`tests/guests/NAME`) as plugins of those
    /// names (`--plugin NAME=PATH`), with `flags`.
    pub async fn with_guests(guests: &[&str], flags: &[&str]) -> Self {
        // reqwest's TLS has no crypto provider of its own: every client needs the process's first.
        pagewright::install_tls_provider();
        let mut argv: Vec<String> = ["pagewright", "serve", "--listen", "127.0.0.1:0"]
            .map(String::from)
            .into();
        argv.extend(flags.iter().map(|flag| flag.to_string()));
        for guest in guests {
            argv.push("--plugin".into());
            argv.push(pagewright_test_guests::plugin_flag(guest));
        }
        let data_dir = if flags.contains(&"--data-dir") {
            None
        } else {
            let dir = tempfile::tempdir().expect("a temporary data directory");
            argv.push("--data-dir".into());
            argv.push(dir.path().to_str().expect("a UTF-8 path").to_owned());
            Some(dir)
        };
        let settings = pagewright::cli::serve_settings(argv).expect("settings are valid");
        let listener = TcpListener::bind(settings.listen).await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let services = pagewright::start_services(settings)
            .await
            .expect("services start");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(pagewright::serve(services, listener, async {
            let _ = stopped.await;
        }));
        let server = Self {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _data_dir: data_dir,
        };
        server.wait_for_browsers().await;
        server
    }

    /// Waits until every shard's browser is connected (`/health` says so, and it is always open).
    pub async fn wait_for_browsers(&self) {
        eventually(
            "every browser is connected",
            Duration::from_secs(30),
            || async {
                let health = self.get("/health").await;
                let up = health.status() == 200;
                let health: serde_json::Value = health.json().await.ok()?;
                (up && health["shards_up"] == health["shards"]).then_some(())
            },
        )
        .await;
    }

    /// The process id of shard `shard`'s Chromium, from `/v1/status`.
    pub async fn browser_pid(&self, shard: usize) -> u64 {
        self.get_json("/v1/status").await["shards"][shard]["browser"]["pid"]
            .as_u64()
            .expect("a browser pid")
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
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A server as its own process (`pagewright serve`), for what an in-process server cannot show: a
/// SIGKILL mid-job, a SIGTERM's graceful shutdown, several hosts of a farm. Its log goes to a file
/// ([`ServerProcess::log`]). Killed when dropped.
pub struct ServerProcess {
    pub base: String,
    pub client: reqwest::Client,
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts `pagewright serve` on a free loopback port with `flags` (which name its data
    /// directory) and waits for its browsers; its log goes to `log`.
    pub async fn start(flags: &[&str], log: &std::path::Path) -> Self {
        Self::start_with_env(flags, &[], log).await
    }

    /// [`ServerProcess::start`], with `env` added to the server's environment.
    pub async fn start_with_env(
        flags: &[&str],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Self {
        Self::start_wrapped(&[], flags, env, log).await
    }

    /// [`ServerProcess::start_with_env`], the server started by `wrapper` (a command that ends by
    /// running its arguments, e.g. `unshare ... sh -c '...; exec "$0" "$@"'`).
    pub async fn start_wrapped(
        wrapper: &[&str],
        flags: &[&str],
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Self {
        pagewright::install_tls_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        let log_file = std::fs::File::create(log).expect("a log file");
        let pagewright = env!("CARGO_BIN_EXE_pagewright");
        let mut command = match wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = std::process::Command::new(program);
                command.args(arguments).arg(pagewright);
                command
            }
            None => std::process::Command::new(pagewright),
        };
        let child = command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(flags)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("pagewright starts");
        let server = Self {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            child,
            log: log.to_owned(),
        };
        eventually(
            "the server answers and its browsers are up",
            Duration::from_secs(60),
            || async {
                let health = server
                    .client
                    .get(format!("{}/health", server.base))
                    .send()
                    .await
                    .ok()?;
                (health.status() == 200).then_some(())
            },
        )
        .await;
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// SIGKILL, as the OOM killer or a power cut would: nothing runs after it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL pagewright");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, as an orchestrator stops a server; waits for it to exit and returns whether it
    /// exited cleanly.
    pub fn terminate(mut self) -> bool {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        self.child.wait().expect("reaped").success()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback webhook receiver: each post's headers and body, on a channel.
pub async fn webhook_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(HeaderMap, Vec<u8>)>,
) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let sender = sender.clone();
            async move {
                let _ = sender.send((headers, body.to_vec()));
                "thanks"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, receiver)
}

/// The Standard Webhooks signature of a post: `v1,` and the base64 HMAC-SHA256 of
/// `{webhook-id}.{webhook-timestamp}.{body}` under `key`, computed here from the scheme's text.
pub fn standard_webhook_signature(key: &[u8], headers: &HeaderMap, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::Mac;
    let header = |name: &str| headers[name].to_str().expect("an ASCII header").to_owned();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
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

/// Runs a component's build script (an example's `plugins/examples/build.sh LANG`, a template's
/// `build.sh`), which prints the component's path last, and reads the component; `what` names the
/// build in a failure.
pub fn built_component(build: &mut std::process::Command, what: &str) -> Vec<u8> {
    let output = build
        .output()
        .unwrap_or_else(|error| panic!("running the build of {what}: {error}"));
    assert!(
        output.status.success(),
        "building {what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .last()
        .expect("the build prints the component's path");
    std::fs::read(path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}
