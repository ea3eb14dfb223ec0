//! Placement: which shard a job runs on, chosen when it leaves the queue with a run slot. See the
//! module docs of `shard` for the order; [`choose`] is that order as a pure function, tested without a
//! browser.

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

/// What placement weighs of one shard.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    /// Its browser is connected.
    pub up: bool,
    /// Fewer jobs run there than its share of the limit.
    pub room: bool,
    /// It has an idle page of the job's isolation key.
    pub warm: bool,
    pub load_per_cpu: f64,
}

/// The shard a job goes to (an index into `candidates`, which is not empty), and why: see the
/// module's documentation.
pub(super) fn choose(candidates: &[Candidate], home: Option<usize>) -> (usize, Placement) {
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
pub(super) fn hash_shard(key: &str, shards: usize) -> usize {
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
