//! Watching a job's page for what its `fail_on` policy turns into a failure: a subresource with a
//! status it names, an exception the page's scripts threw and did not catch. The watch starts
//! before the navigation and is read once the page is ready; it listens only for what the policy
//! asks, so a job without one pays nothing.

use chromiumoxide::cdp::browser_protocol::network::{EventResponseReceived, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::FrameId;
use chromiumoxide::cdp::js_protocol::runtime::EventExceptionThrown;
use chromiumoxide::listeners::EventStream;

use super::{NowOrNever, Page, PageError, epoch_ms, exception_message};
use crate::job::options::{FailOn, StatusRange};

/// Which `fail_on` rule failed a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailRule {
    Status,
    ResourceStatus,
    ConsoleException,
}

impl FailRule {
    /// The field that asked for it, as the error names it.
    pub fn field(self) -> &'static str {
        match self {
            Self::Status => "fail_on.status",
            Self::ResourceStatus => "fail_on.resource_status",
            Self::ConsoleException => "fail_on.console_exception",
        }
    }
}

/// What [`Page::watch`] listens to.
#[derive(Debug)]
pub struct Watch {
    resources: Option<(
        Vec<StatusRange>,
        EventStream<EventResponseReceived>,
        FrameId,
    )>,
    exceptions: Option<EventStream<EventExceptionThrown>>,
    /// When the watch began, in the milliseconds since the epoch that exception events carry: an
    /// exception of the previous job's document before then is not this job's.
    since_ms: f64,
}

impl Page<'_> {
    /// Starts listening for what `fail_on` names.
    pub async fn watch(&self, fail_on: &FailOn) -> Result<Watch, PageError> {
        let since_ms = epoch_ms();
        let resources = if fail_on.resource_status.is_empty() {
            None
        } else {
            let frame = self
                .step("find the main frame", self.deadline, self.cdp().mainframe())
                .await?
                .unwrap_or_else(|| FrameId::new(String::new()));
            let responses = self
                .step(
                    "listen for responses",
                    self.deadline,
                    self.cdp().event_listener::<EventResponseReceived>(),
                )
                .await?;
            Some((fail_on.resource_status.clone(), responses, frame))
        };
        let exceptions = if fail_on.console_exception {
            Some(
                self.step(
                    "listen for exceptions",
                    self.deadline,
                    self.cdp().event_listener::<EventExceptionThrown>(),
                )
                .await?,
            )
        } else {
            None
        };
        Ok(Watch {
            resources,
            exceptions,
            since_ms,
        })
    }
}

impl Watch {
    /// The first thing seen so far that the policy fails the job for.
    pub fn verdict(&mut self) -> Result<(), PageError> {
        if let Some((ranges, responses, main_frame)) = &mut self.resources {
            while let Some(Some(event)) = responses.now_or_never_ready() {
                let status = u16::try_from(event.response.status).unwrap_or(0);
                let document = event.r#type == ResourceType::Document
                    && event.frame_id.as_ref() == Some(main_frame);
                if !document && StatusRange::any(ranges, status) {
                    return Err(PageError::FailedOn {
                        rule: FailRule::ResourceStatus,
                        message: format!(
                            "a subresource of the page answered {status}: {}",
                            shortened(&event.response.url)
                        ),
                    });
                }
            }
        }
        if let Some(exceptions) = &mut self.exceptions {
            while let Some(Some(event)) = exceptions.now_or_never_ready() {
                if *event.timestamp.inner() < self.since_ms {
                    continue;
                }
                let details = &event.exception_details;
                let what = exception_message(details);
                let place = details
                    .url
                    .as_deref()
                    .map(|url| {
                        format!(
                            " at {}:{}:{}",
                            shortened(url),
                            details.line_number + 1,
                            details.column_number + 1
                        )
                    })
                    .unwrap_or_default();
                return Err(PageError::FailedOn {
                    rule: FailRule::ConsoleException,
                    message: format!("the page's script threw{place}: {}", shortened(&what)),
                });
            }
        }
        Ok(())
    }
}

/// At most 300 characters of `text`, for a message.
fn shortened(text: &str) -> String {
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push_str("...");
    }
    short
}
