//! browser: owns the shared Chromium process: launches it, drives its CDP connection, notices when it
//! dies and relaunches it.
//!
//! One supervisor task per browser runs [`supervise`]: launch, publish a [`BrowserSession`] on a watch
//! channel, then poll chromiumoxide's `Handler` until the connection fails or the process exits. When that
//! happens the session is marked dead (everyone holding it sees [`BrowserSession::died`] resolve and every
//! pending CDP call fails at once, because the handler is dropped), and a new browser is launched with
//! backoff. The pool holds sessions, never the supervisor's internals, so it can tell a page of a dead
//! browser by its generation.

mod launch;

pub use launch::CHROMIUM_FLAGS;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::BrowserSettings;
use crate::metrics::Metrics;

/// What went wrong with the browser, by step.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("creating Chromium's profile directory failed: {0}")]
    Profile(#[source] std::io::Error),
    #[error("starting Chromium at {executable} failed: {source}")]
    Spawn {
        executable: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Chromium exited before printing its DevTools address; it said: {stderr}")]
    NoDevtoolsAddress { stderr: String },
    #[error("Chromium did not print its DevTools address within {0:?}")]
    LaunchTimeout(Duration),
    #[error("connecting to Chromium's DevTools at {url} failed: {source}")]
    Connect {
        url: String,
        #[source]
        source: chromiumoxide::error::CdpError,
    },
    #[error("the browser is not available: {0}")]
    Unavailable(String),
}

/// The supervisor's view of the browser, published to everyone who asks.
#[derive(Clone, Debug)]
pub enum BrowserState {
    /// The first launch has not finished yet.
    Starting,
    /// A connected browser.
    Ready(Arc<BrowserSession>),
    /// The browser died or failed to start; a relaunch is pending.
    Down { reason: String },
    /// Shut down on purpose; nothing will be relaunched.
    Stopped,
}

/// One launched browser process and its CDP connection, alive until it dies or is replaced.
pub struct BrowserSession {
    /// Counts launches from 1, so pages and contexts of a dead browser are recognisable.
    pub generation: u64,
    /// The Chromium browser process id.
    pub pid: u32,
    /// What the browser reported as its product, e.g. `Chrome/156.0.8078.73`.
    pub version: String,
    browser: chromiumoxide::Browser,
    alive: watch::Sender<bool>,
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSession")
            .field("generation", &self.generation)
            .field("pid", &self.pid)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl BrowserSession {
    /// The chromiumoxide browser, for creating pages and contexts and browser-level commands.
    pub fn cdp(&self) -> &chromiumoxide::Browser {
        &self.browser
    }

    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// Resolves once this browser is dead (or immediately if it already is).
    pub async fn died(&self) {
        let mut rx = self.alive.subscribe();
        // An error means the sender is gone, which also means dead.
        let _ = rx.wait_for(|alive| !alive).await;
    }
}

/// Handle to the supervised browser. Cheap to clone.
#[derive(Clone)]
pub struct BrowserSupervisor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BrowserSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSupervisor")
            .field("restarts", &self.restarts())
            .finish()
    }
}

struct Shared {
    state: watch::Sender<BrowserState>,
    stop: watch::Sender<bool>,
    restarts: AtomicU64,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl BrowserSupervisor {
    /// Starts the supervisor task, which launches the first browser in the background.
    pub fn start(settings: BrowserSettings, metrics: Metrics) -> Self {
        let shared = Arc::new(Shared {
            state: watch::Sender::new(BrowserState::Starting),
            stop: watch::Sender::new(false),
            restarts: AtomicU64::new(0),
            task: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(supervise(settings, metrics, shared.clone()));
        *lock(&shared.task) = Some(task);
        Self { shared }
    }

    /// The connected browser, if there is one now.
    pub fn current(&self) -> Option<Arc<BrowserSession>> {
        match &*self.shared.state.borrow() {
            BrowserState::Ready(session) if session.is_alive() => Some(session.clone()),
            _ => None,
        }
    }

    /// The published state, for status pages.
    pub fn state(&self) -> BrowserState {
        self.shared.state.borrow().clone()
    }

    /// Waits until a browser is connected, or fails at `deadline` with the reason it is not.
    pub async fn ready(&self, deadline: Instant) -> Result<Arc<BrowserSession>, BrowserError> {
        let mut rx = self.shared.state.subscribe();
        let wait = rx.wait_for(|state| match state {
            BrowserState::Ready(session) => session.is_alive(),
            BrowserState::Stopped => true,
            _ => false,
        });
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(state)) => match &*state {
                BrowserState::Ready(session) => Ok(session.clone()),
                _ => Err(BrowserError::Unavailable(
                    "the server is shutting down".into(),
                )),
            },
            Ok(Err(_)) => Err(BrowserError::Unavailable(
                "the supervisor has stopped".into(),
            )),
            Err(_) => Err(BrowserError::Unavailable(
                match &*self.shared.state.borrow() {
                    BrowserState::Starting => "Chromium is still starting".into(),
                    BrowserState::Down { reason } => format!("Chromium is down ({reason})"),
                    BrowserState::Ready(_) => "Chromium died and is being relaunched".into(),
                    BrowserState::Stopped => "the server is shutting down".into(),
                },
            )),
        }
    }

    /// How many times the browser was relaunched after dying.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Closes the browser and stops relaunching it. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        let task = lock(&self.shared.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing holding this lock can panic half-way through an update, so a poisoned lock is still whole.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// First and longest pause between failed launches: quick to recover from a one-off crash, but a browser
/// that cannot start at all must not spin the CPU.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

async fn supervise(settings: BrowserSettings, metrics: Metrics, shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    let mut backoff = BACKOFF_MIN;
    let mut generation = 0;
    loop {
        let stopping = *stop.borrow();
        if stopping {
            break;
        }
        let launched = tokio::select! {
            launched = launch::launch(&settings.executable, settings.launch_timeout, settings.node.as_ref()) => launched,
            () = stopped(&mut stop) => break,
        };
        let mut launched = match launched {
            Ok(launched) => launched,
            Err(error) => {
                tracing::error!(%error, "launching Chromium failed; retrying in {backoff:?}");
                shared.state.send_replace(BrowserState::Down {
                    reason: error.to_string(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    () = stopped(&mut stop) => break,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        generation += 1;
        // The handler must be polled from here on: every CDP call, `version()` included, goes through it.
        let mut handler = tokio::spawn(drive(launched.handler));
        let version =
            match tokio::time::timeout(Duration::from_secs(5), launched.browser.version()).await {
                Ok(Ok(version)) => version.product,
                _ => String::from("unknown"),
            };
        tracing::info!(pid = launched.pid, generation, %version, "Chromium is up");
        let session = Arc::new(BrowserSession {
            generation,
            pid: launched.pid,
            version,
            browser: launched.browser,
            alive: watch::Sender::new(true),
        });
        shared
            .state
            .send_replace(BrowserState::Ready(session.clone()));

        let child = &mut launched.child;
        let reason = tokio::select! {
            reason = &mut handler => reason.unwrap_or_else(|error| format!("the CDP handler task failed: {error}")),
            status = child.wait() => format!("the Chromium process exited ({status:?})"),
            () = stopped(&mut stop) => {
                close_gracefully(&session, child).await;
                handler.abort();
                session.alive.send_replace(false);
                break;
            }
        };
        // Dropping the handler fails every CDP call still waiting on this browser, at once.
        handler.abort();
        session.alive.send_replace(false);
        let _ = child.kill().await;
        tracing::error!(generation, %reason, "Chromium died; relaunching");
        shared.state.send_replace(BrowserState::Down { reason });
        shared.restarts.fetch_add(1, Ordering::Relaxed);
        metrics.browser_restarts.inc();
        backoff = BACKOFF_MIN;
        // `launched` (and with it the profile directory) goes away here.
    }
    shared.state.send_replace(BrowserState::Stopped);
}

/// Resolves once shutdown is asked for. Drops the watch guard before returning, so the caller may
/// await afterwards.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Polls the CDP handler until the connection fails. When the browser dies the stream does not end: it
/// yields websocket errors forever (measured), so the first error that is not an undecodable message
/// means the connection is gone.
async fn drive(mut handler: chromiumoxide::Handler) -> String {
    while let Some(event) = handler.next().await {
        match event {
            Ok(()) => {}
            Err(chromiumoxide::error::CdpError::InvalidMessage(..)) => {}
            Err(chromiumoxide::error::CdpError::Serde(_)) => {}
            Err(error) => return format!("the DevTools connection failed: {error}"),
        }
    }
    "the DevTools connection closed".into()
}

/// Asks Chromium to close and kills it if that takes longer than a second.
async fn close_gracefully(session: &BrowserSession, child: &mut tokio::process::Child) {
    let close = async {
        let _ = session
            .browser
            .execute(chromiumoxide::cdp::browser_protocol::browser::CloseParams::default())
            .await;
        let _ = child.wait().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    let _ = child.kill().await;
}
