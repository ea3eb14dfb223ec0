//! render: runs one render job on a leased page: lease, set the page up, navigate, produce the output,
//! hand the page back. The plugin host replaces the output step with a plugin call; the rest stays.
//!
//! A job whose browser died under it is retried once on the relaunched browser if its deadline allows:
//! a browser crash is rarely the job's fault, and one retry hides most of them from the user.

use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::page::options::{
    ContentOptions, GotoOptions, PageOptions, PdfOptions, ScreenshotOptions,
};
use crate::page::{Navigation, Page, PageError};
use crate::pool::{DEFAULT_ISOLATION_KEY, PagePool, PoolError};

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
    Screenshot(ScreenshotOptions),
    Pdf(PdfOptions),
    Content(ContentOptions),
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct RenderJob {
    pub target: Target,
    pub goto: GotoOptions,
    pub page: PageOptions,
    pub output: Output,
    pub deadline: Instant,
}

impl RenderJob {
    /// Checks every option range, so bad input is refused before any browser work.
    pub fn validate(&self) -> Result<(), PageError> {
        self.page.viewport.validate()?;
        match &self.output {
            Output::Screenshot(options) => options.validate(),
            Output::Pdf(options) => options.validate(),
            Output::Content(ContentOptions {}) => Ok(()),
        }
    }
}

/// A finished render.
#[derive(Debug)]
pub struct Rendered {
    pub navigation: Navigation,
    pub body: RenderedBody,
}

#[derive(Debug)]
pub enum RenderedBody {
    Bytes {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
    Html(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Page(#[from] PageError),
}

impl RenderError {
    fn browser_died(&self) -> bool {
        matches!(
            self,
            Self::Page(PageError::BrowserGone { .. })
                | Self::Pool(PoolError::CreatePage(_) | PoolError::CreateContext(_))
        )
    }
}

/// Runs render jobs against the pool.
#[derive(Debug, Clone)]
pub struct Renderer {
    pool: PagePool,
    metrics: Metrics,
}

impl Renderer {
    pub fn new(pool: PagePool, metrics: Metrics) -> Self {
        Self { pool, metrics }
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
        let mut lease = self.pool.lease(key, job.deadline).await?;
        let result = run(&Page::new(&lease, job.deadline), job).await;
        if let Err(error) = &result
            && error.spoils_page()
        {
            // A page that timed out may still be spinning or mid-navigation: close it rather than
            // hand it to the next job.
            lease.discard("failed");
        }
        Ok(result?)
    }
}

async fn run(page: &Page<'_>, job: &RenderJob) -> Result<Rendered, PageError> {
    let target_url = match &job.target {
        Target::Url(url) => Some(url.as_str()),
        Target::Html(_) => None,
    };
    page.apply(&job.page, target_url).await?;
    let navigation = match &job.target {
        Target::Url(url) => page.goto(url, &job.goto).await?,
        Target::Html(html) => page.set_html(html, &job.goto).await?,
    };
    let body = match &job.output {
        Output::Screenshot(options) => RenderedBody::Bytes {
            content_type: options.format.content_type(),
            bytes: page.screenshot(options).await?,
        },
        Output::Pdf(options) => RenderedBody::Bytes {
            content_type: "application/pdf",
            bytes: page.pdf(options).await?,
        },
        Output::Content(ContentOptions {}) => RenderedBody::Html(page.content().await?),
    };
    Ok(Rendered { navigation, body })
}
