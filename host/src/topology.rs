//! The machine's NUMA nodes: which CPUs each has, and whether it has memory of its own.
//!
//! Read from `/sys/devices/system/node` (`nodeN/cpulist`, and `has_memory` for the nodes with
//! memory), limited to the CPUs this process may run on; one node with every allowed CPU where
//! sysfs has no nodes. `--numa-nodes "0;1"` gives the nodes instead (CPU lists separated by `;`),
//! so that a one-node machine can run and test several shards.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

/// One NUMA node: a shard runs on its CPUs and prefers its memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The node's number: the kernel's for a detected topology, the position in the list for a
    /// configured one.
    pub id: usize,
    /// The CPUs, ascending.
    pub cpus: Vec<usize>,
    /// The kernel node whose memory the shard prefers; `None` when there is no such node (a
    /// configured node that the kernel does not have, or a node without memory).
    pub memory_node: Option<usize>,
}

/// Where the topology came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopologySource {
    /// `/sys/devices/system/node`.
    Sysfs,
    /// sysfs had no nodes: one node of every CPU the process may use.
    SingleNode,
    /// `--numa-nodes`.
    Configured,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub source: TopologySource,
    pub nodes: Vec<Node>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("`{0}` is not a CPU list (like `0-3,8`)")]
    NotACpuList(String),
    #[error("node {node} has no CPUs")]
    EmptyNode { node: usize },
    #[error("CPU {cpu} is in more than one node")]
    SharedCpu { cpu: usize },
    #[error("CPU {cpu} is not one this process may run on (allowed: {allowed})")]
    CpuNotAllowed { cpu: usize, allowed: String },
}

const SYSFS_NODES: &str = "/sys/devices/system/node";

impl Topology {
    /// The machine's nodes, as the kernel describes them.
    pub fn detect() -> Self {
        let nodes = read_sysfs(Path::new(SYSFS_NODES), &crate::sys::allowed_cpus());
        if nodes.is_empty() {
            Self::single_node()
        } else {
            Self {
                source: TopologySource::Sysfs,
                nodes,
            }
        }
    }

    /// One node of every CPU this process may use, without a memory preference: one shard, pinned
    /// to nothing it was not already limited to.
    pub fn single_node() -> Self {
        Self {
            source: TopologySource::SingleNode,
            nodes: vec![Node {
                id: 0,
                cpus: crate::sys::allowed_cpus().into_iter().collect(),
                memory_node: None,
            }],
        }
    }

    /// The nodes `spec` gives: CPU lists separated by `;` (`"0;1"`, `"0-3;4-7"`). A node prefers
    /// the memory of the kernel node with its number, if the kernel has that node with memory.
    pub fn configured(spec: &str) -> Result<Self, TopologyError> {
        let allowed = crate::sys::allowed_cpus();
        let with_memory = read_memory_nodes(Path::new(SYSFS_NODES));
        let mut seen = BTreeSet::new();
        let mut nodes = Vec::new();
        for (id, list) in spec.split(';').enumerate() {
            let cpus = parse_cpu_list(list)?;
            if cpus.is_empty() {
                return Err(TopologyError::EmptyNode { node: id });
            }
            for &cpu in &cpus {
                if !allowed.contains(&cpu) {
                    return Err(TopologyError::CpuNotAllowed {
                        cpu,
                        allowed: format_cpu_list(&allowed),
                    });
                }
                if !seen.insert(cpu) {
                    return Err(TopologyError::SharedCpu { cpu });
                }
            }
            nodes.push(Node {
                id,
                cpus: cpus.into_iter().collect(),
                memory_node: with_memory.contains(&id).then_some(id),
            });
        }
        Ok(Self {
            source: TopologySource::Configured,
            nodes,
        })
    }

    pub fn cpus(&self) -> usize {
        self.nodes.iter().map(|node| node.cpus.len()).sum()
    }
}

impl Node {
    /// Pins to this node's CPUs and prefers its memory (when the kernel has the node).
    pub(crate) fn pinning(&self) -> crate::sys::Pinning {
        crate::sys::Pinning::new(&self.cpus, self.memory_node)
    }
}

/// A node's share of `amount` by CPUs, `cpus` of `total_cpus`: rounded up, so that the shares add
/// up to at least `amount`, and at least one.
pub fn share_by_cpus(amount: usize, cpus: usize, total_cpus: usize) -> usize {
    (amount * cpus).div_ceil(total_cpus.max(1)).max(1)
}

/// Nodes under `root` with at least one allowed CPU, each limited to the allowed CPUs.
fn read_sysfs(root: &Path, allowed: &BTreeSet<usize>) -> Vec<Node> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let with_memory = read_memory_nodes(root);
    let mut nodes: Vec<Node> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let id = entry
                .file_name()
                .to_str()?
                .strip_prefix("node")?
                .parse()
                .ok()?;
            let list = std::fs::read_to_string(entry.path().join("cpulist")).ok()?;
            let cpus: Vec<usize> = parse_cpu_list(&list)
                .ok()?
                .intersection(allowed)
                .copied()
                .collect();
            (!cpus.is_empty()).then(|| Node {
                id,
                cpus,
                memory_node: with_memory.contains(&id).then_some(id),
            })
        })
        .collect();
    nodes.sort_by_key(|node| node.id);
    nodes
}

/// The kernel nodes that have memory (`has_memory`); none if it cannot be read.
fn read_memory_nodes(root: &Path) -> BTreeSet<usize> {
    std::fs::read_to_string(root.join("has_memory"))
        .ok()
        .and_then(|list| parse_cpu_list(&list).ok())
        .unwrap_or_default()
}

/// Parses the kernel's list format: `0-3,8,10-11` (empty for an empty string).
pub fn parse_cpu_list(text: &str) -> Result<BTreeSet<usize>, TopologyError> {
    let invalid = || TopologyError::NotACpuList(text.trim().to_owned());
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',').filter(|part| !part.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first, last),
            None => (part, part),
        };
        let first: usize = first.trim().parse().map_err(|_| invalid())?;
        let last: usize = last.trim().parse().map_err(|_| invalid())?;
        // A range wider than any machine's CPU count is a typo, not a topology.
        if last < first || last >= crate::sys::MAX_CPUS {
            return Err(invalid());
        }
        cpus.extend(first..=last);
    }
    Ok(cpus)
}

/// The kernel's list format for `cpus`: ranges joined by commas.
pub fn format_cpu_list<'a>(cpus: impl IntoIterator<Item = &'a usize>) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == cpu => *last = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    ranges
        .iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_format_like_the_kernels() {
        let cpus = parse_cpu_list("0-3,8,10-11\n").expect("a CPU list");
        assert_eq!(
            cpus.iter().copied().collect::<Vec<_>>(),
            [0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(format_cpu_list(&cpus), "0-3,8,10-11");
        assert!(parse_cpu_list("").expect("an empty list").is_empty());
        for bad in ["a", "3-1", "1-", "0-99999", "1;2"] {
            assert_eq!(
                parse_cpu_list(bad),
                Err(TopologyError::NotACpuList(bad.into()))
            );
        }
    }

    #[test]
    fn sysfs_nodes_are_read_and_limited_to_allowed_cpus() {
        let root = tempfile::tempdir().expect("a temporary directory");
        for (node, list) in [("node0", "0-1"), ("node1", "2-3"), ("node2", "4")] {
            std::fs::create_dir(root.path().join(node)).expect("a node directory");
            std::fs::write(root.path().join(node).join("cpulist"), list).expect("cpulist");
        }
        std::fs::write(root.path().join("has_memory"), "0-1\n").expect("has_memory");
        std::fs::create_dir(root.path().join("power")).expect("a non-node directory");
        let allowed: BTreeSet<usize> = [0, 1, 3].into();
        let nodes = read_sysfs(root.path(), &allowed);
        assert_eq!(
            nodes,
            [
                Node {
                    id: 0,
                    cpus: vec![0, 1],
                    memory_node: Some(0)
                },
                Node {
                    id: 1,
                    cpus: vec![3],
                    memory_node: Some(1)
                },
            ]
        );
        assert!(read_sysfs(&root.path().join("absent"), &allowed).is_empty());
    }

    #[test]
    fn a_configured_topology_must_use_allowed_cpus_once_each() {
        let allowed = crate::sys::allowed_cpus();
        let first = *allowed.first().expect("an allowed CPU");
        let topology = Topology::configured(&first.to_string()).expect("a one-CPU node");
        assert_eq!(topology.nodes.len(), 1);
        assert_eq!(topology.nodes[0].cpus, [first]);
        assert_eq!(
            Topology::configured(&format!("{first};{first}")),
            Err(TopologyError::SharedCpu { cpu: first })
        );
        assert_eq!(
            Topology::configured(&format!("{first};")),
            Err(TopologyError::EmptyNode { node: 1 })
        );
        assert!(matches!(
            Topology::configured("1000"),
            Err(TopologyError::CpuNotAllowed { cpu: 1000, .. })
        ));
    }

    #[test]
    fn the_detected_topology_covers_the_allowed_cpus() {
        let topology = Topology::detect();
        assert!(!topology.nodes.is_empty());
        assert_eq!(topology.cpus(), crate::sys::allowed_cpus().len());
    }
}
