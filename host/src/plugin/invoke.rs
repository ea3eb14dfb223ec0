//! One call into a plugin: a permit, a fresh store with every limit set, instantiation, the call, and
//! the outcome classified into a [`PluginError`] that names what stopped the plugin.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::{Store, Trap};

use super::bindings::pagewright::plugin::types::{self, Error as WitError};
use super::cpu::CpuTurnHandle;
use super::engine::{EPOCH_TICK, FUEL_YIELD_INTERVAL};
use super::error::GuestErrorKind;
use super::log::LogSink;
use super::page_resource::{PageResource, message};
use super::state::{CpuHook, MemoryRefusal, PageContext, PluginState};
use super::{HostInner, JobContext, Plugin, PluginError, Role, Usage};
use crate::job::Produced;
use crate::metrics::{PluginCallLabels, PluginLabels};
use crate::page::PageError;

/// Init scripts one page-script plugin may inject: each is a CDP call before navigation.
const MAX_INIT_SCRIPTS: usize = 32;

/// A scorer runs in the admission path of every job, so it gets a small budget whatever its own
/// limits: 10 M fuel is well under a millisecond of CPU here, and a scorer that needs more falls back
/// to the built-in score instead of holding up admission.
pub(super) const SCORE_FUEL: u64 = 10_000_000;
pub(super) const SCORE_TIMEOUT: Duration = Duration::from_millis(50);

/// What to call.
pub(super) enum Call {
    Extract(String),
    InitScripts(String),
    AfterLoad(String),
    Score(types::JobInfo),
    /// Instantiate, and look up every exported role's functions with the WIT's types, calling none.
    Verify,
}

impl Call {
    /// The WIT function called, for the call's span.
    fn function(&self) -> &'static str {
        match self {
            Self::Extract(_) => "extract",
            Self::InitScripts(_) => "init-scripts",
            Self::AfterLoad(_) => "after-load",
            Self::Score(_) => "score",
            Self::Verify => "verify",
        }
    }

    fn role(&self) -> Option<Role> {
        match self {
            Self::Extract(_) => Some(Role::Extractor),
            Self::InitScripts(_) | Self::AfterLoad(_) => Some(Role::PageScript),
            Self::Score(_) => Some(Role::Scorer),
            Self::Verify => None,
        }
    }
}

/// What a successful call returned.
pub(super) enum Returned {
    Output(Produced),
    Scripts(Vec<String>),
    Done,
    Score(f64),
}

impl Returned {
    /// Bytes the plugin handed the host, for the output cap.
    fn size(&self) -> usize {
        match self {
            Self::Output(output) => output.len(),
            Self::Scripts(scripts) => scripts.iter().map(String::len).sum(),
            Self::Done | Self::Score(_) => 0,
        }
    }

    /// Too much to take: over the output cap, or more init scripts than a page should get.
    fn too_large(&self, max_bytes: usize) -> bool {
        self.size() > max_bytes
            || matches!(self, Self::Scripts(scripts) if scripts.len() > MAX_INIT_SCRIPTS)
    }
}

pub(super) struct Invoked {
    /// The page, back from the store.
    pub page: Option<PageContext>,
    pub result: Result<Returned, PluginError>,
    pub usage: Usage,
}

/// One call of `plugin`, in a span of its own (`plugin NAME`, with the function, the fuel used, and
/// an error status if it failed).
pub(super) async fn invoke(
    inner: &HostInner,
    plugin: &Arc<Plugin>,
    call: Call,
    page: Option<PageContext>,
    job: JobContext,
) -> Invoked {
    let span = tracing::info_span!(
        "plugin",
        otel.name = %format_args!("plugin {}", plugin.name()),
        plugin.name = %plugin.name(),
        plugin.function = call.function(),
        plugin.fuel = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let invoked = invoke_in_span(inner, plugin, call, page, job)
        .instrument(span.clone())
        .await;
    span.record(
        "plugin.fuel",
        i64::try_from(invoked.usage.fuel).unwrap_or(i64::MAX),
    );
    if invoked.result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    invoked
}

async fn invoke_in_span(
    inner: &HostInner,
    plugin: &Arc<Plugin>,
    call: Call,
    page: Option<PageContext>,
    job: JobContext,
) -> Invoked {
    if let Some(Err(error)) = call.role().map(|role| plugin.require(role)) {
        return Invoked {
            page,
            result: Err(error),
            usage: Usage::default(),
        };
    }
    let mut limits = *plugin.limits();
    if matches!(call, Call::Score(_)) {
        limits.fuel = limits.fuel.min(SCORE_FUEL);
        limits.timeout = limits.timeout.min(SCORE_TIMEOUT);
    }
    // An upload's verifying instantiation is not a call a job made: it stays out of the metrics.
    let counted = !matches!(call, Call::Verify);
    let permit = match tokio::time::timeout_at(
        job.deadline,
        inner.instances.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) | Err(_) => {
            if counted {
                record(inner, plugin, "busy", Usage::default());
            }
            return Invoked {
                page,
                result: Err(PluginError::Busy),
                usage: Usage::default(),
            };
        }
    };

    let started = Instant::now();
    let limit = limits
        .timeout
        .min(job.deadline.saturating_duration_since(started));
    let log = LogSink::new(Arc::from(plugin.name()), job.id);
    let mut store = Store::new(
        &inner.engine,
        PluginState::new(
            log.clone(),
            limits.memory_bytes,
            inner.memory_budget.clone(),
            inner.settings.url_policy.clone(),
            page,
            inner.group(job.shard).cpu.turn(job.priority),
        ),
    );
    store.limiter(|state| &mut state.limiter);
    store.call_hook_async(CpuHook);
    let prepared = store
        .set_fuel(limits.fuel)
        .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL)));
    if let Err(error) = prepared {
        let page = store.into_data().page;
        return Invoked {
            page,
            result: Err(PluginError::Engine(format!(
                "setting the fuel budget: {error}"
            ))),
            usage: Usage::default(),
        };
    }
    store.epoch_deadline_trap();
    store.set_epoch_deadline(epoch_ticks(limit));

    // The epoch deadline stops guest code; the timeout also stops a plugin waiting in a host call.
    let cpu = store.data().cpu.handle();
    let outcome = tokio::time::timeout(
        limit,
        OffCpuWhenBlocked {
            call: std::pin::pin!(call_guest(&mut store, plugin, call)),
            cpu,
        },
    )
    .await;
    let usage = Usage {
        fuel: limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0)),
        wall: started.elapsed(),
    };
    let mut state = store.into_data();
    drop(permit);

    let name = || plugin.name().to_owned();
    // Stopped at the job's deadline (not the plugin's own limit) while a page operation had just
    // run out of the same time: the page is what took it, and the answer is the page's timeout,
    // whichever of the two noticed first (the operation's error, the epoch, or the wall clock while
    // the call waited for a CPU slot to go on).
    let timeout = |state: &mut PluginState| match state.last_page_error.take() {
        Some((_, error @ PageError::Timeout { .. }))
            if limit < limits.timeout && state.page_ran_out_of_job_time =>
        {
            PluginError::Page {
                plugin: name(),
                error,
            }
        }
        _ => PluginError::Timeout {
            plugin: name(),
            limit,
        },
    };
    let result = match outcome {
        Err(_elapsed) => Err(timeout(&mut state)),
        Ok(Ok(Ok(returned))) if returned.too_large(limits.output_bytes) => {
            Err(PluginError::OutputTooLarge {
                plugin: name(),
                size: returned.size(),
                limit: limits.output_bytes,
            })
        }
        Ok(Ok(Ok(returned))) => Ok(returned),
        Ok(Ok(Err(error))) => Err(returned_error(
            plugin.name(),
            error,
            state.last_page_error.take(),
        )),
        Ok(Err(trap)) if state.limiter.refused.is_some() => {
            tracing::debug!(plugin = plugin.name(), error = %trap, "plugin stopped at a memory limit");
            Err(match state.limiter.refused {
                Some(MemoryRefusal::Server) => PluginError::ServerMemory {
                    plugin: name(),
                    limit: inner.memory_budget.total(),
                },
                _ => PluginError::MemoryLimit {
                    plugin: name(),
                    limit: limits.memory_bytes,
                },
            })
        }
        Ok(Err(trap)) => Err(match trap.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel {
                plugin: name(),
                budget: limits.fuel,
            },
            Some(Trap::Interrupt) => timeout(&mut state),
            _ => {
                let mut message = trap
                    .downcast_ref::<Trap>()
                    .map_or_else(|| format!("{:#}", trap.root_cause()), Trap::to_string);
                if let Some(stderr) = log.stderr_tail() {
                    message = format!("{message}; it printed: {stderr}");
                }
                PluginError::Trapped {
                    plugin: name(),
                    message,
                }
            }
        }),
    };
    if counted {
        record(inner, plugin, outcome_label(&result), usage);
    }
    Invoked {
        page: state.page.take(),
        result,
        usage,
    }
}

/// Drives a plugin call and gives its CPU slot up whenever the call blocks: when the call's future
/// is pending without having woken itself. A fuel yield wakes its task before it returns pending,
/// so it keeps the slot (the call hook decides about preemption there); a host call waiting on
/// Chromium, a timer or anything else does not, and releases it. The call hook takes a slot again
/// before plugin code goes on.
struct OffCpuWhenBlocked<F> {
    call: F,
    cpu: CpuTurnHandle,
}

impl<F: Future + Unpin> Future for OffCpuWhenBlocked<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let woken = Arc::new(WakeFlag {
            woken: std::sync::atomic::AtomicBool::new(false),
            waker: cx.waker().clone(),
        });
        let waker = std::task::Waker::from(woken.clone());
        let polled =
            std::pin::Pin::new(&mut self.call).poll(&mut std::task::Context::from_waker(&waker));
        if polled.is_pending() && !woken.woken.load(std::sync::atomic::Ordering::Relaxed) {
            self.cpu.release();
        }
        polled
    }
}

/// A waker that remembers being woken, and passes the wake on.
struct WakeFlag {
    woken: std::sync::atomic::AtomicBool,
    waker: std::task::Waker,
}

impl std::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Relaxed);
        self.waker.wake_by_ref();
    }
}

async fn call_guest(
    store: &mut Store<PluginState>,
    plugin: &Plugin,
    call: Call,
) -> wasmtime::Result<Result<Returned, WitError>> {
    let instance = plugin.pre.instantiate_async(&mut *store).await?;
    let exports = &plugin.exports;
    Ok(match call {
        Call::Extract(params) => {
            let page = store.data_mut().table.push(PageResource)?;
            exports
                .extract(store, &instance, page, &params)
                .await?
                .map(|output| Returned::Output(output.into()))
        }
        Call::InitScripts(params) => exports
            .init_scripts(store, &instance, &params)
            .await?
            .map(Returned::Scripts),
        Call::AfterLoad(params) => {
            let page = store.data_mut().table.push(PageResource)?;
            exports
                .after_load(store, &instance, page, &params)
                .await?
                .map(|()| Returned::Done)
        }
        Call::Score(job) => Ok(Returned::Score(
            exports.score(store, &instance, &job).await?,
        )),
        Call::Verify => {
            exports.verify(store, &instance)?;
            Ok(Returned::Done)
        }
    })
}

/// An error the plugin returned. If it is the page error the host last handed it, the original comes
/// back, so the caller sees a navigation timeout as one (and a dead browser gets its retry).
fn returned_error(
    plugin: &str,
    error: WitError,
    last_page_error: Option<(String, PageError)>,
) -> PluginError {
    if let Some((seen, page_error)) = last_page_error
        && seen == message(&error)
    {
        return PluginError::Page {
            plugin: plugin.to_owned(),
            error: page_error,
        };
    }
    let kind = match &error {
        WitError::InvalidInput(_) => GuestErrorKind::InvalidInput,
        WitError::Timeout(_) => GuestErrorKind::Timeout,
        WitError::Navigation(_) => GuestErrorKind::Navigation,
        WitError::NotFound(_) => GuestErrorKind::NotFound,
        WitError::Script(_) => GuestErrorKind::Script,
        WitError::TooLarge(_) => GuestErrorKind::TooLarge,
        WitError::Crashed(_) => GuestErrorKind::Crashed,
        WitError::Failed(_) => GuestErrorKind::Failed,
    };
    PluginError::Failed {
        plugin: plugin.to_owned(),
        kind,
        message: message(&error).to_owned(),
    }
}

/// Epoch ticks covering `limit`, rounded up, plus the tick in progress.
fn epoch_ticks(limit: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    u64::try_from(limit.as_nanos().div_ceil(tick) + 1).unwrap_or(u64::MAX)
}

fn outcome_label(result: &Result<Returned, PluginError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(PluginError::OutOfFuel { .. }) => "out_of_fuel",
        Err(PluginError::Timeout { .. }) => "timeout",
        Err(PluginError::MemoryLimit { .. } | PluginError::ServerMemory { .. }) => "memory_limit",
        Err(PluginError::OutputTooLarge { .. }) => "output_too_large",
        Err(PluginError::Trapped { .. }) => "trapped",
        Err(_) => "error",
    }
}

fn record(inner: &HostInner, plugin: &Plugin, outcome: &'static str, usage: Usage) {
    let metrics = &inner.metrics;
    metrics
        .plugin_calls
        .get_or_create(&PluginCallLabels {
            plugin: plugin.name().to_owned(),
            outcome,
        })
        .inc();
    metrics
        .plugin_fuel
        .get_or_create(&PluginLabels {
            plugin: plugin.name().to_owned(),
        })
        .inc_by(usage.fuel);
}

impl From<types::Output> for Produced {
    fn from(output: types::Output) -> Self {
        match output {
            types::Output::Json(json) => Self::Json(json),
            types::Output::Text(text) => Self::Text(text),
            types::Output::Bytes(binary) => Self::Bytes {
                content_type: binary.content_type,
                data: binary.data,
            },
        }
    }
}
