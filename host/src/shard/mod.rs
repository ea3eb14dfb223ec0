//! shard: one Chromium, page pool and set of plugin workers per NUMA node, and the placement of
//! each job on one of them.
//!
//! A [`Shard`] owns a browser supervisor whose Chromium is pinned to its node's CPUs and prefers
//! its node's memory (every Chromium process inherits both from the browser process; see
//! `sys::Pinning`), the pool of that browser's pages, and a renderer that runs the shard's plugin
//! code on the plugin workers pinned to the same CPUs. The HTTP server, the scheduler's queue and the
//! CDP connections stay on the server's own threads: they are light, and one queue for every shard
//! keeps one priority order for the whole machine.
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

pub mod topology;

pub use topology::{Node, Topology, TopologySource};

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_utils::CachePadded;
use lru::LruCache;
use serde::Serialize;

use crate::browser::{BrowserState, BrowserSupervisor};
use crate::metrics::{Metrics, PlacementLabels};
use crate::pool::{PagePool, PoolStatus};
use crate::render::Renderer;
use crate::sched::KeyDemand;

/// Isolation keys whose home shard is remembered; the least recently placed are forgotten first.
const HOMES: usize = 65_536;

/// One NUMA node's browser, pool and renderer.
#[derive(Debug)]
pub struct Shard {
    pub index: usize,
    pub node: Node,
    pub browser: BrowserSupervisor,
    pub pool: PagePool,
    pub renderer: Renderer,
    /// Jobs placed here and not finished, and their predicted milliseconds. Written by every job
    /// placed, from any thread: a cache line each, so shards' counters never share one.
    running: CachePadded<AtomicUsize>,
    load_ms: CachePadded<AtomicU64>,
}

impl Shard {
    pub fn new(
        index: usize,
        node: Node,
        browser: BrowserSupervisor,
        pool: PagePool,
        renderer: Renderer,
    ) -> Self {
        Self {
            index,
            node,
            browser,
            pool,
            renderer,
            running: CachePadded::new(AtomicUsize::new(0)),
            load_ms: CachePadded::new(AtomicU64::new(0)),
        }
    }

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
}

/// Why a job went to its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The shard had an idle page of the job's key.
    Warm,
    /// The key's home shard, without an idle page right now.
    Home,
    LeastLoaded,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Self::Warm => "warm",
            Self::Home => "home",
            Self::LeastLoaded => "least_loaded",
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
    pub pool: PoolStatus,
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
    /// `shards` must be one per node of `topology`, in its order.
    pub fn new(topology: Topology, shards: Vec<Shard>, metrics: Metrics) -> Self {
        assert_eq!(topology.nodes.len(), shards.len(), "a shard per node");
        Self {
            inner: Arc::new(ShardsInner {
                topology,
                shards: shards.into_iter().map(Arc::new).collect(),
                homes: Mutex::new(LruCache::new(
                    NonZeroUsize::new(HOMES).expect("HOMES is not zero"),
                )),
                metrics,
            }),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Places a job of isolation key `key`, predicted to take `cost_ms`, while the scheduler lets
    /// `limit` jobs run on the whole machine.
    pub fn place(&self, key: &Arc<str>, cost_ms: f64, limit: usize) -> Placed {
        let shards = &self.inner.shards;
        let total_cpus = self.inner.topology.cpus();
        let candidates: Vec<Candidate> = shards
            .iter()
            .map(|shard| Candidate {
                up: shard.is_up(),
                room: shard.running()
                    < topology::share_by_cpus(limit, shard.node.cpus.len(), total_cpus),
                warm: shard.pool.has_idle_page(key),
                load_per_cpu: shard.load_per_cpu(),
            })
            .collect();
        let (index, placement) = {
            let mut homes = self.homes();
            let chosen = choose(&candidates, homes.get(&**key).copied());
            homes.put(key.clone(), chosen.0);
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

    /// Hands each shard the pages to keep warm for the keys whose home it is. A key with demand and
    /// no home yet (its jobs are all still queued) gets one by its hash, so its warm pages wait on one
    /// shard, where the placement of its first job will find them.
    pub fn set_warm_targets(&self, demand: &[KeyDemand]) {
        let shards = &self.inner.shards;
        let mut targets = vec![std::collections::HashMap::new(); shards.len()];
        let mut homes = self.homes();
        for key in demand {
            let index = homes
                .get(key.key.as_str())
                .copied()
                .unwrap_or_else(|| hash_shard(&key.key, shards.len()));
            targets[index].insert(key.key.clone(), key.warm_pages);
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
                pool: shard.pool.status(),
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
    pub fn pool_status(&self) -> PoolStatus {
        PoolStatus::total(self.inner.shards.iter().map(|shard| shard.pool.status()))
            .expect("at least one shard")
    }

    /// Closes every shard's pool, then stops its browser.
    pub async fn close(&self) {
        for shard in &self.inner.shards {
            shard.pool.close().await;
            shard.browser.shutdown().await;
        }
    }
}

/// What placement weighs of one shard.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Its browser is connected.
    up: bool,
    /// Fewer jobs run there than its share of the limit.
    room: bool,
    /// It has an idle page of the job's isolation key.
    warm: bool,
    load_per_cpu: f64,
}

/// The shard a job goes to (an index into `candidates`, which is not empty), and why: see the
/// module's documentation.
fn choose(candidates: &[Candidate], home: Option<usize>) -> (usize, Placement) {
    let any_up = candidates.iter().any(|candidate| candidate.up);
    let usable = |candidate: &Candidate| candidate.up || !any_up;
    let least_loaded = |accept: &dyn Fn(&Candidate) -> bool| {
        candidates
            .iter()
            .enumerate()
            .filter(|(_, candidate)| usable(candidate) && accept(candidate))
            .min_by(|(_, a), (_, b)| a.load_per_cpu.total_cmp(&b.load_per_cpu))
            .map(|(index, _)| index)
    };
    if let Some(index) = least_loaded(&|candidate| candidate.room && candidate.warm) {
        return (index, Placement::Warm);
    }
    if let Some(index) = home.filter(|&index| {
        candidates
            .get(index)
            .is_some_and(|candidate| usable(candidate) && candidate.room)
    }) {
        return (index, Placement::Home);
    }
    let index = least_loaded(&|candidate| candidate.room)
        .or_else(|| least_loaded(&|_| true))
        .expect("at least one shard");
    (index, Placement::LeastLoaded)
}

/// A stable shard for `key` (FNV-1a: the same key picks the same shard in every process).
fn hash_shard(key: &str, shards: usize) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(up: bool, room: bool, warm: bool, load_per_cpu: f64) -> Candidate {
        Candidate {
            up,
            room,
            warm,
            load_per_cpu,
        }
    }

    #[test]
    fn a_warm_page_wins_then_the_home_then_the_least_loaded() {
        let idle = shard(true, true, false, 0.0);
        let busy = shard(true, true, false, 500.0);
        let warm = shard(true, true, true, 900.0);
        assert_eq!(choose(&[idle, warm], Some(0)), (1, Placement::Warm));
        assert_eq!(choose(&[idle, busy], Some(1)), (1, Placement::Home));
        assert_eq!(choose(&[busy, idle], None), (1, Placement::LeastLoaded));
        // Two warm shards: the less loaded one.
        assert_eq!(
            choose(&[warm, shard(true, true, true, 100.0)], None),
            (1, Placement::Warm)
        );
    }

    #[test]
    fn a_full_shard_keeps_its_keys_only_while_it_has_room() {
        let full_warm_home = shard(true, false, true, 100.0);
        let other = shard(true, true, false, 800.0);
        assert_eq!(
            choose(&[full_warm_home, other], Some(0)),
            (1, Placement::LeastLoaded)
        );
        // Every shard full (urgent headroom): the least loaded takes it anyway.
        let full = shard(true, false, false, 300.0);
        assert_eq!(
            choose(&[full_warm_home, full], Some(1)),
            (0, Placement::LeastLoaded)
        );
    }

    #[test]
    fn a_shard_whose_browser_is_down_gets_nothing_while_another_is_up() {
        let down_warm_home = shard(false, true, true, 0.0);
        let up = shard(true, true, false, 900.0);
        assert_eq!(
            choose(&[down_warm_home, up], Some(0)),
            (1, Placement::LeastLoaded)
        );
        // Every browser down: jobs still go somewhere, and wait there for the relaunch.
        let down = shard(false, true, false, 100.0);
        assert_eq!(
            choose(&[down_warm_home, down], Some(0)),
            (0, Placement::Warm)
        );
    }

    #[test]
    fn keys_hash_to_a_stable_shard() {
        assert_eq!(hash_shard("tenant-a", 1), 0);
        let spread: std::collections::BTreeSet<usize> = (0..64)
            .map(|n| hash_shard(&format!("key-{n}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
        assert_eq!(hash_shard("key-7", 4), hash_shard("key-7", 4));
    }
}
