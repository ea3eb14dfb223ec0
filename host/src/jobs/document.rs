//! A job as `GET /v1/jobs/{id}` shows it and its webhook receives it: JSON, with small JSON and text
//! results inline.

use serde_json::{Value, json};

use super::{JobResult, Outcome, Record};

/// JSON and text results up to this size are inlined in the job's document (and its webhook);
/// larger ones are fetched from `/v1/jobs/{id}/result`.
pub(super) const INLINE_RESULT_BYTES: usize = 1 << 20;

impl JobResult {
    /// Whether the document shows this output inline.
    pub(super) fn is_inline(&self) -> bool {
        self.bytes <= INLINE_RESULT_BYTES
            && (self.content_type.starts_with("application/json")
                || self.content_type.starts_with("text/"))
    }
}

impl Record {
    /// The job's state as its document spells it.
    pub fn state_name(&self) -> Value {
        serde_json::to_value(self.state).unwrap_or(Value::Null)
    }

    /// The job's document.
    pub fn document(&self) -> Value {
        let id = &self.id;
        let result = match &self.outcome {
            Some(Outcome::Succeeded(result)) => {
                let mut shown = json!({
                    "content_type": result.content_type,
                    "bytes": result.bytes,
                    "href": format!("/v1/jobs/{id}/result"),
                    "page": {
                        "status": result.page_status,
                        "url": result.page_url,
                        "dialogs": serde_json::from_str::<Value>(&result.page_dialogs)
                            .unwrap_or_else(|_| json!([])),
                        "warnings": serde_json::from_str::<Value>(&result.page_warnings)
                            .unwrap_or_else(|_| json!([])),
                    },
                    "plugin": { "fuel": result.plugin_fuel, "ms": result.plugin_ms },
                });
                if let Some(body) = &result.inline {
                    if result.content_type.starts_with("application/json") {
                        if let Ok(value) = serde_json::from_slice::<Value>(body) {
                            shown["json"] = value;
                        }
                    } else if let Ok(text) = std::str::from_utf8(body) {
                        shown["text"] = Value::String(text.to_owned());
                    }
                }
                shown
            }
            Some(Outcome::Evicted {
                content_type,
                bytes,
            }) => json!({ "content_type": content_type, "bytes": bytes, "evicted": true }),
            _ => Value::Null,
        };
        let error = match &self.outcome {
            Some(Outcome::Failed(failure)) => json!(failure),
            _ => Value::Null,
        };
        json!({
            "id": id,
            "state": self.state_name(),
            "plugin": self.submission.plugin,
            "tenant": &*self.submission.tenant,
            "priority": { "class": self.submission.class, "number": self.submission.number },
            "url": self.submission.url,
            "submitted_at": timestamp(self.submitted_at),
            "started_at": self.started_at.map(timestamp),
            "finished_at": self.finished_at.map(timestamp),
            "queued_ms": self.queued_ms(),
            "run_ms": self.run_ms(),
            "attempts": self.attempts,
            "host": self.host,
            "result": result,
            "error": error,
            "webhook": self.webhook,
        })
    }
}

/// Unix milliseconds as RFC 3339.
fn timestamp(at_ms: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}
