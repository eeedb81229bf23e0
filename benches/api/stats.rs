//! Latency samples and their summaries (percentiles by nearest rank, rates); pure arithmetic.

use std::time::Duration;

/// A summary of one measured series.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Summarises samples given in milliseconds (they may be negative, see the watch benchmark).
pub fn summarize(samples: &[f64]) -> Summary {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    Summary {
        count: sorted.len(),
        p50_ms: percentile(&sorted, 50.0),
        p99_ms: percentile(&sorted, 99.0),
        max_ms: sorted.last().copied().unwrap_or(0.0),
    }
}

/// The nearest-rank percentile of sorted samples: the smallest value with at least `p`% of the
/// samples at or below it. 0 for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().unwrap_or(0.0)
}

/// The median of unsorted samples (0 for none).
pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

/// A duration in milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Operations per second; 0 when no time passed.
pub fn rate(ops: usize, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { ops as f64 / secs } else { 0.0 }
}

/// Self-checks run at the start of every benchmark run (a `harness = false` bench has no test
/// runner), so a broken percentile cannot silently skew the published figures.
pub fn self_check() -> anyhow::Result<()> {
    let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
    let cases: [(&[f64], f64, f64); 5] = [
        (&[], 50.0, 0.0),
        (&[7.0], 99.0, 7.0),
        (&[1.0, 2.0], 50.0, 1.0),
        (&hundred, 50.0, 50.0),
        (&hundred, 99.0, 99.0),
    ];
    for (samples, p, want) in cases {
        let got = percentile(samples, p);
        anyhow::ensure!(
            got == want,
            "percentile p{p} of {} samples is {got}, want {want}",
            samples.len()
        );
    }
    anyhow::ensure!(
        median(&[3.0, -1.0, 2.0]) == 2.0,
        "median of unsorted samples"
    );
    anyhow::ensure!(rate(10, Duration::from_secs(2)) == 5.0, "rate");
    anyhow::ensure!(rate(10, Duration::ZERO) == 0.0, "rate without elapsed time");
    Ok(())
}
