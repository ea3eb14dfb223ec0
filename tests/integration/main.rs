//! Integration tests: the real server, a real Chromium, fixture pages on loopback, driven through the
//! server's public entry points (the command line's settings, the router over HTTP). The pool's and
//! the page operations' own tests are the host's (`host/src/pool/tests.rs`, `host/src/page/tests.rs`).

mod api;
mod batches;
mod cache;
mod cli;
mod crawls;
mod durable;
mod egress;
#[path = "../support/eventually.rs"]
mod eventually;
mod failures;
mod farm;
mod hardening;
mod harness;
mod jobs;
mod languages;
mod layers;
mod openapi;
mod options;
mod playground;
mod plugins;
#[path = "../support/postgres.rs"]
mod postgres;
mod proxies;
mod registry;
mod sched;
mod shards;
#[path = "../support/site.rs"]
mod site;
mod store;
mod templates;
mod tenants;
mod traces;
#[path = "../support/upstream_proxy.rs"]
mod upstream_proxy;
mod waiting;
