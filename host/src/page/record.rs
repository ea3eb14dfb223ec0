//! Recording what a page did for the `debug` output: its console messages, the exceptions its
//! scripts did not catch, and its network requests as a HAR 1.2 log (URLs, methods, statuses,
//! headers, timings, sizes; bodies when asked, each capped). The recorder listens from before the
//! navigation; its record is read once the page is ready.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use chromiumoxide::cdp::browser_protocol::network::{
    EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent, EventResponseReceived,
    GetResponseBodyParams, Headers,
};
use chromiumoxide::cdp::js_protocol::runtime::{EventConsoleApiCalled, EventExceptionThrown};
use chromiumoxide::listeners::EventStream;
use serde_json::{Value, json};

use super::{Navigation, NowOrNever, Page, PageError, epoch_ms, exception_message};
use crate::job::options::DebugOptions;

/// The listeners of [`Page::record`].
#[derive(Debug)]
pub struct Recorder {
    options: DebugOptions,
    requests: EventStream<EventRequestWillBeSent>,
    responses: EventStream<EventResponseReceived>,
    finished: EventStream<EventLoadingFinished>,
    failed: EventStream<EventLoadingFailed>,
    console: EventStream<EventConsoleApiCalled>,
    exceptions: EventStream<EventExceptionThrown>,
    /// When recording began, in the milliseconds since the epoch that console events carry.
    since_ms: f64,
}

/// One request as the HAR log shows it, assembled from its events.
#[derive(Debug, Default)]
struct Entry {
    started_ms: f64,
    /// Chromium's monotonic seconds, for durations.
    sent_at: f64,
    ended_at: Option<f64>,
    method: String,
    url: String,
    request_headers: Vec<Value>,
    resource_type: String,
    status: Option<i64>,
    status_text: String,
    protocol: String,
    mime_type: String,
    response_headers: Vec<Value>,
    encoded_bytes: Option<f64>,
    failure: Option<String>,
}

impl Page<'_> {
    /// Starts recording what the page does.
    pub async fn record(&self, options: &DebugOptions) -> Result<Recorder, PageError> {
        let deadline = self.deadline;
        let since_ms = epoch_ms();
        Ok(Recorder {
            options: options.clone(),
            requests: self.listen("record requests", deadline).await?,
            responses: self.listen("record responses", deadline).await?,
            finished: self.listen("record finished loads", deadline).await?,
            failed: self.listen("record failed loads", deadline).await?,
            console: self.listen("record console messages", deadline).await?,
            exceptions: self.listen("record exceptions", deadline).await?,
            since_ms,
        })
    }

    /// What `recorder` saw so far, as the `debug` output's JSON.
    pub async fn recorded(
        &self,
        mut recorder: Recorder,
        navigation: &Navigation,
    ) -> Result<Value, PageError> {
        let mut order = Vec::new();
        let mut entries: HashMap<String, Entry> = HashMap::new();
        while let Some(Some(event)) = recorder.requests.now_or_never_ready() {
            let id = event.request_id.inner().clone();
            if let Some(redirect) = &event.redirect_response
                && let Some(previous) = entries.get_mut(&id)
            {
                // A redirect reuses the request id: the hop before it ends here.
                previous.status = Some(redirect.status);
                previous.status_text = redirect.status_text.clone();
                previous.response_headers = header_list(&redirect.headers);
                previous.ended_at = Some(*event.timestamp.inner());
                let hop = format!("{id}#{}", order.len());
                if let Some(previous) = entries.remove(&id) {
                    entries.insert(hop.clone(), previous);
                    if let Some(slot) = order.iter_mut().find(|slot| **slot == id) {
                        *slot = hop;
                    }
                }
            }
            order.push(id.clone());
            entries.insert(
                id,
                Entry {
                    started_ms: event.wall_time.inner() * 1000.0,
                    sent_at: *event.timestamp.inner(),
                    method: event.request.method.clone(),
                    url: event.request.url.clone(),
                    request_headers: header_list(&event.request.headers),
                    resource_type: event
                        .r#type
                        .as_ref()
                        .map(|kind| format!("{kind:?}").to_lowercase())
                        .unwrap_or_default(),
                    ..Entry::default()
                },
            );
        }
        while let Some(Some(event)) = recorder.responses.now_or_never_ready() {
            if let Some(entry) = entries.get_mut(event.request_id.inner()) {
                entry.status = Some(event.response.status);
                entry.status_text = event.response.status_text.clone();
                entry.protocol = event.response.protocol.clone().unwrap_or_default();
                entry.mime_type = event.response.mime_type.clone();
                entry.response_headers = header_list(&event.response.headers);
            }
        }
        while let Some(Some(event)) = recorder.finished.now_or_never_ready() {
            if let Some(entry) = entries.get_mut(event.request_id.inner()) {
                entry.ended_at = Some(*event.timestamp.inner());
                entry.encoded_bytes = Some(event.encoded_data_length);
            }
        }
        while let Some(Some(event)) = recorder.failed.now_or_never_ready() {
            if let Some(entry) = entries.get_mut(event.request_id.inner()) {
                entry.ended_at = Some(*event.timestamp.inner());
                entry.failure = Some(event.error_text.clone());
            }
        }
        let mut body_budget = recorder.options.max_total_body_bytes();
        let mut har_entries = Vec::with_capacity(order.len());
        for id in &order {
            let Some(entry) = entries.get(id) else {
                continue;
            };
            let mut content =
                json!({ "size": entry.encoded_bytes.unwrap_or(0.0), "mimeType": entry.mime_type });
            if recorder.options.bodies
                && entry.failure.is_none()
                && entry.ended_at.is_some()
                && !id.contains('#')
                && body_budget > 0
                && let Some((text, base64)) = self.response_body(id).await
            {
                let cap = recorder.options.max_body_bytes().min(body_budget);
                let text = cut(&text, cap);
                body_budget = body_budget.saturating_sub(text.len());
                content["text"] = Value::String(text);
                if base64 {
                    content["encoding"] = Value::String("base64".into());
                }
            }
            let time = entry
                .ended_at
                .map_or(-1.0, |ended| ((ended - entry.sent_at) * 1000.0).max(0.0));
            let mut har = json!({
                "startedDateTime": rfc3339(entry.started_ms),
                "time": time,
                "request": {
                    "method": entry.method, "url": entry.url, "httpVersion": entry.protocol,
                    "headers": entry.request_headers, "queryString": [], "cookies": [],
                    "headersSize": -1, "bodySize": -1,
                },
                "response": {
                    "status": entry.status.unwrap_or(0), "statusText": entry.status_text,
                    "httpVersion": entry.protocol, "headers": entry.response_headers, "cookies": [],
                    "content": content, "redirectURL": "", "headersSize": -1,
                    "bodySize": entry.encoded_bytes.map_or(-1.0, |bytes| bytes),
                },
                "cache": {},
                "timings": { "send": 0, "wait": time, "receive": 0 },
                "_resourceType": entry.resource_type,
            });
            if let Some(failure) = &entry.failure {
                har["_failure"] = Value::String(failure.clone());
            }
            har_entries.push(har);
        }
        let mut console = Vec::new();
        while let Some(Some(event)) = recorder.console.now_or_never_ready() {
            if *event.timestamp.inner() < recorder.since_ms {
                continue;
            }
            let text = event
                .args
                .iter()
                .map(|argument| match (&argument.value, &argument.description) {
                    (Some(Value::String(text)), _) => text.clone(),
                    (Some(value), _) => value.to_string(),
                    (None, Some(description)) => description.clone(),
                    (None, None) => format!("{:?}", argument.r#type).to_lowercase(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            let frame = event
                .stack_trace
                .as_ref()
                .and_then(|stack| stack.call_frames.first());
            console.push(json!({
                "type": format!("{:?}", event.r#type).to_lowercase(),
                "text": cut(&text, 4096),
                "url": frame.map(|frame| frame.url.clone()),
                "line": frame.map(|frame| frame.line_number + 1),
                "time": rfc3339(*event.timestamp.inner()),
            }));
        }
        let mut errors = Vec::new();
        while let Some(Some(event)) = recorder.exceptions.now_or_never_ready() {
            if *event.timestamp.inner() < recorder.since_ms {
                continue;
            }
            let details = &event.exception_details;
            errors.push(json!({
                "message": cut(&exception_message(details), 4096),
                "url": details.url,
                "line": details.line_number + 1,
                "column": details.column_number + 1,
                "time": rfc3339(*event.timestamp.inner()),
            }));
        }
        Ok(json!({
            "url": navigation.url,
            "status": navigation.status,
            "console": console,
            "errors": errors,
            "har": { "log": {
                "version": "1.2",
                "creator": { "name": "pagewright", "version": env!("CARGO_PKG_VERSION") },
                "pages": [],
                "entries": har_entries,
            } },
        }))
    }

    /// A finished response's body (and whether it is base64), if Chromium still has it.
    async fn response_body(&self, request_id: &str) -> Option<(String, bool)> {
        let params = GetResponseBodyParams::new(request_id.to_owned());
        let body = self
            .step(
                "read a response body",
                self.deadline,
                self.cdp().execute(params),
            )
            .await
            .ok()?
            .result;
        Some((body.body, body.base64_encoded))
    }
}

/// A CDP header object as HAR's `[{"name", "value"}]`.
fn header_list(headers: &Headers) -> Vec<Value> {
    headers
        .inner()
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            json!({ "name": name, "value": value.as_str().map_or_else(|| value.to_string(), str::to_owned) })
        })
        .collect()
}

/// Milliseconds since the epoch as an RFC 3339 time, as HAR writes them.
fn rfc3339(ms: f64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs_f64((ms / 1000.0).max(0.0));
    humantime::format_rfc3339_millis(time).to_string()
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
