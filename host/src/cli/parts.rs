//! The flag groups that `serve` (and, for the browser, `render`) flatten into their own flags, each
//! turned into its part's settings. The defaults are the parts' own constants.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::ConfigError;
use crate::browser::{BrowserSettings, ChromiumUser, locate_chrome};
use crate::plugin::PluginSettings;
use crate::pool::PoolSettings;
use crate::url_policy::UrlPolicy;

/// Where Chromium comes from and how it starts.
#[derive(Debug, Clone, Args)]
pub struct BrowserArgs {
    /// Chromium executable. When unset: `$CHROME`, else `/usr/bin/chromium` (Debian's wrapper is
    /// bypassed for the real binary next to it, which starts ~70 ms faster).
    #[arg(long = "chrome", env = "CHROME")]
    pub chrome: Option<PathBuf>,

    /// How long Chromium may take to answer over DevTools once started, in milliseconds. It takes ~270 ms on a
    /// 2-core machine; a loaded machine can take seconds.
    #[arg(
        long,
        env = "PAGEWRIGHT_BROWSER_LAUNCH_TIMEOUT_MS",
        default_value_t = BrowserSettings::LAUNCH_TIMEOUT.as_millis() as u64
    )]
    pub browser_launch_timeout_ms: u64,

    /// Run Chromium without its sandbox. The sandbox (on by default) holds every renderer in
    /// seccomp-bpf and namespaces of its own, so a page that exploits a renderer bug is still held
    /// in; it needs unprivileged user namespaces. Only for hosts that cannot give it those.
    #[arg(long, env = "PAGEWRIGHT_NO_CHROMIUM_SANDBOX")]
    pub no_chromium_sandbox: bool,

    /// The unprivileged account Chromium runs as. Default: `nobody` when the server runs as root
    /// (Chromium refuses its sandbox as root), else the server's own user.
    #[arg(long, env = "PAGEWRIGHT_CHROMIUM_USER")]
    pub chromium_user: Option<String>,
}

impl BrowserArgs {
    pub fn settings(&self) -> Result<BrowserSettings, ConfigError> {
        let executable = locate_chrome(self.chrome.clone()).map_err(ConfigError::ChromeMissing)?;
        let user = match &self.chromium_user {
            Some(name) => match ChromiumUser::named(name) {
                Ok(Some(user)) if user.uid != 0 => Some(user),
                Ok(Some(_)) => {
                    return Err(ConfigError::Invalid {
                        flag: "chromium-user",
                        rule: "an unprivileged account (not uid 0)",
                        value: name.clone(),
                    });
                }
                Ok(None) | Err(_) => {
                    return Err(ConfigError::Invalid {
                        flag: "chromium-user",
                        rule: "an account this system has",
                        value: name.clone(),
                    });
                }
            },
            None => ChromiumUser::default_for_this_process(),
        };
        if !self.no_chromium_sandbox && user.is_none() && crate::sys::running_as_root() {
            return Err(ConfigError::RootWithoutUser);
        }
        Ok(BrowserSettings {
            launch_timeout: Duration::from_millis(self.browser_launch_timeout_ms),
            sandbox: !self.no_chromium_sandbox,
            user,
            ..BrowserSettings::new(executable)
        })
    }
}

/// Page pool sizing and recycling, and how many renders run at once.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Most pages alive at once (idle and leased). Default: one per 128 MiB of memory, between 8 and
    /// 512 (a page costs ~10.5 MB PSS measured, plus headroom for heavy real-world pages).
    #[arg(long, env = "PAGEWRIGHT_MAX_PAGES")]
    pub max_pages: Option<usize>,

    /// Most renders running at once. The scheduler adapts how many actually run to how busy the
    /// CPUs are (see `--min-concurrent-renders`): Chromium rendering local pages saturates 2 cores
    /// at 4 (measured), while renders that wait on slow sites use no CPU and can run by the dozen.
    /// Default: 8 per CPU core, at most `--max-pages`.
    #[arg(long, env = "PAGEWRIGHT_MAX_CONCURRENT_RENDERS")]
    pub max_concurrent_renders: Option<usize>,

    /// The fewest renders the adaptive limit allows at once, and where it starts. Default: two per
    /// CPU core, where Chromium saturated 2 cores in the pool benchmark; the limit grows above it
    /// only while the CPUs idle with jobs waiting (renders waiting on slow sites).
    #[arg(long, env = "PAGEWRIGHT_MIN_CONCURRENT_RENDERS")]
    pub min_concurrent_renders: Option<usize>,

    /// Run exactly `--max-concurrent-renders` at once instead of adapting to the CPUs' load.
    #[arg(long, env = "PAGEWRIGHT_FIXED_CONCURRENCY", default_value_t = false)]
    pub fixed_concurrency: bool,

    /// How long a page may sit idle before it is closed, in milliseconds.
    #[arg(
        long,
        env = "PAGEWRIGHT_PAGE_IDLE_TIMEOUT_MS",
        default_value_t = PoolSettings::IDLE_TIMEOUT.as_millis() as u64
    )]
    pub page_idle_timeout_ms: u64,

    /// Jobs one page serves before it is closed and replaced: long-lived pages accumulate memory and
    /// slow down.
    #[arg(long, env = "PAGEWRIGHT_PAGE_REUSE_LIMIT", default_value_t = PoolSettings::PAGE_REUSE_LIMIT)]
    pub page_reuse_limit: u32,

    /// Jobs one browser context (one isolation key) serves before it is retired and replaced.
    #[arg(long, env = "PAGEWRIGHT_CONTEXT_REUSE_LIMIT", default_value_t = PoolSettings::CONTEXT_REUSE_LIMIT)]
    pub context_reuse_limit: u32,

    /// How long a job may wait for a page of the pool before it fails, in milliseconds.
    #[arg(
        long,
        env = "PAGEWRIGHT_LEASE_TIMEOUT_MS",
        default_value_t = PoolSettings::LEASE_TIMEOUT.as_millis() as u64
    )]
    pub lease_timeout_ms: u64,
}

/// How many renders may run at once, from the pool flags: the scheduler's concern.
#[derive(Debug, Clone, Copy)]
pub struct Renders {
    pub max: usize,
    pub min: usize,
    pub fixed: bool,
}

impl PoolArgs {
    pub fn settings(&self) -> Result<(PoolSettings, Renders), ConfigError> {
        let cores = crate::sys::cores();
        let max_pages = self
            .max_pages
            .unwrap_or_else(|| PoolSettings::default_max_pages(crate::sys::total_memory_bytes()));
        let max_concurrent_renders = self
            .max_concurrent_renders
            .unwrap_or((8 * cores).min(max_pages));
        let min_concurrent_renders = self
            .min_concurrent_renders
            .unwrap_or(2 * cores)
            .min(max_concurrent_renders);
        if min_concurrent_renders == 0 {
            return Err(ConfigError::Invalid {
                flag: "min-concurrent-renders",
                rule: "at least 1",
                value: "0".into(),
            });
        }
        if max_concurrent_renders == 0 {
            return Err(ConfigError::Invalid {
                flag: "max-concurrent-renders",
                rule: "at least 1",
                value: "0".into(),
            });
        }
        // Every running render holds a page, so fewer pages than renders would leave renders waiting for
        // pages that no one gives back.
        if max_pages < max_concurrent_renders {
            return Err(ConfigError::Invalid {
                flag: "max-pages",
                rule: "at least --max-concurrent-renders",
                value: max_pages.to_string(),
            });
        }
        if self.page_reuse_limit == 0 || self.context_reuse_limit == 0 {
            return Err(ConfigError::Invalid {
                flag: "page-reuse-limit/context-reuse-limit",
                rule: "at least 1",
                value: "0".into(),
            });
        }
        let pool = PoolSettings {
            max_pages,
            idle_timeout: Duration::from_millis(self.page_idle_timeout_ms),
            page_reuse_limit: self.page_reuse_limit,
            context_reuse_limit: self.context_reuse_limit,
            lease_timeout: Duration::from_millis(self.lease_timeout_ms),
        };
        let renders = Renders {
            max: max_concurrent_renders,
            min: min_concurrent_renders,
            fixed: self.fixed_concurrency,
        };
        Ok((pool, renders))
    }
}

/// Limits on every plugin call.
#[derive(Debug, Clone, Args)]
pub struct PluginArgs {
    /// Fuel per plugin call: one unit per WebAssembly instruction, many of which cost nothing once
    /// compiled, so a tight loop here burns ~1.7e10 units per second of CPU (measured). 1e10 is ~0.6 s
    /// of CPU: far above an extractor in Rust (~3k units for a small call), C (~8k) or an interpreter
    /// (QuickJS ~74k, Python ~200k, SpiderMonkey ~6M), and a spinning plugin stops within a second.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_FUEL", default_value_t = PluginSettings::FUEL)]
    pub plugin_fuel: u64,

    /// Wall time per plugin call in milliseconds, host calls included; a job's own deadline also applies.
    #[arg(
        long,
        env = "PAGEWRIGHT_PLUGIN_TIMEOUT_MS",
        default_value_t = PluginSettings::TIMEOUT.as_millis() as u64
    )]
    pub plugin_timeout_ms: u64,

    /// Linear memory per plugin instance, in MiB. Python and JavaScript components need 30-60 MiB;
    /// 256 leaves room for a page's worth of data.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_MEMORY_MIB", default_value_t = PluginSettings::MEMORY_MIB)]
    pub plugin_memory_mib: usize,

    /// Linear memory all plugin instances together may hold, in MiB; a plugin that would go over it
    /// stops with a 503. Default: a quarter of the machine's memory, leaving the rest to Chromium.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_MEMORY_TOTAL_MIB")]
    pub plugin_memory_total_mib: Option<usize>,

    /// Largest output of one plugin call, in MiB. A full-page PNG of a long page is 5-20 MiB.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_MAX_OUTPUT_MIB", default_value_t = PluginSettings::MAX_OUTPUT_MIB)]
    pub plugin_max_output_mib: usize,

    /// Plugin instances alive at once: the size of the pooling allocator, and of the semaphore in front
    /// of it. Calls beyond it wait, within their job's deadline. Each slot reserves address space, not
    /// memory.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_INSTANCES", default_value_t = PluginSettings::INSTANCES)]
    pub plugin_instances: u32,

    /// Threads that run plugin code, at a lower OS priority than the server. Default: one per CPU core.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_WORKERS")]
    pub plugin_workers: Option<usize>,

    /// Largest plugin component an upload may send, in MiB (above it: 413). JavaScript and Python
    /// components are 12-19 MB.
    #[arg(long, env = "PAGEWRIGHT_PLUGIN_MAX_UPLOAD_MIB", default_value_t = PluginSettings::MAX_UPLOAD_MIB)]
    pub plugin_max_upload_mib: usize,

    /// Loads a plugin component from a file at start-up, as `NAME=PATH` (repeatable; comma-separated
    /// in the environment). For plugin authors trying a build, and operators who ship plugins as files.
    #[arg(long = "plugin", env = "PAGEWRIGHT_PLUGINS", value_delimiter = ',', value_parser = parse_plugin_file)]
    pub plugin_files: Vec<(String, PathBuf)>,
}

/// `NAME=PATH`, with a name that is safe in URLs and file names.
pub(super) fn parse_plugin_file(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=PATH"))?;
    crate::plugin::check_name(name)?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

impl PluginArgs {
    /// The plugin host's settings; plugins' own navigations obey `url_policy`.
    pub fn settings(&self, url_policy: UrlPolicy) -> Result<PluginSettings, ConfigError> {
        let positive = |flag: &'static str, value: u64| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    flag,
                    rule: "positive",
                    value: "0".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("plugin-fuel", self.plugin_fuel)?;
        positive("plugin-timeout-ms", self.plugin_timeout_ms)?;
        positive("plugin-memory-mib", self.plugin_memory_mib as u64)?;
        positive("plugin-max-output-mib", self.plugin_max_output_mib as u64)?;
        positive("plugin-instances", u64::from(self.plugin_instances))?;
        positive("plugin-max-upload-mib", self.plugin_max_upload_mib as u64)?;
        // The pool reserves address space per slot (4 GiB for each memory, for guard pages): stay well
        // inside the 128 TiB of user address space.
        if self.plugin_instances > 4096 {
            return Err(ConfigError::Invalid {
                flag: "plugin-instances",
                rule: "at most 4096",
                value: self.plugin_instances.to_string(),
            });
        }
        if self.plugin_memory_mib > 4096 {
            return Err(ConfigError::Invalid {
                flag: "plugin-memory-mib",
                rule: "at most 4096 (a 32-bit memory)",
                value: self.plugin_memory_mib.to_string(),
            });
        }
        let max_total_memory_bytes = self
            .plugin_memory_total_mib
            .map_or_else(PluginSettings::default_total_memory_bytes, |mib| mib << 20);
        if max_total_memory_bytes < self.plugin_memory_mib << 20 {
            return Err(ConfigError::Invalid {
                flag: "plugin-memory-total-mib",
                rule: "at least --plugin-memory-mib",
                value: (max_total_memory_bytes >> 20).to_string(),
            });
        }
        let workers = self.plugin_workers.unwrap_or_else(crate::sys::cores);
        positive("plugin-workers", workers as u64)?;
        Ok(PluginSettings {
            fuel: self.plugin_fuel,
            timeout: Duration::from_millis(self.plugin_timeout_ms),
            max_memory_bytes: self.plugin_memory_mib << 20,
            max_total_memory_bytes,
            max_output_bytes: self.plugin_max_output_mib << 20,
            max_instances: self.plugin_instances,
            workers,
            worker_nodes: Vec::new(),
            url_policy,
            files: self.plugin_files.clone(),
            max_upload_bytes: self.plugin_max_upload_mib << 20,
            data_dir: None,
        })
    }
}
