//! Starting one Chromium process and connecting chromiumoxide to it.
//!
//! We spawn Chromium ourselves instead of `chromiumoxide::Browser::launch` so that we own the process:
//! its pid (for memory figures and kill-on-failure), its stderr (drained, so a chatty browser never blocks
//! on a full pipe), its user, sandbox, environment and proxy, and its CPU affinity and memory policy
//! (a NUMA shard's). DevTools runs over a pipe, never a port (`devtools.rs`); chromiumoxide connects
//! to the pipe's bridge, and Chromium is up once it answers there.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use chromiumoxide::handler::HandlerConfig;
use chromiumoxide::{Browser, Handler};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

use super::devtools::DevtoolsPipe;
use super::{BrowserError, BrowserSettings};

/// Flags for every launch. The first group is required on this kind of machine (measured): without the
/// background-networking flags Chromium keeps dialling Google hosts that a closed network refuses.
/// The rest keep a headless render farm deterministic and lean.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Each browser context opens a window with an omnibox renderer unless the omnibox features are off:
    // ~50 MB per context with them, ~22 MB without (measured). The back/forward cache keeps every
    // page's previous document (and its renderer) alive across navigations, which a pooled page makes
    // thousands of: 18 renderers for 8 pages with it, 10 without (measured).
    "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup,TranslateUI,MediaRouter,BackForwardCache",
    // /dev/shm is small in containers; Chromium falls back to /tmp with this.
    "--disable-dev-shm-usage",
    // Pages in the pool are never visible: without these Chromium throttles their timers and renderers.
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-ipc-flooding-protection",
    "--disable-hang-monitor",
    "--disable-breakpad",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--force-color-profile=srgb",
    "--hide-scrollbars",
    "--mute-audio",
];

/// A running Chromium with chromiumoxide attached. Dropping it kills the process.
pub(crate) struct Launched {
    pub browser: Browser,
    pub handler: Handler,
    pub child: Child,
    pub pid: u32,
    /// What the browser reported as its product, e.g. `Chrome/156.0.8078.73`.
    pub version: String,
    /// Kept alive for the life of the process; removed when dropped.
    pub _user_data_dir: tempfile::TempDir,
}

/// The environment variables Chromium gets from the server: where to find programs, fonts and its
/// home, the locale and the time zone. Everything else (`PAGEWRIGHT_*` tokens and secrets, database
/// URLs, cloud credentials) stays with the server.
fn passed_to_chromium(name: &str) -> bool {
    matches!(
        name,
        "PATH"
            | "HOME"
            | "USER"
            | "LOGNAME"
            | "TMPDIR"
            | "TZ"
            | "LANG"
            | "LANGUAGE"
            | "FONTCONFIG_FILE"
            | "FONTCONFIG_PATH"
            | "XDG_CONFIG_HOME"
            | "XDG_CACHE_HOME"
            | "XDG_DATA_HOME"
            | "XDG_DATA_DIRS"
            | "XDG_RUNTIME_DIR"
    ) || name.starts_with("LC_")
}

/// Starts Chromium as `settings` say, with a fresh profile directory, and connects to it; pinned to
/// the node's CPUs and preferring its memory, if given (every process Chromium starts inherits both).
pub(crate) async fn launch(settings: &BrowserSettings) -> Result<Launched, BrowserError> {
    let executable = &settings.executable;
    // A fresh profile per launch: a shared one makes a second Chromium refuse with `SingletonLock`.
    let user_data_dir = tempfile::Builder::new()
        .prefix("pagewright-chromium-")
        .tempdir()
        .map_err(BrowserError::Profile)?;
    let mut command = Command::new(executable);
    // Chromium and every renderer it starts see only the environment they need: not the server's
    // tokens, secrets or database URL (a renderer's `/proc/PID/environ` is readable by its user).
    command.env_clear().envs(
        std::env::vars_os().filter(|(name, _)| name.to_str().is_some_and(passed_to_chromium)),
    );
    if let Some(user) = &settings.user {
        // Its own account, which owns the profile and nothing of the server's: a home of its own
        // (the server's is not its to write), and no supplementary groups (std drops them).
        std::os::unix::fs::chown(user_data_dir.path(), Some(user.uid), Some(user.gid))
            .map_err(BrowserError::Profile)?;
        let home = user_data_dir.path();
        command
            .uid(user.uid)
            .gid(user.gid)
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"));
    }
    // Armed after the user change (std changes it before running these), which would clear it.
    // Chromium must not outlive pagewright, even one killed with SIGKILL.
    crate::sys::kill_with_parent(&mut command);
    if let Some(node) = &settings.node {
        node.pinning().apply_to_child(&mut command);
    }
    if !settings.sandbox {
        command.arg("--no-sandbox");
    }
    if let Some(egress) = &settings.egress {
        command.args([
            format!("--proxy-server={}", egress.url()),
            // Chromium sends loopback requests around any proxy unless told otherwise.
            "--proxy-bypass-list=<-loopback>".to_owned(),
            // WebRTC would send UDP around the proxy.
            "--force-webrtc-ip-handling-policy".to_owned(),
            "--webrtc-ip-handling-policy=disable_non_proxied_udp".to_owned(),
        ]);
    }
    let devtools = DevtoolsPipe::new().map_err(BrowserError::Profile)?;
    devtools.pass_to(&mut command);
    let mut child = command
        .args(CHROMIUM_FLAGS)
        .arg("--remote-debugging-pipe")
        .arg(format!(
            "--user-data-dir={}",
            user_data_dir.path().display()
        ))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BrowserError::Spawn {
            executable: executable.display().to_string(),
            source,
        })?;
    let pid = child.id().unwrap_or_default();
    let said = child.stderr.take().map(drain).unwrap_or_default();
    let ws_url = devtools.bridge().await.map_err(BrowserError::Profile)?;

    let config = HandlerConfig {
        // Pages get their viewport from each job; chromiumoxide's 800x600 default would be one more
        // override to undo at reset.
        viewport: None,
        // Chromium 156 sends `Network.requestWillBeSentExtraInfo` in a shape chromiumoxide cannot
        // decode; ignoring undecodable messages keeps the connection up.
        ignore_invalid_messages: true,
        // chromiumoxide ignores certificate errors on every page unless told otherwise: a page
        // whose certificate does not verify fails, unless its job asks (`page.ignore_https_errors`).
        ignore_https_errors: false,
        ..HandlerConfig::default()
    };
    let (browser, mut handler) = Browser::connect_with_config(ws_url.clone(), config)
        .await
        .map_err(|source| BrowserError::Connect {
            url: ws_url,
            source,
        })?;
    // Up once it answers over the pipe; an exit before that is a launch failure, with what it said.
    let timeout = settings.launch_timeout;
    let started = tokio::select! {
        version = browser.version() => version.ok(),
        _ = async { while handler.next().await.is_some() {} } => None,
        _ = child.wait() => None,
        _ = tokio::time::sleep(timeout) => return Err(BrowserError::LaunchTimeout(timeout)),
    };
    let Some(version) = started else {
        // Let stderr's last lines arrive.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let said = lock(&said).clone();
        return Err(
            if said.contains("No usable sandbox") || said.contains("without --no-sandbox") {
                BrowserError::NoSandbox { stderr: said }
            } else {
                BrowserError::ExitedAtStart { stderr: said }
            },
        );
    };
    Ok(Launched {
        browser,
        handler,
        child,
        pid,
        version: version.product,
        _user_data_dir: user_data_dir,
    })
}

/// Drains Chromium's stderr in the background (a full pipe would stall the browser), logging it at
/// debug level and keeping its first few KiB for the error if Chromium exits while starting.
fn drain(stderr: ChildStderr) -> Arc<Mutex<String>> {
    let said = Arc::new(Mutex::new(String::new()));
    let keep = said.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(target: "chromium", "{line}");
            let mut kept = lock(&keep);
            if kept.len() < 4096 {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
    });
    said
}

fn lock(said: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    said.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
