//! egress: the one way out for what pages fetch and webhooks post. Chromium is started with this
//! host's proxy as its proxy for every request, loopback included (`proxy.rs`): the main document and
//! its redirects, subresources, frames, fetch and XHR, WebSockets, workers, inline-HTML jobs and
//! plugin navigations alike; the webhook client uses it too. The proxy resolves each host once,
//! checks every address against [`EgressRules`] (`rules.rs`), and connects to an address it checked.
//! (Chromium's DevTools has no port to reach: it runs over a pipe, `browser/devtools.rs`.) Pages
//! may go on through another proxy (`upstream.rs`): the server's `--proxy`, or a job's own.
//!
//! The API checks a job's URL and webhook against the same rules before any browser work
//! (`url_policy`), so the common refusal is an early 400; the proxy is what holds for everything
//! the page does after that.

mod proxy;
mod rules;
mod upstream;

pub use proxy::{EGRESS_HEADER, EgressProxy};
pub use rules::{EgressRules, HostPattern, Refusal, is_internal};
pub use upstream::Upstream;
