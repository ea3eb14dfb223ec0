//! What the rest of the host asks of plugins: a job's page scripts and extractor on its page, a page
//! script's init scripts, a scorer's score, an upload's verifying instantiation, and an extractor
//! without a page (for measuring the cost of a call). Every call runs on the plugin workers of the
//! job's shard.

use std::sync::Arc;

use tokio::time::Instant;

use super::bindings::pagewright::plugin::types::JobInfo;
use super::invoke::{self, Call, Returned};
use super::state::PageContext;
use super::{JobContext, Plugin, PluginError, PluginHost, Usage};
use crate::job::{PluginCall, Produced};
use crate::page::Navigation;
use crate::pool::Lease;
use crate::sched::Priority;

/// The result of [`PluginHost::run_on_page`]: the lease back (unless the worker task was lost), the
/// extractor's output or the first failure, and what the calls cost.
#[derive(Debug)]
pub struct PageRun {
    pub lease: Option<Lease>,
    /// Where the page ended up: the host's navigation, or the plugins' latest.
    pub navigation: Option<Navigation>,
    pub result: Result<Produced, PluginError>,
    pub usage: Usage,
}

impl PluginHost {
    /// A page-script plugin's init scripts for its params. Runs on the plugin workers, without a
    /// page.
    pub async fn init_scripts(
        &self,
        call: &PluginCall,
        job: JobContext,
    ) -> (Result<Vec<String>, PluginError>, Usage) {
        let plugin = match self.resolve(&call.plugin) {
            Ok(plugin) => plugin,
            Err(error) => return (Err(error), Usage::default()),
        };
        let init = Call::InitScripts(call.params.clone());
        self.without_page(&plugin, init, job, |returned| match returned {
            Returned::Scripts(scripts) => Some(scripts),
            _ => None,
        })
        .await
    }

    /// Runs the page-script plugins' after-load hooks, then the extractor, on the leased page, in one
    /// task on the plugin workers. The first failure stops the run.
    pub async fn run_on_page(
        &self,
        lease: Lease,
        navigation: Navigation,
        job: JobContext,
        after_load: &[PluginCall],
        extractor: &PluginCall,
    ) -> PageRun {
        let steps = after_load
            .iter()
            .map(|call| (call, Call::AfterLoad(call.params.clone())))
            .chain(std::iter::once((
                extractor,
                Call::Extract(extractor.params.clone()),
            )))
            .map(|(call, step)| Ok((self.resolve(&call.plugin)?, step)))
            .collect::<Result<Vec<_>, PluginError>>();
        let steps = match steps {
            Ok(steps) => steps,
            Err(error) => {
                return PageRun {
                    lease: Some(lease),
                    navigation: Some(navigation),
                    result: Err(error),
                    usage: Usage::default(),
                };
            }
        };
        let inner = self.inner.clone();
        let run = self.inner.group(job.shard).workers.run(async move {
            let mut page = Some(PageContext::new(lease, job.deadline, navigation));
            let mut usage = Usage::default();
            let mut result = Err(PluginError::WorkerLost);
            for (plugin, call) in steps {
                let invoked = invoke::invoke(&inner, &plugin, call, page.take(), job).await;
                usage.add(invoked.usage);
                page = invoked.page;
                result = invoked.result;
                if result.is_err() {
                    break;
                }
            }
            let result = result.and_then(|returned| match returned {
                Returned::Output(output) => Ok(output),
                _ => Err(PluginError::WorkerLost),
            });
            let (lease, navigation) = match page {
                Some(page) => (Some(page.lease), Some(page.navigation)),
                None => (None, None),
            };
            PageRun {
                lease,
                navigation,
                result,
                usage,
            }
        });
        run.await.unwrap_or(PageRun {
            lease: None,
            navigation: None,
            result: Err(PluginError::WorkerLost),
            usage: Usage::default(),
        })
    }

    /// Runs an extractor with no page behind its `page` resource (every page operation fails with
    /// invalid-input), on the plugin workers: a job with no page, and the bench's call cost.
    pub async fn extract_without_page(
        &self,
        plugin: &Arc<Plugin>,
        params: &str,
        job: JobContext,
    ) -> (Result<Produced, PluginError>, Usage) {
        let call = Call::Extract(params.to_owned());
        self.without_page(plugin, call, job, |returned| match returned {
            Returned::Output(output) => Some(output),
            _ => None,
        })
        .await
    }

    /// A scorer plugin's score for `job_info`, on the plugin workers.
    pub(super) async fn score(
        &self,
        plugin: &Arc<Plugin>,
        job_info: JobInfo,
        job: JobContext,
    ) -> (Result<f64, PluginError>, Usage) {
        self.without_page(
            plugin,
            Call::Score(job_info),
            job,
            |returned| match returned {
                Returned::Score(score) => Some(score),
                _ => None,
            },
        )
        .await
    }

    /// Instantiates `plugin` once under its limits, on the plugin workers, and checks every exported
    /// role's functions against the WIT's types, calling none of them: a component whose exports
    /// have the wrong types, or that traps or runs away while starting, is refused here instead of
    /// failing its first job.
    pub(super) async fn verify(&self, plugin: &Arc<Plugin>) -> Result<(), PluginError> {
        let job = JobContext {
            id: 0,
            deadline: Instant::now() + plugin.limits().timeout,
            priority: Priority::BACKGROUND,
            shard: 0,
        };
        let (result, _) = self
            .without_page(plugin, Call::Verify, job, |returned| {
                matches!(returned, Returned::Done).then_some(())
            })
            .await;
        result.map_err(|error| match error {
            // The server's state, not the plugin's fault: let the caller retry.
            PluginError::Busy
            | PluginError::ServerMemory { .. }
            | PluginError::Engine(_)
            | PluginError::Workers(_)
            | PluginError::WorkerLost => error,
            PluginError::Trapped { message, .. } => PluginError::Invalid {
                name: plugin.name().to_owned(),
                reason: message,
            },
            error => PluginError::Invalid {
                name: plugin.name().to_owned(),
                reason: format!("starting it failed: {error}"),
            },
        })
    }

    /// One call without a page, on the plugin workers; `pick` takes the call's kind of result.
    async fn without_page<T: Send + 'static>(
        &self,
        plugin: &Arc<Plugin>,
        call: Call,
        job: JobContext,
        pick: fn(Returned) -> Option<T>,
    ) -> (Result<T, PluginError>, Usage) {
        let inner = self.inner.clone();
        let plugin = plugin.clone();
        let run = self.inner.group(job.shard).workers.run(async move {
            let invoked = invoke::invoke(&inner, &plugin, call, None, job).await;
            let result = invoked
                .result
                .and_then(|returned| pick(returned).ok_or(PluginError::WorkerLost));
            (result, invoked.usage)
        });
        run.await
            .unwrap_or((Err(PluginError::WorkerLost), Usage::default()))
    }
}
