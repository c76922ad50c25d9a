//! Order statistics, and nothing else: the median of a set of runs, the
//! distribution-free confidence interval of that median, the ratio of two
//! medians with its interval, and whether such a ratio can be told from 1.
//! Pure arithmetic on `f64` slices; it imports nothing from this crate, so
//! every other module may use it without a cycle.
//!
//! The interval of a median is the distribution-free one, from order
//! statistics: with `n` runs, `[x(k), x(n-k+1)]` covers the true median
//! with probability `1 - 2·P(Binomial(n, 1/2) < k)`, whatever the runs'
//! distribution. A bootstrap would give narrower intervals at the few
//! repetitions a bench makes, but ones that cover less than they claim
//! (at 3 runs both are the lowest to the highest run anyway). Below 6 runs
//! no interval reaches 95%: the widest, from the lowest to the highest run,
//! is given, and `ci_level` says what it covers (75% at 3 runs). The
//! ratio's interval is the quotient of its two medians' intervals, so with
//! 3 runs a ratio is a result only when the two sets of runs do not overlap.

/// A ratio whose interval contains 1, or that is closer to 1 than this, is
/// "within noise" (criterion's rule, with a threshold for a noisy VM: on
/// this project's 2-core VM identical runs differ by 5–14%, and the
/// interval captures most of that; the threshold keeps a systematic
/// difference of a percent or two from being called a result).
pub const NOISE_THRESHOLD: f64 = 0.03;

/// The confidence asked of every interval.
pub const CONFIDENCE: f64 = 0.95;
/// The median; the mean of the middle two for an even count; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The distribution-free 95% confidence interval of the median of
/// `values`, and the confidence it really has (below 95% when there are too
/// few values for any interval to reach it). `None` with fewer than two.
pub fn median_ci(values: &[f64]) -> Option<[f64; 2]> {
    median_interval(values).map(|(ci, _)| ci)
}

/// The interval and its confidence level; see [`median_ci`].
pub fn median_interval(values: &[f64]) -> Option<([f64; 2], f64)> {
    let mut v = finite(values);
    let n = v.len();
    if n < 2 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    // The largest k (narrowest interval) whose coverage still reaches the
    // confidence; k = 1, the whole range, when none does.
    let mut k = 1;
    while k < n.div_ceil(2) && order_coverage(n, k + 1) >= CONFIDENCE {
        k += 1;
    }
    Some(([v[k - 1], v[n - k]], order_coverage(n, k)))
}

/// Confidence of `[x(k), x(n-k+1)]` for the median: `1 - 2·P(Bin(n,½) < k)`.
pub fn order_coverage(n: usize, k: usize) -> f64 {
    let mut below = 0.0;
    let mut c = 1.0; // C(n, 0)
    for i in 0..k {
        if i > 0 {
            c = c * (n - i + 1) as f64 / i as f64;
        }
        below += c;
    }
    (1.0 - 2.0 * below / 2f64.powi(n as i32)).max(0.0)
}

/// `median(a) / median(b)` and its interval: the lowest and the highest
/// quotient of the two medians' intervals. The interval is `None` unless
/// both sides have at least two values.
pub fn ratio_with_ci(a: &[f64], b: &[f64]) -> Option<(f64, Option<[f64; 2]>)> {
    let ratio = median(a)? / median(b).filter(|m| *m > 0.0)?;
    let ci = median_ci(a)
        .zip(median_ci(b))
        .filter(|(_, [lo, _])| *lo > 0.0)
        .map(|([alo, ahi], [blo, bhi])| [alo / bhi, ahi / blo]);
    Some((ratio, ci))
}

/// True when a ratio cannot be told from 1: its interval contains 1, or it
/// is within [`NOISE_THRESHOLD`] of 1. Without an interval (one
/// repetition) nothing can be told from noise either.
pub fn within_noise(ratio: f64, ci: Option<[f64; 2]>) -> bool {
    match ci {
        None => true,
        Some([lo, hi]) => (lo <= 1.0 && hi >= 1.0) || (ratio - 1.0).abs() < NOISE_THRESHOLD,
    }
}

fn finite(values: &[f64]) -> Vec<f64> {
    values.iter().copied().filter(|x| x.is_finite()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_intervals_are_order_statistics_with_their_true_confidence() {
        assert!((order_coverage(3, 1) - 0.75).abs() < 1e-12);
        assert!((order_coverage(5, 1) - 0.9375).abs() < 1e-12);
        assert!((order_coverage(6, 1) - 0.96875).abs() < 1e-12);
        let (ci, level) = median_interval(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((ci, level), ([1.0, 3.0], 0.75));
        // Nine runs: [x(2), x(8)] already covers 96%.
        let nine: Vec<f64> = (1..=9).map(f64::from).collect();
        let (ci, level) = median_interval(&nine).unwrap();
        assert_eq!(ci, [2.0, 8.0]);
        assert!(level >= 0.95, "{level}");
        assert_eq!(median_interval(&[1.0]), None);
    }

    #[test]
    fn a_ratio_is_a_result_only_beyond_the_noise() {
        // Overlapping runs: the interval contains 1.
        let (x, ci) = ratio_with_ci(&[100.0, 104.0, 98.0], &[101.0, 99.0, 103.0]).unwrap();
        assert!(within_noise(x, ci), "{x} {ci:?}");
        // Apart: a result.
        let (x, ci) = ratio_with_ci(&[120.0, 122.0, 125.0], &[100.0, 101.0, 99.0]).unwrap();
        assert!(!within_noise(x, ci), "{x} {ci:?}");
        assert!(ci.unwrap()[0] > 1.0);
        // Apart but by less than the threshold: within noise.
        let (x, ci) = ratio_with_ci(&[101.0, 101.5, 102.0], &[100.0, 100.2, 100.4]).unwrap();
        assert!(within_noise(x, ci), "{x} {ci:?}");
        // One repetition: nothing can be told.
        let (x, ci) = ratio_with_ci(&[200.0], &[100.0]).unwrap();
        assert_eq!((x, ci), (2.0, None));
        assert!(within_noise(x, ci));
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }
}
