//! A job as `GET /v1/jobs/{id}` shows it and its webhook receives it: JSON, with small JSON and text
//! results inline.

use serde_json::{Value, json};

use super::{Outcome, Record};

/// JSON and text results up to this size are inlined in the job's document (and its webhook);
/// larger ones are fetched from `/v1/jobs/{id}/result`.
const INLINE_RESULT_BYTES: usize = 1 << 20;

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
                    "bytes": result.body.len(),
                    "href": format!("/v1/jobs/{id}/result"),
                    "page": { "status": result.page_status, "url": result.page_url },
                    "plugin": { "fuel": result.plugin_fuel, "ms": result.plugin_ms },
                });
                if result.body.len() <= INLINE_RESULT_BYTES {
                    if result.content_type.starts_with("application/json") {
                        if let Ok(value) = serde_json::from_slice::<Value>(&result.body) {
                            shown["json"] = value;
                        }
                    } else if result.content_type.starts_with("text/")
                        && let Ok(text) = std::str::from_utf8(&result.body)
                    {
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
            "id": &**id,
            "state": self.state_name(),
            "plugin": self.submission.plugin,
            "tenant": &*self.submission.tenant,
            "priority": { "class": self.submission.class, "number": self.submission.number },
            "url": self.submission.url,
            "submitted_at": timestamp(self.submitted_at),
            "started_at": self.started.map(|(at, _)| timestamp(at)),
            "finished_at": self.finished.map(|(at, _)| timestamp(at)),
            "queued_ms": self.queued_ms(),
            "run_ms": self.run_ms(),
            "result": result,
            "error": error,
            "webhook": self.webhook,
        })
    }
}

fn timestamp(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}
