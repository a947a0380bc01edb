//! Order statistics and ratios of timed samples.

use std::time::Duration;

use crate::util;

/// Order statistics of a set of samples.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stats {
    pub(super) n: usize,
    pub(super) min: Duration,
    pub(super) median: Duration,
    pub(super) mean: Duration,
    pub(super) p90: Duration,
    pub(super) max: Duration,
}

impl Stats {
    pub(super) fn of(samples: &[Duration]) -> Stats {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        s.sort();
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        };
        let mean = s.iter().sum::<Duration>() / n as u32;
        let p90 = s[((n * 9).div_ceil(10)).saturating_sub(1).min(n - 1)];
        Stats {
            n,
            min: s[0],
            median,
            mean,
            p90,
            max: s[n - 1],
        }
    }

    pub(super) fn line(&self) -> String {
        format!(
            "n={} min {} · median {} · mean {} · p90 {} · max {}",
            self.n,
            util::human(self.min),
            util::human(self.median),
            util::human(self.mean),
            util::human(self.p90),
            util::human(self.max)
        )
    }
}

pub(super) fn ratio(ours: Duration, raw: Duration) -> f64 {
    ours.as_secs_f64() / raw.as_secs_f64()
}

pub(super) fn median_f64(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A 95 % confidence interval of the median of `values`, by bootstrap:
/// the median of 2000 resamples (drawn with replacement, with a fixed
/// seed, so the same samples give the same interval), their 2.5th and
/// 97.5th percentiles. Whether a ratio can tell 3 % apart shows in its
/// width.
pub(super) fn median_ci(values: &[f64]) -> (f64, f64) {
    const RESAMPLES: usize = 2000;
    if values.len() < 2 {
        let m = median_f64(values);
        return (m, m);
    }
    // xorshift64*: deterministic, and plenty for resampling.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    };
    let mut medians = Vec::with_capacity(RESAMPLES);
    let mut sample = vec![0.0; values.len()];
    for _ in 0..RESAMPLES {
        for x in sample.iter_mut() {
            *x = values[next(values.len())];
        }
        medians.push(median_f64(&sample));
    }
    medians.sort_by(f64::total_cmp);
    (
        medians[RESAMPLES / 40],
        medians[RESAMPLES - 1 - RESAMPLES / 40],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn order_statistics() {
        let s = Stats::of(&ms(&[5, 1, 3, 2, 4]));
        assert_eq!(
            (s.min, s.median, s.max),
            (
                Duration::from_millis(1),
                Duration::from_millis(3),
                Duration::from_millis(5)
            )
        );
        assert_eq!(s.mean, Duration::from_millis(3));
        let s = Stats::of(&ms(&[1, 2, 3, 4]));
        assert_eq!(s.median, Duration::from_micros(2500));
        let s = Stats::of(&ms(&(1..=10).collect::<Vec<_>>()));
        assert_eq!(s.p90, Duration::from_millis(9));
    }

    #[test]
    fn median_intervals_narrow_with_samples() {
        let noisy = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|i| 1.0 + ((i * 7919) % 101) as f64 / 1000.0)
                .collect()
        };
        let (lo, hi) = median_ci(&noisy(20));
        let m = median_f64(&noisy(20));
        assert!(lo <= m && m <= hi, "{lo} {m} {hi}");
        let (lo2, hi2) = median_ci(&noisy(2000));
        assert!(hi2 - lo2 < hi - lo, "{lo2}..{hi2} vs {lo}..{hi}");
        assert_eq!(median_ci(&[1.5]), (1.5, 1.5));
        assert_eq!(
            median_ci(&noisy(50)),
            median_ci(&noisy(50)),
            "deterministic"
        );
    }
}
