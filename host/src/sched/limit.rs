//! [`ConcurrencyLimit`]: how many renders may run at once, adapted to what the machine's CPUs can
//! take.
//!
//! On 2 cores, Chromium renders a small local page at 11/s one at a time, 23/s from 4 at once, and
//! no faster at 8 or 16, where each render only waits longer (`docs/benchmarks.md`); at 4 the CPUs
//! read 85-95% busy, not 100%, because part of each render is serial inside Chromium. So the CPUs'
//! load cannot find that point by itself, and the limit starts and stays at it, two per core, for
//! CPU-bound work. What the load does tell is when renders are waiting on something else: a page
//! waiting on a slow site uses no CPU at all. Once a second, [`ConcurrencyLimit::adapt`] looks at
//! how busy the CPUs were: below [`GROW_BELOW`] while jobs waited for a slot, one more render may
//! run; above [`SHRINK_ABOVE`], one fewer, down to the floor. Network-bound work grows the limit up
//! to `--max-concurrent-renders` or until the CPUs are busy; CPU-bound work stays at the floor.

use std::time::Duration;

/// Busy fraction of the CPUs below which a limit that held jobs back grows by one: the renders
/// under way are waiting on something other than the CPUs.
pub const GROW_BELOW: f64 = 0.60;
/// Busy fraction above which the limit shrinks by one (not below the floor): more renders would
/// only queue inside Chromium.
pub const SHRINK_ABOVE: f64 = 0.85;

/// The limit and its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConcurrencyLimit {
    pub current: usize,
    pub min: usize,
    pub max: usize,
}

impl ConcurrencyLimit {
    /// Starts at `start`, within `min..=max`.
    pub fn new(start: usize, min: usize, max: usize) -> Self {
        let min = min.clamp(1, max);
        Self {
            current: start.clamp(min, max),
            min,
            max,
        }
    }

    /// One step after a second in which the CPUs were `busy` (0 to 1), and jobs waited for a slot
    /// at the limit or not. Returns the new limit.
    pub fn adapt(&mut self, busy: f64, held_back: bool) -> usize {
        if busy > SHRINK_ABOVE && self.current > self.min {
            self.current -= 1;
        } else if busy < GROW_BELOW && held_back && self.current < self.max {
            self.current += 1;
        }
        self.current
    }
}

/// CPU time of the machine, or of some of its CPUs, from `/proc/stat`.
#[derive(Debug)]
pub struct CpuMeter {
    /// The CPUs to count; `None` for all of them.
    cpus: Option<Vec<usize>>,
    last: Option<CpuTimes>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuMeter {
    pub fn new(cpus: Option<Vec<usize>>) -> Self {
        Self { cpus, last: None }
    }

    /// The busy fraction since the previous call (0 to 1); `None` on the first call or when
    /// `/proc/stat` cannot be read.
    pub fn busy(&mut self) -> Option<f64> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let now = parse_times(&text, self.cpus.as_deref())?;
        let last = self.last.replace(now)?;
        let total = now.total.saturating_sub(last.total);
        (total > 0).then(|| now.busy.saturating_sub(last.busy) as f64 / total as f64)
    }
}

/// Busy and total ticks summed over the `cpuN` lines of `cpus`, or the `cpu` line for all.
fn parse_times(stat: &str, cpus: Option<&[usize]>) -> Option<CpuTimes> {
    let mut sum = CpuTimes { busy: 0, total: 0 };
    let mut found = false;
    for line in stat.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(name) = fields.next() else { continue };
        let wanted = match (name.strip_prefix("cpu"), cpus) {
            (Some(""), None) => true,
            (Some(number), Some(cpus)) if !number.is_empty() => number
                .parse::<usize>()
                .is_ok_and(|number| cpus.contains(&number)),
            _ => false,
        };
        if !wanted {
            continue;
        }
        // user nice system idle iowait irq softirq steal (guest time is inside user already).
        let ticks: Vec<u64> = fields.take(8).filter_map(|f| f.parse().ok()).collect();
        if ticks.len() < 8 {
            continue;
        }
        let idle = ticks[3] + ticks[4];
        let total: u64 = ticks.iter().sum();
        sum.busy += total - idle;
        sum.total += total;
        found = true;
    }
    found.then_some(sum)
}

/// How often the limit adapts.
pub const ADAPT_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_grows_while_cpus_idle_and_jobs_wait_and_shrinks_when_they_are_saturated() {
        let mut limit = ConcurrencyLimit::new(4, 2, 6);
        assert_eq!(
            limit.adapt(0.5, false),
            4,
            "nobody waited: no reason to grow"
        );
        assert_eq!(limit.adapt(0.5, true), 5);
        assert_eq!(limit.adapt(0.5, true), 6);
        assert_eq!(limit.adapt(0.5, true), 6, "capped");
        assert_eq!(limit.adapt(0.75, true), 6, "busy enough: hold");
        for _ in 0..10 {
            limit.adapt(1.0, true);
        }
        assert_eq!(limit.current, 2, "floored");
        assert_eq!(ConcurrencyLimit::new(9, 0, 1).current, 1);
    }

    #[test]
    fn cpu_times_come_from_proc_stat() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\n\
                    cpu0 60 0 20 400 20 0 0 0 0 0\n\
                    cpu1 40 0 30 400 30 0 0 0 0 0\n\
                    intr 12345\n";
        assert_eq!(
            parse_times(stat, None),
            Some(CpuTimes {
                busy: 150,
                total: 1000
            })
        );
        assert_eq!(
            parse_times(stat, Some(&[1])),
            Some(CpuTimes {
                busy: 70,
                total: 500
            })
        );
        assert_eq!(parse_times(stat, Some(&[7])), None);
        let mut meter = CpuMeter::new(None);
        assert_eq!(
            meter.busy(),
            None,
            "the first reading has nothing to compare with"
        );
        std::thread::sleep(Duration::from_millis(100));
        let busy = meter.busy().expect("a second reading");
        assert!((0.0..=1.0).contains(&busy), "{busy}");
    }
}
