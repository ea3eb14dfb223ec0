//! One attempt at a job on its shard: lease a page, prepare it (page options, page scripts' init
//! scripts, navigation), produce the output (the extractor and after-load hooks on the shard's
//! plugin workers, or a native page operation), hand the page back. A job with no page runs its
//! extractor on the shard's plugin workers alone. A page left in a state the next
//! job must not see (a timeout, a crash, a CDP failure, a plugin that timed out) is discarded.

use tokio::time::Instant;
use tracing::Instrument;

use super::{ExecError, Executor, Rendered, millis};
use chromiumoxide::error::CdpError;

use crate::job::options::{AuthScheme, Credentials, ProxyOption, StatusRange};
use crate::job::{HtmlBase, Job, NativeOutput, Output, PluginCall, Produced, Target};
use crate::page::{FailRule, Navigation, Page, PageError, Recorder, Served};
use crate::plugin::{JobContext, PluginHost, Usage};
use crate::pool::PoolError;
use crate::sched::Priority;
use crate::shard::Shard;

impl Executor {
    /// Renders `job` on `shard` by `deadline`, once more if the browser died under it and the
    /// deadline allows.
    pub(super) async fn render(
        &self,
        job: &Job,
        deadline: Instant,
        priority: Priority,
        shard: &Shard,
    ) -> Result<Rendered, ExecError> {
        match self.attempt(job, deadline, priority, shard).await {
            Err(error) if error.browser_died() && Instant::now() < deadline => {
                tracing::warn!(%error, "the browser died under a job; retrying it once");
                self.inner.metrics.jobs_retried.inc();
                self.attempt(job, deadline, priority, shard).await
            }
            result => result,
        }
    }

    async fn attempt(
        &self,
        job: &Job,
        deadline: Instant,
        priority: Priority,
        shard: &Shard,
    ) -> Result<Rendered, ExecError> {
        let plugins = &self.inner.plugins;
        let context = JobContext {
            id: job.id,
            deadline,
            priority,
            shard: shard.index,
        };
        let load = match (&job.target, &job.output) {
            (Target::Url(url), _) => Load::Url(url),
            (Target::Html(html), _) => match &job.html_base {
                Some(base) => Load::Served(base, html),
                None => Load::Html(html),
            },
            (Target::NoPage, Output::Plugin(call)) => {
                return self.without_page(call, context).await;
            }
            // Refused when the job was built (`Job::validate`).
            (Target::NoPage, Output::Native(_)) => {
                return Err(ExecError::Page(PageError::InvalidInput(
                    "a native output needs a page".into(),
                )));
            }
        };
        let began = Instant::now();
        if let Some(proxy) = &job.page.proxy {
            start_proxy_route(shard, proxy).await?;
        }
        let mut lease = shard
            .pool
            .lease(&job.isolation_key(), deadline)
            .instrument(tracing::info_span!("lease", shard = shard.index))
            .await?;
        let leased = Instant::now();
        let (navigation, mut usage, recorder) =
            match prepare(&lease.page(deadline), job, load, plugins, context)
                .instrument(tracing::info_span!("navigate"))
                .await
            {
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
        let links = match &job.crawl {
            // What the page links to as it loaded; a page whose links cannot be read is still
            // rendered, and leads nowhere.
            Some(_) => lease.page(deadline).links().await.unwrap_or_else(|error| {
                tracing::info!(job = job.id, %error, "a crawl page's links could not be read");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let call = match &job.output {
            Output::Plugin(call) => call,
            Output::Native(native) => {
                let produced = native_output(&lease.page(deadline), native, &navigation, recorder)
                    .instrument(tracing::info_span!("capture"))
                    .await;
                if let Err(error) = &produced
                    && error.spoils_page()
                {
                    lease.discard("failed");
                }
                return Ok(Rendered {
                    navigation,
                    produced: produced?,
                    usage: (!job.scripts.is_empty()).then_some(usage),
                    dialogs: lease.handle().take_dialogs(),
                    links,
                });
            }
        };
        let prepared_at = Instant::now();
        let run = plugins
            .run_on_page(lease, navigation, context, &job.scripts, call)
            .await;
        tracing::debug!(
            job = job.id,
            band = priority.band,
            shard = shard.index,
            lease_ms = millis(leased - began),
            navigate_ms = millis(prepared_at - leased),
            plugin_ms = millis(prepared_at.elapsed()),
            "job phases"
        );
        usage.add(run.usage);
        let result = run.result.map_err(|error| ExecError::Plugin {
            error,
            usage: Some(usage),
        });
        let dialogs = run
            .lease
            .as_ref()
            .map(|lease| lease.handle().take_dialogs())
            .unwrap_or_default();
        if let (Some(mut lease), Err(error)) = (run.lease, &result)
            && error.spoils_page()
        {
            lease.discard("failed");
        }
        Ok(Rendered {
            dialogs,
            navigation: run
                .navigation
                .unwrap_or_else(|| Navigation::new(String::new(), 0)),
            produced: result?,
            usage: Some(usage),
            links,
        })
    }
}

impl Executor {
    /// A job with no page: its extractor on the shard's plugin workers, and nothing of Chromium.
    async fn without_page(
        &self,
        call: &PluginCall,
        context: JobContext,
    ) -> Result<Rendered, ExecError> {
        let plugins = &self.inner.plugins;
        let plugin = plugins.resolve(&call.plugin).map_err(ExecError::from)?;
        let (produced, usage) = plugins
            .extract_without_page(&plugin, &call.params, context)
            .await;
        Ok(Rendered {
            navigation: Navigation::new(String::new(), 0),
            produced: produced.map_err(|error| ExecError::Plugin {
                error,
                usage: Some(usage),
            })?,
            usage: Some(usage),
            dialogs: Vec::new(),
            links: Vec::new(),
        })
    }
}

/// What a page loads.
#[derive(Debug, Clone, Copy)]
enum Load<'a> {
    Url(&'a str),
    /// Written into `about:blank`.
    Html(&'a str),
    /// Served from memory at its base URL, with its files.
    Served(&'a HtmlBase, &'a str),
}

/// Page options, page scripts' init scripts, navigation; and the recording of what the page does,
/// for the `debug` output.
async fn prepare(
    page: &Page<'_>,
    job: &Job,
    load: Load<'_>,
    plugins: &PluginHost,
    context: JobContext,
) -> Result<(Navigation, Usage, Option<Recorder>), ExecError> {
    let (target_url, served) = match load {
        Load::Url(url) => (Some(url), None),
        Load::Html(_) => (None, None),
        Load::Served(base, html) => (Some(base.url.as_str()), Some(Served::new(base, html)?)),
    };
    page.apply(&job.page, target_url, served).await?;
    let mut usage = Usage::default();
    for script in &job.scripts {
        let (sources, used) = plugins.init_scripts(script, context).await;
        usage.add(used);
        for source in sources? {
            page.add_init_script(&source).await?;
        }
    }
    let recorder = match &job.output {
        Output::Native(NativeOutput::Debug(options)) => Some(page.record(options).await?),
        _ => None,
    };
    let mut watch = page.watch(&job.fail_on).await?;
    let navigation = match load {
        Load::Url(url) => {
            match &job.page.authenticate {
                Some(credentials) if credentials.scheme == AuthScheme::Digest => {
                    // Chromium answers the target's challenge with the credentials of the URL it was
                    // asked to load, for that origin only; what it reports back carries none.
                    let mut navigation = page
                        .goto(&with_credentials(url, credentials)?, &job.goto)
                        .await
                        .map_err(|error| match error {
                            // Its message names the URL asked for: the one without the credentials.
                            PageError::Navigation { reason, .. } => PageError::Navigation {
                                url: url.to_owned(),
                                reason,
                            },
                            other => other,
                        })?;
                    navigation.url = without_credentials(&navigation.url);
                    navigation
                }
                _ => page.goto(url, &job.goto).await?,
            }
        }
        Load::Served(base, _) => page.goto(&base.url, &job.goto).await?,
        Load::Html(html) => page.set_html(html, &job.goto).await?,
    };
    if StatusRange::any(&job.fail_on.status, navigation.status) {
        return Err(PageError::FailedOn {
            rule: FailRule::Status,
            message: format!("the page answered {}", navigation.status),
        }
        .into());
    }
    page.add_to_loaded(&job.page).await?;
    if let Some(scroll) = &job.page.scroll {
        page.scroll_through(scroll).await?;
    }
    watch.verdict()?;
    Ok((navigation, usage, recorder))
}

/// The host's own page operation for `output`.
async fn native_output(
    page: &Page<'_>,
    output: &NativeOutput,
    navigation: &Navigation,
    recorder: Option<Recorder>,
) -> Result<Produced, ExecError> {
    Ok(match output {
        NativeOutput::Screenshot(options) => Produced::Bytes {
            content_type: options.format.content_type().to_owned(),
            data: page.screenshot(options).await?,
        },
        NativeOutput::Pdf(options) => Produced::Bytes {
            content_type: "application/pdf".to_owned(),
            data: page.pdf(options).await?,
        },
        // The same JSON the content plugin returns.
        NativeOutput::Debug(_) => match recorder {
            Some(recorder) => {
                Produced::Json(page.recorded(recorder, navigation).await?.to_string())
            }
            None => {
                return Err(
                    PageError::InvalidInput("the debug output was not recorded".into()).into(),
                );
            }
        },
        NativeOutput::Content => Produced::Json(
            serde_json::json!({
                "url": navigation.url,
                "status": navigation.status,
                "html": page.content().await?,
            })
            .to_string(),
        ),
    })
}

/// Starts the egress listener that goes on through the job's proxy, before its key's context
/// (created with that listener as its proxy) is asked for. On this host: the job may have been
/// submitted to another.
async fn start_proxy_route(shard: &Shard, proxy: &ProxyOption) -> Result<(), ExecError> {
    let upstream = proxy
        .upstream()
        .map_err(|error| PageError::InvalidInput(error.to_string()))?;
    let Some(egress) = shard.browser.egress() else {
        return Ok(());
    };
    egress.route_via(&upstream).await.map_err(|error| {
        PoolError::CreateContext(CdpError::ChromeMessage(format!(
            "starting the listener for proxy {upstream} failed: {error}"
        )))
    })?;
    Ok(())
}

/// `url` with the credentials as its user and password.
fn with_credentials(url: &str, credentials: &Credentials) -> Result<String, PageError> {
    let mut url =
        url::Url::parse(url).map_err(|error| PageError::InvalidInput(error.to_string()))?;
    url.set_username(&credentials.username)
        .and_then(|()| url.set_password(Some(&credentials.password)))
        .map_err(|()| {
            PageError::InvalidInput("page.authenticate: this URL cannot carry credentials".into())
        })?;
    Ok(url.into())
}

/// `url` without a user or password.
fn without_credentials(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.into()
        }
        Err(_) => url.to_owned(),
    }
}
