//! CPU usage rates (`usageNanoCores`) from cumulative counters sampled over time: the rate is taken
//! between the last two samples of each key, as cAdvisor does.

use std::collections::HashMap;
use std::time::Instant;

/// Remembers the last two cumulative CPU samples of each cgroup (keyed by its path).
#[derive(Debug, Default)]
pub struct CpuSampler {
    samples: HashMap<String, [Option<(Instant, u64)>; 2]>,
}

impl CpuSampler {
    pub fn new() -> CpuSampler {
        CpuSampler::default()
    }

    /// Records cumulative usage `usage_ns` of `key` at `at`.
    pub fn record(&mut self, key: &str, at: Instant, usage_ns: u64) {
        let slot = self.samples.entry(key.to_string()).or_default();
        slot[0] = slot[1];
        slot[1] = Some((at, usage_ns));
    }

    /// Nanocores used by `key` between its last two samples; `None` until two exist (or when
    /// the counter went backwards: the cgroup was recreated).
    pub fn rate(&self, key: &str) -> Option<u64> {
        let [Some((t0, u0)), Some((t1, u1))] = self.samples.get(key)? else {
            return None;
        };
        let elapsed = t1.checked_duration_since(*t0)?.as_nanos();
        if elapsed == 0 || u1 < u0 {
            return None;
        }
        let used = u128::from(u1 - u0);
        u64::try_from(used.saturating_mul(1_000_000_000) / elapsed).ok()
    }

    /// Forgets every key not in `live` (pods that went away).
    pub fn retain(&mut self, live: &dyn Fn(&str) -> bool) {
        self.samples.retain(|k, _| live(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_is_taken_between_the_last_two_samples() {
        let t = Instant::now();
        let s10 = t + Duration::from_secs(10);
        let s20 = t + Duration::from_secs(20);
        type Samples<'a> = &'a [(Instant, u64)];
        let cases: &[(Samples<'_>, Option<u64>)] = &[
            (&[], None),
            (&[(t, 0)], None),
            // 5 s of CPU in 10 s = half a core.
            (&[(t, 0), (s10, 5_000_000_000)], Some(500_000_000)),
            // Only the last two count.
            (
                &[(t, 0), (s10, 1), (s20, 1 + 20_000_000_000)],
                Some(2_000_000_000),
            ),
            // A counter reset gives no rate rather than a huge one.
            (&[(t, 100), (s10, 5)], None),
            (&[(t, 1), (t, 2)], None),
        ];
        for (samples, want) in cases {
            let mut s = CpuSampler::new();
            for (at, u) in *samples {
                s.record("k", *at, *u);
            }
            assert_eq!(s.rate("k"), *want, "{samples:?}");
        }
    }

    #[test]
    fn retain_forgets_dead_keys() {
        let mut s = CpuSampler::new();
        let t = Instant::now();
        s.record("a", t, 1);
        s.record("b", t, 1);
        s.retain(&|k| k == "a");
        assert!(s.samples.contains_key("a") && !s.samples.contains_key("b"));
    }
}
