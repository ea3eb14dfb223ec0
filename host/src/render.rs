//! render: runs one render job on a leased page: lease, set the page up (page options, page-script
//! plugins' init scripts), navigate, produce the output (an extractor plugin on the plugin workers, or a
//! native page operation), hand the page back.
//!
//! A job whose browser died under it is retried once on the relaunched browser if its deadline allows:
//! a browser crash is rarely the job's fault, and one retry hides most of them from the user.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::page::options::{
    ContentOptions, GotoOptions, PageOptions, PdfOptions, ScreenshotOptions,
};
use crate::page::{Navigation, Page, PageError};
use crate::plugin::{self, JobContext, PluginCall, PluginError, PluginHost, Role, Usage};
use crate::pool::{DEFAULT_ISOLATION_KEY, PagePool, PoolError};
use crate::sched::Priority;

/// What to load into the page.
#[derive(Debug, Clone)]
pub enum Target {
    /// A URL that already passed the URL policy.
    Url(String),
    /// An HTML document, written into the page without a network fetch.
    Html(String),
}

/// What to produce once the page is ready.
#[derive(Debug, Clone)]
pub enum Output {
    /// An extractor plugin's output.
    Plugin(PluginCall),
    /// One of the host's own page operations.
    Native(NativeOutput),
}

/// The outputs the host produces without a plugin (`--native-builtins`, and the bench's baseline).
#[derive(Debug, Clone)]
pub enum NativeOutput {
    Screenshot(ScreenshotOptions),
    Pdf(PdfOptions),
    Content(ContentOptions),
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct RenderJob {
    /// Unique within the server's life; plugin log lines carry it.
    pub id: u64,
    pub target: Target,
    pub goto: GotoOptions,
    pub page: PageOptions,
    /// Page-script plugins: their init scripts go in before navigation, their after-load hooks run
    /// before the output, in this order.
    pub scripts: Vec<PluginCall>,
    pub output: Output,
    pub deadline: Instant,
    /// The job's standing for the CPU slots its plugin code runs in, from the scheduler.
    pub priority: Priority,
}

impl RenderJob {
    /// Checks every option range, so bad input is refused before any browser work.
    pub fn validate(&self) -> Result<(), RenderError> {
        self.page.viewport.validate()?;
        for script in &self.scripts {
            script.plugin.require(Role::PageScript)?;
        }
        match &self.output {
            Output::Plugin(call) => Ok(call.plugin.require(Role::Extractor)?),
            Output::Native(NativeOutput::Content(ContentOptions {})) => Ok(()),
            Output::Native(NativeOutput::Screenshot(options)) => Ok(options.validate()?),
            Output::Native(NativeOutput::Pdf(options)) => Ok(options.validate()?),
        }
    }
}

/// A finished render.
#[derive(Debug)]
pub struct Rendered {
    /// Where the page ended up (a plugin may have navigated further).
    pub navigation: Navigation,
    pub body: RenderedBody,
    /// What the job's plugin calls cost, if it made any.
    pub usage: Option<Usage>,
}

#[derive(Debug)]
pub enum RenderedBody {
    Bytes {
        content_type: String,
        bytes: Vec<u8>,
    },
    Html(String),
    Json(String),
    Text(String),
}

impl From<plugin::Output> for RenderedBody {
    fn from(output: plugin::Output) -> Self {
        match output {
            plugin::Output::Json(json) => Self::Json(json),
            plugin::Output::Text(text) => Self::Text(text),
            plugin::Output::Bytes { content_type, data } => Self::Bytes {
                content_type,
                bytes: data,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Page(#[from] PageError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl RenderError {
    fn browser_died(&self) -> bool {
        matches!(
            self,
            Self::Page(PageError::BrowserGone { .. })
                | Self::Plugin(PluginError::Page(PageError::BrowserGone { .. }))
                | Self::Pool(PoolError::CreatePage(_) | PoolError::CreateContext(_))
        )
    }

    /// Did the job fail because of the site (it did not load or load in time, its page crashed),
    /// rather than its input, a plugin or the server? Per-origin failure rates count these.
    pub fn origin_failed(&self) -> bool {
        let page = match self {
            Self::Page(error) | Self::Plugin(PluginError::Page(error)) => error,
            _ => return false,
        };
        matches!(
            page,
            PageError::Timeout { .. } | PageError::Navigation { .. } | PageError::Crashed
        )
    }

    fn spoils_page(&self) -> bool {
        match self {
            Self::Page(error) => error.spoils_page(),
            Self::Plugin(error) => error.spoils_page(),
            Self::Pool(_) => false,
        }
    }
}

/// Runs render jobs against the pool.
#[derive(Debug, Clone)]
pub struct Renderer {
    pool: PagePool,
    plugins: PluginHost,
    metrics: Metrics,
    /// The shard whose pool this is: the jobs' plugin code runs on its workers.
    shard: usize,
}

/// A fresh job id, unique in this process (plugin log lines and async jobs carry it).
pub fn next_job_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Renderer {
    /// Renders on `pool`, shard `shard`'s.
    pub fn new(pool: PagePool, plugins: PluginHost, metrics: Metrics, shard: usize) -> Self {
        Self {
            pool,
            plugins,
            metrics,
            shard,
        }
    }

    pub async fn render(&self, job: &RenderJob) -> Result<Rendered, RenderError> {
        match self.attempt(job).await {
            Err(error) if error.browser_died() && Instant::now() < job.deadline => {
                tracing::warn!(%error, "the browser died under a job; retrying it once");
                self.metrics.jobs_retried.inc();
                self.attempt(job).await
            }
            result => result,
        }
    }

    async fn attempt(&self, job: &RenderJob) -> Result<Rendered, RenderError> {
        let key = job
            .page
            .isolation_key
            .as_deref()
            .unwrap_or(DEFAULT_ISOLATION_KEY);
        let context = JobContext {
            id: job.id,
            deadline: job.deadline,
            priority: job.priority,
            shard: self.shard,
        };
        let began = Instant::now();
        let mut lease = self.pool.lease(key, job.deadline).await?;
        let leased = Instant::now();
        let prepared = prepare(
            &Page::new(&lease, job.deadline),
            job,
            &self.plugins,
            context,
        )
        .await;
        let (navigation, mut usage) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                if error.spoils_page() {
                    // A page that timed out may still be spinning or mid-navigation: close it rather
                    // than hand it to the next job.
                    lease.discard("failed");
                }
                return Err(error);
            }
        };
        let call = match &job.output {
            Output::Plugin(call) => call.clone(),
            Output::Native(native) => {
                let result = native_output(&Page::new(&lease, job.deadline), native).await;
                if let Err(error) = &result
                    && error.spoils_page()
                {
                    lease.discard("failed");
                }
                return Ok(Rendered {
                    navigation,
                    body: result?,
                    usage: (!job.scripts.is_empty()).then_some(usage),
                });
            }
        };
        let prepared_at = Instant::now();
        let run = self
            .plugins
            .run_on_page(lease, navigation, context, job.scripts.clone(), call)
            .await;
        tracing::debug!(
            job = job.id,
            band = job.priority.band,
            shard = self.shard,
            lease_ms = millis(leased - began),
            navigate_ms = millis(prepared_at - leased),
            plugin_ms = millis(prepared_at.elapsed()),
            "job phases"
        );
        usage.add(run.usage);
        if let (Some(mut lease), Err(error)) = (run.lease, &run.result)
            && error.spoils_page()
        {
            lease.discard("failed");
        }
        let output = run.result?;
        Ok(Rendered {
            navigation: run.navigation.unwrap_or_else(|| Navigation {
                url: String::new(),
                status: 0,
            }),
            body: output.into(),
            usage: Some(usage),
        })
    }
}

/// A duration in milliseconds, for log fields.
pub(crate) fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Page options, page scripts' init scripts, navigation.
async fn prepare(
    page: &Page<'_>,
    job: &RenderJob,
    plugins: &PluginHost,
    context: JobContext,
) -> Result<(Navigation, Usage), RenderError> {
    let target_url = match &job.target {
        Target::Url(url) => Some(url.as_str()),
        Target::Html(_) => None,
    };
    page.apply(&job.page, target_url).await?;
    let mut usage = Usage::default();
    for script in &job.scripts {
        let (sources, used) = plugins.init_scripts(script, context).await;
        usage.add(used);
        for source in sources? {
            page.add_init_script(&source).await?;
        }
    }
    let navigation = match &job.target {
        Target::Url(url) => page.goto(url, &job.goto).await?,
        Target::Html(html) => page.set_html(html, &job.goto).await?,
    };
    Ok((navigation, usage))
}

async fn native_output(
    page: &Page<'_>,
    output: &NativeOutput,
) -> Result<RenderedBody, RenderError> {
    Ok(match output {
        NativeOutput::Screenshot(options) => RenderedBody::Bytes {
            content_type: options.format.content_type().to_owned(),
            bytes: page.screenshot(options).await?,
        },
        NativeOutput::Pdf(options) => RenderedBody::Bytes {
            content_type: "application/pdf".to_owned(),
            bytes: page.pdf(options).await?,
        },
        NativeOutput::Content(ContentOptions {}) => RenderedBody::Html(page.content().await?),
    })
}
