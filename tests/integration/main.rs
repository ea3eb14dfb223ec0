//! Integration tests: the real server, a real Chromium, fixture pages on loopback.

mod api;
mod cli;
mod failures;
mod harness;
mod jobs;
mod languages;
mod page_ops;
mod plugins;
mod pool;
mod registry;
mod sched;
mod shards;
