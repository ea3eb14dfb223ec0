//! exec: the executor, the one way a job runs. The HTTP endpoints, the async jobs and `pagewright
//! render` all hand it a [`Job`]; it goes down the layers once:
//!
//! 1. **slot**: the scheduler queues the job and hands it a run slot in its order ([`Admitted`]
//!    is a job in the queue: the API admits async jobs before answering 202, so a full queue is a
//!    429 and never a promise it cannot keep);
//! 2. **placement**: the shards pick the shard for it, now that it may run;
//! 3. **lease**: that shard's pool leases a page of the job's isolation key;
//! 4. **prepare**: page options, page scripts' init scripts, navigation (`attempt.rs`);
//! 5. **plugins**: page scripts' after-load hooks and the extractor on the plugin workers, or a
//!    native page operation;
//! 6. **result** and **statistics**: the output with its cost goes back; the job's render time and
//!    whether the site failed it go to the scheduler's statistics, and the slot is freed.
//!
//! A job whose browser died under it runs once more on the relaunched browser if its deadline
//! allows: a browser crash is rarely the job's fault, and one retry hides most of them.

mod attempt;

use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;

use crate::job::{Job, Produced};
use crate::metrics::Metrics;
use crate::page::{Dialog, Navigation, PageError};
use crate::plugin::{PluginError, PluginHost, Usage};
use crate::pool::PoolError;
use crate::sched::{Queued, SchedError, Scheduler, Standing};
use crate::shard::Shards;

/// A finished job.
#[derive(Debug)]
pub struct Rendered {
    /// Where the page ended up (a plugin may have navigated further).
    pub navigation: Navigation,
    pub produced: Produced,
    /// What the job's plugin calls cost, if it made any.
    pub usage: Option<Usage>,
    /// The dialogs the page opened, each answered at once.
    pub dialogs: Vec<Dialog>,
    /// The page's links as it loaded (absolute URLs), for a crawl's page; none otherwise.
    pub links: Vec<String>,
}

/// Why a job did not produce its output, by the layer that failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Queue(#[from] SchedError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Page(#[from] PageError),
    /// A plugin failed; with what its calls had cost by then, when any ran.
    #[error("{error}")]
    Plugin {
        #[source]
        error: PluginError,
        usage: Option<Usage>,
    },
}

impl From<PluginError> for ExecError {
    fn from(error: PluginError) -> Self {
        Self::Plugin { error, usage: None }
    }
}

impl ExecError {
    fn browser_died(&self) -> bool {
        matches!(
            self,
            Self::Page(PageError::BrowserGone { .. })
                | Self::Plugin {
                    error: PluginError::Page {
                        error: PageError::BrowserGone { .. },
                        ..
                    },
                    ..
                }
                | Self::Pool(PoolError::CreatePage(_) | PoolError::CreateContext(_))
        )
    }

    /// Did the job fail because of the site (it did not load or load in time, its page crashed),
    /// rather than its input, a plugin or the server? Per-origin failure rates count these.
    fn origin_failed(&self) -> bool {
        let page = match self {
            Self::Page(error)
            | Self::Plugin {
                error: PluginError::Page { error, .. },
                ..
            } => error,
            _ => return false,
        };
        matches!(
            page,
            PageError::Timeout { .. } | PageError::Navigation { .. } | PageError::Crashed
        )
    }

    /// Should the job's page be closed rather than reused?
    fn spoils_page(&self) -> bool {
        match self {
            Self::Page(error) => error.spoils_page(),
            Self::Plugin { error, .. } => error.spoils_page(),
            Self::Queue(_) | Self::Pool(_) => false,
        }
    }
}

/// The executor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    scheduler: Scheduler,
    shards: Shards,
    plugins: PluginHost,
    metrics: Metrics,
}

impl Executor {
    pub fn new(
        scheduler: Scheduler,
        shards: Shards,
        plugins: PluginHost,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                scheduler,
                shards,
                plugins,
                metrics,
            }),
        }
    }

    /// Runs `job`: queued, then rendered once it has a run slot.
    pub async fn run(&self, job: Job) -> Result<Rendered, ExecError> {
        self.admit(job).await?.run(|| {}).await
    }

    /// Scores `job` and queues it; a full queue refuses it at once.
    pub async fn admit(&self, job: Job) -> Result<Admitted, ExecError> {
        let queued = self.inner.scheduler.enqueue(&job).await?;
        Ok(Admitted {
            executor: self.clone(),
            job,
            queued,
        })
    }

    /// Queues `job` at `standing`, decided already: an async job, scored when it was submitted and
    /// claimed from the store now. A full queue refuses it at once.
    pub fn admit_at(&self, job: Job, standing: Standing) -> Result<Admitted, ExecError> {
        let queued = self.inner.scheduler.enqueue_at(&job, standing)?;
        Ok(Admitted {
            executor: self.clone(),
            job,
            queued,
        })
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.inner.scheduler
    }

    pub fn shards(&self) -> &Shards {
        &self.inner.shards
    }

    pub fn plugins(&self) -> &PluginHost {
        &self.inner.plugins
    }
}

/// A job in the scheduler's queue. Dropping it (a request that went away, a cancelled async job)
/// takes the job out of the queue, or stops it where it runs.
#[derive(Debug)]
pub struct Admitted {
    executor: Executor,
    job: Job,
    queued: Queued,
}

impl Admitted {
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Waits for a run slot, calls `started` when it has one, places the job on a shard and renders
    /// it with its run budget starting now, then feeds the outcome to the scheduler's statistics.
    /// All of it in the job's span: a child of the caller's (the request's, or an async job's run),
    /// with children for the wait in the queue and each step of the render.
    pub async fn run(self, started: impl FnOnce()) -> Result<Rendered, ExecError> {
        let span = tracing::info_span!(
            "job",
            job.id = self.job.id,
            job.output = %self.job.output.name(),
            otel.status_code = tracing::field::Empty,
        );
        // Boxed: a job waiting in the queue holds a pointer, not the render's whole state.
        let rendered = Box::pin(self.run_in_span(started))
            .instrument(span.clone())
            .await;
        if rendered.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        rendered
    }

    async fn run_in_span(self, started: impl FnOnce()) -> Result<Rendered, ExecError> {
        let Self {
            executor,
            job,
            queued,
        } = self;
        let inner = &executor.inner;
        let slot = queued
            .slot()
            .instrument(tracing::info_span!("queue wait"))
            .await?;
        started();
        let began = Instant::now();
        let deadline = began + job.timeout;
        // Placed only now that it may run, on the shard best placed for it at this moment.
        let placed = inner.shards.place(
            &job.isolation_key(),
            slot.predicted_ms(),
            inner.scheduler.limit(),
        );
        // Boxed: a job waiting in the queue then holds a pointer, not the render's whole state, which
        // matters with thousands of jobs waiting.
        let rendered =
            Box::pin(executor.render(&job, deadline, slot.priority(), placed.shard())).await;
        let origin_failed = rendered.as_ref().is_err_and(ExecError::origin_failed);
        let shard = placed.shard().index;
        drop(placed);
        slot.finished(origin_failed);
        let rendered = rendered?;
        tracing::debug!(
            job = job.id,
            shard,
            queued_ms = millis(began - job.received_at),
            ran_ms = millis(began.elapsed()),
            url = %rendered.navigation.url,
            "rendered"
        );
        Ok(rendered)
    }
}

/// A duration in milliseconds, for log fields.
fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
