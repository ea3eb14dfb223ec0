//! Integration tests: the real server, a real Chromium, fixture pages on loopback.

mod api;
mod failures;
mod harness;
mod page_ops;
mod pool;
