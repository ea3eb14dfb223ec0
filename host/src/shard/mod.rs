//! shard: one Chromium and page pool per NUMA node, and the placement of each job on one of them.
//!
//! A [`Shard`] owns a browser supervisor whose Chromium is pinned to its node's CPUs and prefers
//! its node's memory (every Chromium process inherits both from the browser process; see
//! `sys.rs`), and the pool of that browser's pages. The plugin host keeps a group of plugin workers
//! per shard, pinned to the same CPUs, and the executor runs a job's plugin code on its shard's
//! group. The HTTP server, the scheduler's queue and the CDP connections stay on the server's own
//! threads: they are light, and one queue for every shard keeps one priority order for the whole
//! machine.
//!
//! Placement ([`Shards::place`]) happens when a job leaves the queue with a run slot, not when it
//! arrives. In order, a job goes to:
//! 1. a shard with an idle page of the job's isolation key (a warm page: no page to open, its
//!    context's cache is hot), if that shard has room;
//! 2. else the key's home shard (where its last job ran, so its context is there), if it has room;
//! 3. else the least-loaded shard: the predicted render time (the scheduler's per-origin averages) of
//!    the jobs running there, per CPU.
//!
//! "Room" is the shard's share of the scheduler's current concurrency limit, by CPUs. A shard whose
//! browser is down gets no jobs until it is back (its supervisor relaunches it; the others serve on),
//! unless every browser is down. Binding a job at dispatch is what work stealing gives per-shard
//! queues: no shard idles while another has a backlog, because there is no per-shard backlog; a job
//! waits in the one queue, in the machine's priority order, until some shard has room for it.

mod placement;

pub use placement::Placement;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_utils::CachePadded;
use lru::LruCache;
use serde::Serialize;

use crate::browser::{BrowserSettings, BrowserState, BrowserSupervisor};
use crate::metrics::{Metrics, PlacementLabels};
use crate::pool::{PagePool, PoolSettings, PoolStatus};
use crate::topology::{Node, Topology, share_by_cpus};
use placement::{Candidate, choose, hash_shard};

/// Isolation keys whose home shard is remembered; the least recently placed are forgotten first.
const HOMES: usize = 65_536;

/// One NUMA node's browser and pool.
#[derive(Debug)]
pub struct Shard {
    pub index: usize,
    pub node: Node,
    pub browser: BrowserSupervisor,
    pub pool: PagePool,
    /// Its share of the renders the machine may run at once, by CPUs.
    max_renders: usize,
    /// Jobs placed here and not finished, and their predicted milliseconds. Written by every job
    /// placed, from any thread: a cache line each, so shards' counters never share one.
    running: CachePadded<AtomicUsize>,
    load_ms: CachePadded<AtomicU64>,
}

impl Shard {
    /// Jobs placed here and still running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Predicted milliseconds of the running jobs, per CPU.
    fn load_per_cpu(&self) -> f64 {
        self.load_ms.load(Ordering::Relaxed) as f64 / self.node.cpus.len() as f64
    }

    fn is_up(&self) -> bool {
        self.browser.current().is_some()
    }

    /// The pool's figures with the renders running here.
    fn pool_view(&self) -> PoolView {
        PoolView {
            pages: self.pool.status(),
            running_renders: self.running(),
            max_concurrent_renders: self.max_renders,
        }
    }
}

/// Every shard. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shards {
    inner: Arc<ShardsInner>,
}

#[derive(Debug)]
struct ShardsInner {
    topology: Topology,
    shards: Vec<Arc<Shard>>,
    /// The shard each isolation key last ran on.
    homes: Mutex<LruCache<Arc<str>, usize>>,
    metrics: Metrics,
}

impl std::ops::Deref for Shards {
    type Target = [Arc<Shard>];

    fn deref(&self) -> &Self::Target {
        &self.inner.shards
    }
}

/// A job's place on a shard, held while it runs there.
#[derive(Debug)]
pub struct Placed {
    shard: Arc<Shard>,
    cost_ms: u64,
    pub placement: Placement,
}

impl Placed {
    pub fn shard(&self) -> &Arc<Shard> {
        &self.shard
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        self.shard.running.fetch_sub(1, Ordering::Relaxed);
        self.shard
            .load_ms
            .fetch_sub(self.cost_ms, Ordering::Relaxed);
    }
}

/// One shard's figures for `/v1/status`.
#[derive(Debug, Serialize)]
pub struct ShardStatus {
    pub index: usize,
    pub node: Node,
    pub browser: BrowserStatus,
    /// Jobs placed here and running.
    pub running: usize,
    /// Their predicted render time, in all.
    pub predicted_load_ms: u64,
    pub pool: PoolView,
}

/// A pool's figures with the renders running on its shard.
#[derive(Debug, Serialize)]
pub struct PoolView {
    #[serde(flatten)]
    pub pages: PoolStatus,
    pub running_renders: usize,
    pub max_concurrent_renders: usize,
}

#[derive(Debug, Serialize)]
pub struct BrowserStatus {
    /// `starting`, `connected`, `down` (a relaunch is pending) or `stopped`.
    pub state: &'static str,
    pub pid: Option<u32>,
    pub generation: Option<u64>,
    pub version: Option<String>,
    /// Why it is down, when it is.
    pub reason: Option<String>,
    pub restarts: u64,
}

impl BrowserStatus {
    fn of(browser: &BrowserSupervisor) -> Self {
        let (state, session, reason) = match browser.state() {
            BrowserState::Starting => ("starting", None, None),
            BrowserState::Ready(session) if session.is_alive() => {
                ("connected", Some(session), None)
            }
            BrowserState::Ready(session) => ("down", Some(session), None),
            BrowserState::Down { reason } => ("down", None, Some(reason)),
            BrowserState::Stopped => ("stopped", None, None),
        };
        Self {
            state,
            pid: session.as_ref().map(|session| session.pid),
            generation: session.as_ref().map(|session| session.generation),
            version: session.map(|session| session.version.clone()),
            reason,
            restarts: browser.restarts(),
        }
    }
}

impl Shards {
    /// A browser and a pool per node of `topology`, each browser pinned to its node, each pool with
    /// its node's share of the pages; `max_renders` is what the machine may run at once. The
    /// browsers launch in the background.
    pub fn start(
        topology: Topology,
        browser: &BrowserSettings,
        pool: &PoolSettings,
        max_renders: usize,
        metrics: &Metrics,
    ) -> Self {
        let total_cpus = topology.cpus();
        let shards = topology
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let browser = BrowserSupervisor::start(
                    BrowserSettings {
                        node: Some(node.clone()),
                        ..browser.clone()
                    },
                    metrics.clone(),
                );
                let renders = share_by_cpus(max_renders, node.cpus.len(), total_cpus);
                let pool = PagePool::new(
                    index,
                    browser.clone(),
                    pool.share(node.cpus.len(), total_cpus, renders),
                    metrics.clone(),
                );
                Arc::new(Shard {
                    index,
                    node: node.clone(),
                    browser,
                    pool,
                    max_renders: renders,
                    running: CachePadded::new(AtomicUsize::new(0)),
                    load_ms: CachePadded::new(AtomicU64::new(0)),
                })
            })
            .collect();
        Self {
            inner: Arc::new(ShardsInner {
                topology,
                shards,
                homes: Mutex::new(LruCache::new(
                    NonZeroUsize::new(HOMES).expect("HOMES is not zero"),
                )),
                metrics: metrics.clone(),
            }),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Places a job of isolation key `key`, predicted to take `cost_ms`, while the scheduler lets
    /// `limit` jobs run on the whole machine.
    pub fn place(&self, key: &str, cost_ms: f64, limit: usize) -> Placed {
        let shards = &self.inner.shards;
        let total_cpus = self.inner.topology.cpus();
        let candidates: Vec<Candidate> = shards
            .iter()
            .map(|shard| Candidate {
                up: shard.is_up(),
                room: shard.running() < share_by_cpus(limit, shard.node.cpus.len(), total_cpus),
                warm: shard.pool.has_idle_page(key),
                load_per_cpu: shard.load_per_cpu(),
            })
            .collect();
        let (index, placement) = {
            let mut homes = self.homes();
            let chosen = choose(&candidates, homes.get(key).copied());
            homes.put(Arc::from(key), chosen.0);
            chosen
        };
        let shard = shards[index].clone();
        let cost_ms = cost_ms.max(0.0).round() as u64;
        shard.running.fetch_add(1, Ordering::Relaxed);
        shard.load_ms.fetch_add(cost_ms, Ordering::Relaxed);
        self.inner
            .metrics
            .placements
            .get_or_create(&PlacementLabels {
                shard: index as u64,
                placement: placement.name(),
            })
            .inc();
        Placed {
            shard,
            cost_ms,
            placement,
        }
    }

    fn homes(&self) -> std::sync::MutexGuard<'_, LruCache<Arc<str>, usize>> {
        self.inner
            .homes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands each shard the pages to keep warm, `(isolation key, pages)`, for the keys whose home it
    /// is. A key with demand and no home yet (its jobs are all still queued) gets one by its hash, so
    /// its warm pages wait on one shard, where the placement of its first job will find them.
    pub fn set_warm_targets<'a>(&self, demand: impl IntoIterator<Item = (&'a str, usize)>) {
        let shards = &self.inner.shards;
        let mut targets = vec![HashMap::new(); shards.len()];
        let mut homes = self.homes();
        for (key, pages) in demand {
            let index = homes
                .get(key)
                .copied()
                .unwrap_or_else(|| hash_shard(key, shards.len()));
            targets[index].insert(key.to_owned(), pages);
        }
        drop(homes);
        for (shard, targets) in shards.iter().zip(targets) {
            shard.pool.set_warm_targets(targets);
        }
    }

    pub fn status(&self) -> Vec<ShardStatus> {
        self.inner
            .shards
            .iter()
            .map(|shard| ShardStatus {
                index: shard.index,
                node: shard.node.clone(),
                browser: BrowserStatus::of(&shard.browser),
                running: shard.running(),
                predicted_load_ms: shard.load_ms.load(Ordering::Relaxed),
                pool: shard.pool_view(),
            })
            .collect()
    }

    /// Shards whose browser is connected now.
    pub fn up(&self) -> usize {
        self.inner
            .shards
            .iter()
            .filter(|shard| shard.is_up())
            .count()
    }

    /// Every shard's pool figures added up.
    pub fn pool_status(&self) -> PoolView {
        let shards = &self.inner.shards;
        PoolView {
            pages: PoolStatus::total(shards.iter().map(|shard| shard.pool.status()))
                .expect("at least one shard"),
            running_renders: shards.iter().map(|shard| shard.running()).sum(),
            max_concurrent_renders: shards.iter().map(|shard| shard.max_renders).sum(),
        }
    }

    /// Closes every shard's pool, then stops its browser.
    pub async fn close(&self) {
        for shard in &self.inner.shards {
            shard.pool.close().await;
            shard.browser.shutdown().await;
        }
    }
}
