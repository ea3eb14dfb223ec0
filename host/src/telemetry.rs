//! Traces, over OpenTelemetry's OTLP/HTTP, when the standard variables ask for them: an endpoint in
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`, and neither
//! `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`. Off otherwise, at no cost beyond the
//! `tracing` spans the code has anyway.
//!
//! The spans are `tracing`'s (a request's, a job's and its steps'); this module adds the layer that
//! exports them, and W3C `traceparent` in and out: taken from requests (so a job's trace continues
//! the caller's), kept with async jobs (which run later, maybe on another host), and passed on to
//! webhooks. With export off, a request's `traceparent` is still kept and passed on as it came.
//!
//! The SDK's batch processor exports from a thread of its own with a blocking client, so
//! [`Telemetry::from_env`] runs before the async runtime's work and [`Telemetry::shutdown`] after.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header a trace's context travels in.
pub const TRACEPARENT: &str = "traceparent";

/// The exporter of traces, while the process runs.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl Telemetry {
    /// The exporter the `OTEL_*` variables ask for; `None` when they ask for none.
    pub fn from_env() -> Result<Option<Self>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|value| value == "none")
        {
            return Ok(None);
        }
        let Some(endpoint) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => Protocol::HttpBinary,
            Some("http/json") => Protocol::HttpJson,
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not served: pagewright exports over \
                     http/protobuf (the default) or http/json"
                ));
            }
        };
        // The endpoint, headers and timeout come from the variables, read by the exporter itself.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .build()
            .map_err(|error| format!("the OTLP exporter for {endpoint} failed: {error}"))?;
        let mut resource = Resource::builder();
        if var("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("pagewright");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(Self { provider, endpoint }))
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans for this exporter.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("pagewright"))
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exports what is left, within a few seconds, and stops.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("warning: the last traces were not exported: {error}");
        }
    }
}

/// Makes the `traceparent` a request (or a stored job) came with the parent of `span`. A missing
/// or malformed one leaves `span` where it is.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Only fails once the span has started children or ended: not the case here.
        let _ = span.set_parent(context);
    }
}

/// The `traceparent` of `span` when traces are exported; else `fallback` (the one the request came
/// with), checked, so what is passed on is at least well formed.
pub fn traceparent_of(span: &tracing::Span, fallback: Option<&str>) -> Option<String> {
    let context = span.context();
    if context.span().span_context().is_valid() {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        return carrier.remove(TRACEPARENT);
    }
    fallback
        .filter(|traceparent| is_traceparent(traceparent))
        .map(str::to_owned)
}

/// `version-traceid-parentid-flags`, lower-case hex, as W3C Trace Context writes it.
fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_checked_before_they_are_passed_on() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_traceparent(good));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y",
        ] {
            assert!(!is_traceparent(bad), "{bad:?}");
        }
        // With no exporter, a span has no context of its own: the request's passes on, if sound.
        let span = tracing::Span::none();
        assert_eq!(traceparent_of(&span, Some(good)).as_deref(), Some(good));
        assert_eq!(traceparent_of(&span, Some("nonsense")), None);
    }
}
