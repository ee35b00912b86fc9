//! Summary statistics of benchmark samples, as printed on `@janus bench` lines.
//!
//! Percentiles use the nearest-rank method: the p-th percentile of n sorted samples is the
//! sample at 1-based rank `ceil(p / 100 * n)`. Every reported value is a sample that was
//! actually measured (no interpolation), which keeps the numbers honest for the small,
//! heavy-tailed sample sets that timing produces. It follows that the median of an even
//! count is the lower of the two middle samples, and the p99 of fewer than 100 samples is
//! the maximum.

/// Summary of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub min: u64,
    pub median: u64,
    pub p99: u64,
    pub max: u64,
}

/// Summarizes `samples`, sorting them in place. `None` if there are none.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    samples.sort_unstable();
    Some(Summary {
        n: samples.len(),
        min: *samples.first()?,
        median: nearest_rank(samples, 50)?,
        p99: nearest_rank(samples, 99)?,
        max: *samples.last()?,
    })
}

/// The `percent`-th percentile of the sorted, non-empty `sorted` by nearest rank.
fn nearest_rank(sorted: &[u64], percent: u128) -> Option<u64> {
    // u128 so `percent * n` cannot overflow for any slice length.
    let rank = (percent * sorted.len() as u128).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank).ok()? - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(summarize(&mut []), None);
    }

    #[test]
    fn one_sample_is_every_statistic() {
        assert_eq!(
            summarize(&mut [7]),
            Some(Summary {
                n: 1,
                min: 7,
                median: 7,
                p99: 7,
                max: 7
            })
        );
    }

    #[test]
    fn two_samples_median_is_the_lower_one() {
        let s = summarize(&mut [9, 3]).unwrap();
        assert_eq!((s.n, s.min, s.median, s.p99, s.max), (2, 3, 3, 9, 9));
    }

    #[test]
    fn hundred_samples_p99_is_the_99th_value() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&mut samples).unwrap();
        assert_eq!((s.n, s.min, s.median, s.p99, s.max), (100, 1, 50, 99, 100));
        assert!(samples.is_sorted());
    }

    #[test]
    fn thousand_samples() {
        // 0, 10, 20, ... shuffled by a fixed stride coprime to 1000.
        let mut samples: Vec<u64> = (0..1000u64).map(|i| (i * 617 % 1000) * 10).collect();
        let s = summarize(&mut samples).unwrap();
        // ranks 500 and 990 (1-based) hold 4990 and 9890.
        assert_eq!(
            (s.n, s.min, s.median, s.p99, s.max),
            (1000, 0, 4990, 9890, 9990)
        );
    }

    #[test]
    fn all_equal() {
        let s = summarize(&mut [5; 37]).unwrap();
        assert_eq!((s.n, s.min, s.median, s.p99, s.max), (37, 5, 5, 5, 5));
    }

    #[test]
    fn unsorted_input_with_outliers() {
        let s = summarize(&mut [100, 1, 1_000_000, 50, 2, 75, 3]).unwrap();
        assert_eq!(
            (s.min, s.median, s.p99, s.max),
            (1, 50, 1_000_000, 1_000_000)
        );
    }

    #[test]
    fn u64_max_values_do_not_overflow() {
        let s = summarize(&mut [u64::MAX, 0, u64::MAX - 1, u64::MAX]).unwrap();
        assert_eq!(
            (s.min, s.median, s.p99, s.max),
            (0, u64::MAX - 1, u64::MAX, u64::MAX)
        );
    }

    #[test]
    fn p99_of_fewer_than_100_samples_is_the_max() {
        for n in 1..100u64 {
            let mut samples: Vec<u64> = (0..n).collect();
            assert_eq!(summarize(&mut samples).unwrap().p99, n - 1);
        }
        let mut samples: Vec<u64> = (0..101).collect();
        // rank ceil(99.99) = 100 of 101.
        assert_eq!(summarize(&mut samples).unwrap().p99, 99);
    }
}
