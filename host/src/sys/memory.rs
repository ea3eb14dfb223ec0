//! Memory as this process may use it: the machine's (`/proc/meminfo`), or the container's where a
//! cgroup limits it (Docker's `--memory`, a Kubernetes pod's `limits.memory`), which is what the OOM
//! killer goes by. The memory-derived defaults (pages, plugin memory) and `/v1/pressure` read it.
//!
//! cgroup v2: `memory.max` and `memory.current` of this process's cgroup (`0::PATH` in
//! `/proc/self/cgroup`) under `/sys/fs/cgroup`; v1: `memory.limit_in_bytes` and
//! `memory.usage_in_bytes` under `/sys/fs/cgroup/memory`. Every ancestor's limit applies, so the
//! smallest one on the way up counts. Inside a cgroup namespace the path is `/` and the mount is the
//! container's own cgroup. Page cache the kernel can drop (`inactive_file`) is not counted as used,
//! as the kubelet does not count it either.

use std::path::{Path, PathBuf};

/// A cgroup v1 "limit" at or above this is none (the kernel's maximum, rounded to pages).
const V1_UNLIMITED: u64 = 1 << 62;

/// Memory now: the process's resident set, and what is available of the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub host_rss: Option<u64>,
    pub available: Option<u64>,
    pub total: Option<u64>,
}

/// The machine's memory is low when less than this share of it is available: a server that keeps
/// taking work then gets its Chromium killed by the kernel.
const LOW_MEMORY_SHARE: f64 = 0.05;

impl Memory {
    /// Is memory low: less than [`LOW_MEMORY_SHARE`] of the total available (the container's,
    /// where a cgroup limits it)?
    pub fn is_low(&self) -> bool {
        matches!((self.available, self.total), (Some(available), Some(total))
            if (available as f64) < total as f64 * LOW_MEMORY_SHARE)
    }

    /// Reads it now.
    pub fn now() -> Self {
        let machine = meminfo();
        let (available, total) = match cgroup(&read_file) {
            Some(cgroup) if machine.total.is_none_or(|total| cgroup.limit < total) => {
                let available = cgroup.limit.saturating_sub(cgroup.working_set());
                (Some(available), Some(cgroup.limit))
            }
            _ => (machine.available, machine.total),
        };
        // statm's second field is resident pages; pages are 4 KiB on the machines this runs on.
        let host_rss = read_file(Path::new("/proc/self/statm"))
            .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| pages * 4096);
        Self {
            host_rss,
            available,
            total,
        }
    }
}

/// The memory this process may use: its cgroup's limit if that is below the machine's memory, else
/// the machine's; 4 GiB when neither can be read (a conservative guess).
pub fn total_memory_bytes() -> u64 {
    let machine = meminfo().total;
    let limit = cgroup(&read_file).map(|cgroup| cgroup.limit);
    match (machine, limit) {
        (Some(machine), Some(limit)) => machine.min(limit),
        (machine, limit) => machine.or(limit).unwrap_or(4 << 30),
    }
}

#[derive(Debug, Default)]
struct Meminfo {
    available: Option<u64>,
    total: Option<u64>,
}

fn meminfo() -> Meminfo {
    let text = read_file(Path::new("/proc/meminfo")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Meminfo {
        available: field("MemAvailable:"),
        total: field("MemTotal:"),
    }
}

/// A cgroup's memory limit and use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cgroup {
    limit: u64,
    usage: u64,
    inactive_file: u64,
}

impl Cgroup {
    /// What the cgroup uses that the kernel cannot simply drop.
    fn working_set(&self) -> u64 {
        self.usage.saturating_sub(self.inactive_file)
    }
}

/// This process's cgroup memory limit (the smallest on the way up) and use, if a cgroup limits it;
/// `read` reads a file (the real one, or a test's).
fn cgroup(read: &dyn Fn(&Path) -> Option<String>) -> Option<Cgroup> {
    let membership = read(Path::new("/proc/self/cgroup"))?;
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            if let Some(found) = v2(read, path) {
                return Some(found);
            }
        } else if controllers
            .split(',')
            .any(|controller| controller == "memory")
        {
            return v1(read, path);
        }
    }
    None
}

/// cgroup v2 at `/sys/fs/cgroup`.
fn v2(read: &dyn Fn(&Path) -> Option<String>, path: &str) -> Option<Cgroup> {
    let root = Path::new("/sys/fs/cgroup");
    let own = own_dir(read, root, path, "memory.max")?;
    let limit = ancestors(root, &own)
        .filter_map(|dir| {
            let text = read(&dir.join("memory.max"))?;
            text.trim().parse::<u64>().ok()
        })
        .min()?;
    Some(Cgroup {
        limit,
        usage: number(read, &own.join("memory.current")).unwrap_or(0),
        inactive_file: stat(read, &own.join("memory.stat"), "inactive_file").unwrap_or(0),
    })
}

/// cgroup v1 at `/sys/fs/cgroup/memory`.
fn v1(read: &dyn Fn(&Path) -> Option<String>, path: &str) -> Option<Cgroup> {
    let root = Path::new("/sys/fs/cgroup/memory");
    let own = own_dir(read, root, path, "memory.limit_in_bytes")?;
    let limit = ancestors(root, &own)
        .filter_map(|dir| number(read, &dir.join("memory.limit_in_bytes")))
        .filter(|limit| *limit < V1_UNLIMITED)
        .min()?;
    Some(Cgroup {
        limit,
        usage: number(read, &own.join("memory.usage_in_bytes")).unwrap_or(0),
        inactive_file: stat(read, &own.join("memory.stat"), "total_inactive_file").unwrap_or(0),
    })
}

/// The cgroup's directory: `root/path` where it exists, else `root` itself (a cgroup namespace
/// mounts the container's own cgroup there, while `/proc/self/cgroup` may still show the host's
/// path).
fn own_dir(
    read: &dyn Fn(&Path) -> Option<String>,
    root: &Path,
    path: &str,
    probe: &str,
) -> Option<PathBuf> {
    let nested = root.join(path.trim_start_matches('/'));
    if read(&nested.join(probe)).is_some() {
        Some(nested)
    } else if read(&root.join(probe)).is_some() {
        Some(root.to_owned())
    } else {
        None
    }
}

/// `dir` and each of its parents down to `root`, inclusive.
fn ancestors<'a>(root: &'a Path, dir: &'a Path) -> impl Iterator<Item = &'a Path> {
    dir.ancestors()
        .take_while(move |ancestor| ancestor.starts_with(root))
}

fn number(read: &dyn Fn(&Path) -> Option<String>, file: &Path) -> Option<u64> {
    read(file)?.trim().parse().ok()
}

/// A field of a `memory.stat` file.
fn stat(read: &dyn Fn(&Path) -> Option<String>, file: &Path, name: &str) -> Option<u64> {
    read(file)?.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

fn read_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::{Cgroup, cgroup};

    fn files(entries: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<String, String> = entries
            .iter()
            .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
            .collect();
        move |path: &Path| map.get(path.to_str()?).cloned()
    }

    #[test]
    fn a_v2_limit_is_the_smallest_on_the_way_up_without_reclaimable_cache() {
        let read = files(&[
            ("/proc/self/cgroup", "0::/kubepods/pod1/app\n"),
            ("/sys/fs/cgroup/kubepods/memory.max", "8589934592\n"),
            ("/sys/fs/cgroup/kubepods/pod1/memory.max", "4294967296\n"),
            ("/sys/fs/cgroup/kubepods/pod1/app/memory.max", "max\n"),
            (
                "/sys/fs/cgroup/kubepods/pod1/app/memory.current",
                "1073741824\n",
            ),
            (
                "/sys/fs/cgroup/kubepods/pod1/app/memory.stat",
                "anon 600000000\ninactive_file 73741824\nactive_file 1\n",
            ),
        ]);
        let found = cgroup(&read).expect("limited");
        assert_eq!(
            found,
            Cgroup {
                limit: 4 << 30,
                usage: 1 << 30,
                inactive_file: 73_741_824
            }
        );
        assert_eq!(found.working_set(), 1_000_000_000);
    }

    #[test]
    fn a_v2_namespace_reads_its_own_cgroup_at_the_mount() {
        let read = files(&[
            ("/proc/self/cgroup", "0::/\n"),
            ("/sys/fs/cgroup/memory.max", "2147483648\n"),
            ("/sys/fs/cgroup/memory.current", "1000\n"),
        ]);
        assert_eq!(cgroup(&read).map(|found| found.limit), Some(2 << 30));
    }

    #[test]
    fn v1_limits_count_and_the_unlimited_value_does_not() {
        let limited = files(&[
            (
                "/proc/self/cgroup",
                "4:memory:/docker/abc\n3:cpuset:/\n0::/\n",
            ),
            (
                "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                "3221225472\n",
            ),
            (
                "/sys/fs/cgroup/memory/docker/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes",
                "5000\n",
            ),
        ]);
        assert_eq!(cgroup(&limited).map(|found| found.limit), Some(3 << 30));
        let unlimited = files(&[
            ("/proc/self/cgroup", "4:memory:/process_api/x\n"),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        assert_eq!(cgroup(&unlimited), None);
        assert_eq!(cgroup(&files(&[])), None, "no cgroup file: no limit");
    }
}
