//! Scoring: the number that puts a job in a band and orders it within its tenant's jobs. The
//! built-in score is the class's base plus the request's number; a [`Scorer`] (the plugin host
//! implements it for scorer plugins) replaces it. A scorer gets [`SCORER_BUDGET`] in all and may
//! fail in any way: the job then gets the built-in score, and the failure is counted, never a
//! reason to refuse the job.

use std::time::Duration;

use tokio::time::Instant;

use super::origins::OriginFigures;
use crate::job::{Class, Job};

/// How long a scorer may take for one job, waiting for its turn included: admission waits on it.
pub const SCORER_BUDGET: Duration = Duration::from_millis(100);

/// What a scorer sees of a job.
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    /// The page (`about:blank` for inline HTML).
    pub url: String,
    /// Scheme, host and port of `url`; empty for inline HTML.
    pub origin: String,
    /// The extractor plugin, if one produces the output.
    pub plugin: Option<String>,
    pub tenant: String,
    pub class: Class,
    pub number: i8,
    /// Since the request arrived.
    pub age: Duration,
    /// The origin's render time and failure rate so far, if it has any.
    pub origin_figures: Option<OriginFigures>,
}

/// Something that scores jobs instead of the built-in score.
#[async_trait::async_trait]
pub trait Scorer: Send + Sync + std::fmt::Debug {
    /// How `/v1/scheduler` names it.
    fn name(&self) -> String;

    /// The job's score, by `deadline`; any error (or a score that is not a number) means the
    /// built-in score is used.
    async fn score(
        &self,
        job: ScoreRequest,
        deadline: Instant,
    ) -> Result<f64, Box<dyn std::error::Error + Send + Sync>>;
}

/// The built-in score: the class's base plus the number.
pub fn builtin_score(job: &Job) -> f64 {
    job.class.base_score() + f64::from(job.number)
}
