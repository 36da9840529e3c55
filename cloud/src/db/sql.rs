//! The cloud's statement shapes, and the storage names of the contract's
//! enums (placeholders: [`edge_sql::statement`]).

use edge_cloud_link::contract::{Priority, Quality};

/// Row counts of multi-row statements, largest first: the cloud's own set
/// of statement shapes (see [`edge_sql::statement::STATEMENT_ROWS`] for
/// why rows come in a few fixed shapes). Every shape stays under both
/// backends' bind limits.
pub(super) const STATEMENT_ROWS: [usize; 8] = [512, 128, 64, 32, 16, 8, 4, 1];

/// Most columns any multi-row statement binds per row (a version row).
pub(super) const MAX_ROW_COLUMNS: usize = 22;

const _: () = assert!(edge_sql::statement::fits_bind_limit(
    &STATEMENT_ROWS,
    MAX_ROW_COLUMNS
));

/// Splits `rows` into consecutive chunks whose lengths are in [`STATEMENT_ROWS`].
pub(super) fn shaped_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    edge_sql::statement::chunks_of_shapes(rows, &STATEMENT_ROWS)
}

/// The storage name of a priority.
pub(super) fn priority_name(priority: Priority) -> &'static str {
    match priority {
        Priority::Normal => "normal",
        Priority::Critical => "critical",
    }
}

/// A stored priority (anything unknown reads as normal).
pub(super) fn parse_priority(name: &str) -> Priority {
    if name == "critical" {
        Priority::Critical
    } else {
        Priority::Normal
    }
}

/// The storage name of a quality (the column's CHECK lists the same).
pub(super) fn quality_name(quality: Quality) -> &'static str {
    match quality {
        Quality::Good => "good",
        Quality::Suspect => "suspect",
        Quality::Bad => "bad",
    }
}

/// A stored quality (the column's CHECK admits nothing else; anything
/// unknown reads as good, the contract's default).
pub(super) fn parse_quality(name: &str) -> Quality {
    match name {
        "suspect" => Quality::Suspect,
        "bad" => Quality::Bad,
        _ => Quality::Good,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_use_the_fixed_shapes() {
        let rows: Vec<u32> = (0..1_000).collect();
        let sizes: Vec<usize> = shaped_chunks(&rows).map(<[u32]>::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 1_000);
        assert_eq!(&sizes[..2], &[512, 128]);
        assert!(sizes.iter().all(|s| STATEMENT_ROWS.contains(s)));
    }

    #[test]
    fn enum_names_round_trip() {
        for quality in [Quality::Good, Quality::Suspect, Quality::Bad] {
            assert_eq!(parse_quality(quality_name(quality)), quality);
        }
        for priority in [Priority::Normal, Priority::Critical] {
            assert_eq!(parse_priority(priority_name(priority)), priority);
        }
    }
}
