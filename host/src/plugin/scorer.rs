//! Scorer plugins as the scheduler sees them: [`ScorerPlugin`] implements [`Scorer`] by turning the
//! scheduler's [`ScoreRequest`] into the WIT `job-info` and calling the plugin's `score` on the first
//! shard's workers (a scorer is not page work and belongs to no shard), at admission priority and
//! within the scheduler's deadline.

use std::sync::Arc;

use tokio::time::Instant;

use super::bindings::pagewright::plugin::types::{JobInfo, OriginStats, PriorityClass};
use super::{JobContext, Plugin, PluginError, PluginHost, Role};
use crate::job::Class;
use crate::sched::{Priority, ScoreRequest, Scorer};

/// A plugin with the scorer role, ready to score jobs.
#[derive(Debug)]
pub struct ScorerPlugin {
    host: PluginHost,
    plugin: Arc<Plugin>,
}

impl ScorerPlugin {
    /// The plugin `reference` names (`name` or `name@version`), which must be a scorer.
    pub fn new(host: &PluginHost, reference: &str) -> Result<Self, PluginError> {
        let plugin = host.get(reference)?;
        plugin.require(Role::Scorer)?;
        Ok(Self {
            host: host.clone(),
            plugin,
        })
    }
}

#[async_trait::async_trait]
impl Scorer for ScorerPlugin {
    fn name(&self) -> String {
        self.plugin.metadata().reference()
    }

    async fn score(
        &self,
        job: ScoreRequest,
        deadline: Instant,
    ) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
        let info = JobInfo {
            url: job.url,
            origin: job.origin,
            plugin: job.plugin,
            tenant: Some(job.tenant),
            class: match job.class {
                Class::Urgent => PriorityClass::Urgent,
                Class::Hot => PriorityClass::Hot,
                Class::Cold => PriorityClass::Cold,
            },
            priority: Some(i32::from(job.number)),
            age_ms: job.age.as_millis() as u64,
            // A job is scored once, when it is admitted; a retry after a browser death keeps its
            // slot and is not queued again.
            attempt: 1,
            origin_stats: job.origin_figures.map(|figures| OriginStats {
                jobs: figures.jobs,
                mean_render_ms: figures.mean_render_ms,
                failure_rate: figures.failure_rate,
            }),
        };
        let call = JobContext {
            id: 0,
            deadline,
            priority: Priority::ADMISSION,
            shard: 0,
        };
        Ok(self.host.score(&self.plugin, info, call).await.0?)
    }
}
