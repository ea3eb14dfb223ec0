//! browser: owns the shared Chromium process: launches it, drives its CDP connection, notices when it
//! dies and relaunches it.
//!
//! One supervisor task per browser runs [`supervise`]: launch, publish a [`BrowserSession`] on a watch
//! channel, then poll chromiumoxide's `Handler` until the connection fails or the process exits. When that
//! happens the session is marked dead (everyone holding it sees [`BrowserSession::died`] resolve and every
//! pending CDP call fails at once, because the handler is dropped), and a new browser is launched with
//! backoff. The pool holds sessions, never the supervisor's internals, so it can tell a page of a dead
//! browser by its generation.
//!
//! Besides pages (which `page/` opens), a session offers what concerns the whole browser: browser
//! contexts (one per isolation key, created and disposed of by the pool, with downloads denied), the
//! renderer crashes Chromium reports, and closing the windows pages open on their own (popups).

mod devtools;
mod launch;

pub use launch::CHROMIUM_FLAGS;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::{
    BrowserContextId, SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CloseTargetParams, CreateBrowserContextParams, DisposeBrowserContextParams, EventTargetCrashed,
    EventTargetCreated,
};
use chromiumoxide::error::CdpError;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::egress::EgressProxy;
use crate::metrics::Metrics;
use crate::topology::Node;

/// Where Chromium comes from and how it starts.
#[derive(Debug, Clone)]
pub struct BrowserSettings {
    pub executable: PathBuf,
    /// How long Chromium may take to answer over DevTools once started.
    pub launch_timeout: Duration,
    /// The NUMA node whose CPUs the browser's processes are pinned to and whose memory they
    /// prefer (a shard's); `None` leaves them wherever the kernel puts them.
    pub node: Option<Node>,
    /// Chromium's own sandbox: its renderers run under seccomp-bpf in namespaces of their own, so a
    /// page that exploits a renderer bug is still held in. Off only when asked for
    /// (`--no-chromium-sandbox`).
    pub sandbox: bool,
    /// The unprivileged account Chromium runs as; `None` runs it as the server's own user. Chromium
    /// refuses its sandbox as root, so a server running as root runs it as someone else.
    pub user: Option<ChromiumUser>,
    /// The proxy every request of the browser goes through (`egress`), loopback included. `None`
    /// connects directly (a browser for the host's own tests or `pagewright render`).
    pub egress: Option<EgressProxy>,
}

/// An account to run Chromium as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChromiumUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl ChromiumUser {
    /// The account Chromium runs as when none is named: `nobody` if the server runs as root,
    /// else the server's own user (`None`).
    pub fn default_for_this_process() -> Option<Self> {
        if crate::sys::running_as_root() {
            Self::named("nobody").ok().flatten()
        } else {
            None
        }
    }

    /// The account `name`, if the system has it.
    pub fn named(name: &str) -> std::io::Result<Option<Self>> {
        Ok(crate::sys::user_ids(name)?.map(|(uid, gid)| Self {
            name: name.to_owned(),
            uid,
            gid,
        }))
    }
}

impl BrowserSettings {
    /// It takes ~270 ms on a 2-core machine to answer over DevTools; a loaded machine can take
    /// seconds.
    pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);

    /// Chromium at `executable`, with the default launch timeout, unpinned, sandboxed (as `nobody`
    /// if this process is root).
    pub fn new(executable: PathBuf) -> Self {
        Self {
            executable,
            launch_timeout: Self::LAUNCH_TIMEOUT,
            node: None,
            sandbox: true,
            user: ChromiumUser::default_for_this_process(),
            egress: None,
        }
    }
}

/// `explicit` if given and present, else Debian's Chromium. Debian's `/usr/bin/chromium` is a shell
/// wrapper; the binary it runs lives in `/usr/lib/chromium/chromium` and starts ~70 ms faster
/// without the wrapper's checks. The error says where it looked.
pub fn locate_chrome(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.exists() {
            Ok(path)
        } else {
            Err(format!("{} (from --chrome/$CHROME)", path.display()))
        };
    }
    let wrapper = PathBuf::from("/usr/bin/chromium");
    let binary = PathBuf::from("/usr/lib/chromium/chromium");
    if wrapper.exists() && binary.exists() {
        Ok(binary)
    } else if wrapper.exists() {
        Ok(wrapper)
    } else {
        Err("$CHROME (unset) and /usr/bin/chromium".into())
    }
}

#[cfg(test)]
impl BrowserSupervisor {
    /// A supervised Chromium for the host's own tests (`$CHROME`, else Debian's), once connected.
    pub(crate) async fn start_for_tests() -> (Self, Arc<BrowserSession>) {
        let executable = locate_chrome(std::env::var_os("CHROME").map(PathBuf::from))
            .unwrap_or_else(|looked_at| panic!("these tests need Chromium; looked at {looked_at}"));
        let supervisor = Self::start(BrowserSettings::new(executable), Metrics::new());
        let session = supervisor
            .ready(Instant::now() + Duration::from_secs(30))
            .await
            .expect("Chromium starts");
        (supervisor, session)
    }
}

/// Upper bound for disposing of a context: a hung browser must not hold up its caller.
const CDP_CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

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
    #[error("Chromium exited while starting; it said: {stderr}")]
    ExitedAtStart { stderr: String },
    #[error(
        "Chromium could not start its sandbox. It needs unprivileged user namespaces (a container \
         runtime's default seccomp profile may block them: allow `clone`/`unshare` of user \
         namespaces, or sysctl kernel.unprivileged_userns_clone=1), and must not run as root \
         (--chromium-user names the account it runs as). --no-chromium-sandbox runs it without \
         one, leaving pages one renderer bug away from the host. It said: {stderr}"
    )]
    NoSandbox { stderr: String },
    #[error("Chromium did not answer over DevTools within {0:?} of starting")]
    LaunchTimeout(Duration),
    #[error("connecting to Chromium's DevTools at {url} failed: {source}")]
    Connect {
        url: String,
        #[source]
        source: CdpError,
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
    /// Where its contexts' requests go: the egress proxy's listeners.
    egress: Option<EgressProxy>,
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

    /// A new browser context for the isolation key `key`: its own cookies, storage and cache, and
    /// the key's proxy when its jobs named one (`job::proxy_route`; the browser's own otherwise).
    /// Downloads are denied in it: a file a page offers is never written (Chromium's default would
    /// save it in the profile).
    pub async fn create_context(&self, key: &str) -> Result<BrowserContextId, CdpError> {
        let mut params = CreateBrowserContextParams::default();
        if let Some(route) = crate::job::proxy_route(key) {
            let listener = self
                .egress
                .as_ref()
                .and_then(|egress| egress.route_url(route))
                .ok_or_else(|| {
                    CdpError::ChromeMessage(format!(
                        "no listener for proxy {route} on this host: a job must start it first"
                    ))
                })?;
            params.proxy_server = Some(listener);
            // As for the browser's own proxy: loopback goes through it too.
            params.proxy_bypass_list = Some("<-loopback>".into());
        }
        let context = self
            .browser
            .execute(params)
            .await?
            .result
            .browser_context_id;
        let deny_downloads = SetDownloadBehaviorParams::builder()
            .behavior(SetDownloadBehaviorBehavior::Deny)
            .browser_context_id(context.clone())
            .build()
            .map_err(CdpError::ChromeMessage)?;
        self.browser.execute(deny_downloads).await?;
        Ok(context)
    }

    /// Disposes of a context whose pages are all closed. Best effort: a browser that does not answer
    /// in time keeps it until it dies.
    pub async fn dispose_context(&self, id: BrowserContextId) {
        let dispose = self.browser.execute(DisposeBrowserContextParams::new(id));
        let _ = tokio::time::timeout(CDP_CLEANUP_TIMEOUT, dispose).await;
    }

    /// Calls `crashed` with the target id of every page whose renderer crashes, until this browser
    /// dies.
    pub async fn watch_crashes(&self, mut crashed: impl FnMut(&str)) {
        let Ok(mut crashes) = self.browser.event_listener::<EventTargetCrashed>().await else {
            return;
        };
        loop {
            let event = tokio::select! {
                event = crashes.next() => event,
                () = self.died() => None,
            };
            let Some(event) = event else {
                return;
            };
            tracing::warn!(target = ?event.target_id, status = %event.status, "a renderer crashed");
            crashed(event.target_id.inner());
        }
    }
}

impl BrowserSession {
    /// Closes every window a page opens on its own (`window.open`, a `target=_blank` link or form)
    /// the moment Chromium reports it, until this browser dies: a job renders the page it asked for,
    /// and a popup would run a stranger's page in a renderer nobody watches until its context goes.
    async fn close_popups(&self) {
        let Ok(mut created) = self.browser.event_listener::<EventTargetCreated>().await else {
            return;
        };
        loop {
            let event = tokio::select! {
                event = created.next() => event,
                () = self.died() => None,
            };
            let Some(event) = event else {
                return;
            };
            let target = &event.target_info;
            // The pool's own pages are opened by CDP, with no opener; a popup has one (its frame,
            // even when opened with `noopener`).
            if target.r#type != "page"
                || (target.opener_id.is_none() && target.opener_frame_id.is_none())
            {
                continue;
            }
            tracing::debug!(url = %target.url, "closing a window a page opened");
            let close = self
                .browser
                .execute(CloseTargetParams::new(target.target_id.clone()));
            if tokio::time::timeout(CDP_CLEANUP_TIMEOUT, close)
                .await
                .is_err()
            {
                tracing::warn!(target = ?target.target_id, "closing a popup timed out");
            }
        }
    }
}

/// Handle to the supervised browser. Cheap to clone.
#[derive(Clone)]
pub struct BrowserSupervisor {
    shared: Arc<Shared>,
    egress: Option<EgressProxy>,
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
        let egress = settings.egress.clone();
        let shared = Arc::new(Shared {
            state: watch::Sender::new(BrowserState::Starting),
            stop: watch::Sender::new(false),
            restarts: AtomicU64::new(0),
            task: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(supervise(settings, metrics, shared.clone()));
        *lock(&shared.task) = Some(task);
        Self { shared, egress }
    }

    /// The egress proxy this browser's pages go through.
    pub fn egress(&self) -> Option<&EgressProxy> {
        self.egress.as_ref()
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
            launched = launch::launch(&settings) => launched,
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
        // The handler must be polled from here on: every CDP call goes through it.
        let mut handler = tokio::spawn(drive(launched.handler));
        let version = launched.version;
        tracing::info!(pid = launched.pid, generation, %version, "Chromium is up");
        let session = Arc::new(BrowserSession {
            generation,
            pid: launched.pid,
            version,
            browser: launched.browser,
            alive: watch::Sender::new(true),
            egress: settings.egress.clone(),
        });
        tokio::spawn({
            let session = session.clone();
            async move { session.close_popups().await }
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
            Err(CdpError::InvalidMessage(..)) => {}
            Err(CdpError::Serde(_)) => {}
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
