//! Runs of consecutive integers, `(first, last)` inclusive: how the site's
//! outbox names leased and acknowledged versions and seqs, and how the
//! cloud books the seqs it holds. A batch drained in order is one or two
//! runs, which one `BETWEEN` each covers.

/// Ids (in any order, repeats allowed) as consecutive runs, ascending.
pub fn id_runs(ids: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for id in sorted {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs
}

/// Runs sorted and merged where they overlap or touch.
pub fn merge_runs(mut runs: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    runs.retain(|(first, last)| first <= last);
    runs.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(runs.len());
    for (first, last) in runs {
        match merged.last_mut() {
            Some((_, end)) if first <= end.saturating_add(1) => *end = (*end).max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// The runs of `first..=last` that none of `merged` (sorted, merged runs)
/// covers, in ascending order.
pub fn gaps(first: i64, last: i64, merged: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut gaps = Vec::new();
    let mut next = first;
    for &(a, b) in merged {
        if b < next {
            continue;
        }
        if a > last {
            break;
        }
        if a > next {
            gaps.push((next, a - 1));
        }
        if b >= last {
            return gaps;
        }
        next = b + 1;
    }
    if next <= last {
        gaps.push((next, last));
    }
    gaps
}

#[cfg(test)]
mod tests {
    use super::{gaps, id_runs, merge_runs};

    #[test]
    fn merged_runs_cover_the_same_ids_once() {
        assert_eq!(
            merge_runs(vec![(9, 12), (1, 3), (4, 4), (2, 5), (20, 19), (13, 13)]),
            vec![(1, 5), (9, 13)]
        );
        assert_eq!(merge_runs(Vec::new()), vec![]);
    }

    #[test]
    fn gaps_are_what_the_runs_leave_out() {
        assert_eq!(gaps(1, 10, &[]), vec![(1, 10)]);
        assert_eq!(
            gaps(1, 10, &[(3, 4), (7, 7)]),
            vec![(1, 2), (5, 6), (8, 10)]
        );
        assert_eq!(gaps(5, 10, &[(1, 6), (9, 20)]), vec![(7, 8)]);
        assert_eq!(gaps(5, 10, &[(1, 20)]), vec![]);
        assert_eq!(gaps(5, 4, &[]), vec![]);
        assert_eq!(gaps(1, i64::MAX, &[(1, i64::MAX)]), vec![]);
    }

    #[test]
    fn runs_cover_exactly_the_ids() {
        assert_eq!(id_runs(&[]), vec![]);
        assert_eq!(
            id_runs(&[5, 3, 4, 4, 9, 10, 1]),
            vec![(1, 1), (3, 5), (9, 10)]
        );
    }
}
