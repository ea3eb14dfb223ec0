//! [`PluginSettings`]: the limits of every plugin call and the resources of the plugin host, with
//! their defaults and where each number comes from.

use std::path::PathBuf;
use std::time::Duration;

use crate::topology::Node;
use crate::url_policy::UrlPolicy;

#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Fuel per plugin call.
    pub fuel: u64,
    /// Wall time per plugin call, host calls included; a job's own deadline also applies.
    pub timeout: Duration,
    /// Linear memory per plugin instance.
    pub max_memory_bytes: usize,
    /// Linear memory all plugin instances together may hold.
    pub max_total_memory_bytes: usize,
    /// Largest output of one call.
    pub max_output_bytes: usize,
    /// Plugin instances alive at once: the size of the pooling allocator.
    pub max_instances: u32,
    /// Plugin worker threads in all.
    pub workers: usize,
    /// The shards' nodes: a group of workers each, pinned to the node's CPUs and sharing
    /// `workers` by CPUs. Empty: one group, unpinned.
    pub worker_nodes: Vec<Node>,
    /// The server's URL policy, which plugins' own navigations obey too.
    pub url_policy: UrlPolicy,
    /// Components to load at start-up, by name.
    pub files: Vec<(String, PathBuf)>,
    /// Largest upload, in bytes.
    pub max_upload_bytes: usize,
    /// Where uploads and compiled code are kept; `None` keeps nothing (one-off commands).
    pub data_dir: Option<PathBuf>,
}

impl PluginSettings {
    /// One unit per WebAssembly instruction, many of which cost nothing once compiled, so a tight
    /// loop here burns ~1.7e10 units per second of CPU (measured). 1e10 is ~0.6 s of CPU: far above
    /// an extractor in Rust (~3k units for a small call), C (~8k) or an interpreter (QuickJS ~74k,
    /// Python ~200k, SpiderMonkey ~6M), and a spinning plugin stops within a second.
    pub const FUEL: u64 = 10_000_000_000;
    /// As long as a job's default budget.
    pub const TIMEOUT: Duration = Duration::from_secs(30);
    /// Python and JavaScript components need 30-60 MiB; 256 leaves room for a page's worth of data.
    pub const MEMORY_MIB: usize = 256;
    /// A full-page PNG of a long page is 5-20 MiB.
    pub const MAX_OUTPUT_MIB: usize = 64;
    /// Calls beyond it wait, within their job's deadline. Each slot reserves address space, not
    /// memory.
    pub const INSTANCES: u32 = 256;
    /// JavaScript and Python components are 12-19 MB.
    pub const MAX_UPLOAD_MIB: usize = 64;

    /// A quarter of the machine's memory for all plugins together, leaving the rest to Chromium.
    pub fn default_total_memory_bytes() -> usize {
        (crate::sys::total_memory_bytes() / 4) as usize
    }
}

impl Default for PluginSettings {
    /// The defaults above, one worker thread per core, one unpinned group of workers, no files and
    /// no data directory.
    fn default() -> Self {
        Self {
            fuel: Self::FUEL,
            timeout: Self::TIMEOUT,
            max_memory_bytes: Self::MEMORY_MIB << 20,
            max_total_memory_bytes: Self::default_total_memory_bytes(),
            max_output_bytes: Self::MAX_OUTPUT_MIB << 20,
            max_instances: Self::INSTANCES,
            workers: crate::sys::cores(),
            worker_nodes: Vec::new(),
            url_policy: UrlPolicy::default(),
            files: Vec::new(),
            max_upload_bytes: Self::MAX_UPLOAD_MIB << 20,
            data_dir: None,
        }
    }
}
