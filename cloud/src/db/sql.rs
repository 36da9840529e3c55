//! Building the multi-row statements every write uses, and the storage
//! names of the contract's enums.

use edge_cloud_link::contract::{Priority, Quality};

use super::backend::Backend;

/// Row counts of multi-row statements, largest first. Statements, not rows,
/// are the cost in sqlx's SQLite driver, so rows are batched; a few fixed
/// shapes (rather than one per batch size) let the drivers reuse prepared
/// statements. Every shape stays under both backends' bind limits.
pub(super) const STATEMENT_ROWS: [usize; 8] = [512, 128, 64, 32, 16, 8, 4, 1];

/// Most columns any multi-row statement binds per row (a version row).
pub(super) const MAX_ROW_COLUMNS: usize = 21;

// SQLite's bind limit is 32,766; PostgreSQL's 65,535.
const _: () = assert!(STATEMENT_ROWS[0] * MAX_ROW_COLUMNS <= 32_766);

/// Splits `rows` into consecutive chunks whose lengths are in [`STATEMENT_ROWS`].
pub(super) fn shaped_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = STATEMENT_ROWS
            .into_iter()
            .find(|size| *size <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// Appends `rows` groups of `columns` placeholders: `(?, ?), (?, ?)`.
pub(super) fn push_placeholders<DB: Backend>(
    sql: &mut String,
    rows: usize,
    columns: usize,
    literal_tail: &str,
) {
    let mut n = 1;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            DB::placeholder(sql, n);
            n += 1;
        }
        sql.push_str(literal_tail);
        sql.push(')');
    }
}

/// Appends a placeholder list `?, ?, ?` of `count` parameters numbered from
/// `*next`, and moves `*next` past them.
pub(super) fn push_list<DB: Backend>(sql: &mut String, count: usize, next: &mut usize) {
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        push_param::<DB>(sql, next);
    }
}

/// Appends one placeholder numbered `*next`, and moves `*next` on.
pub(super) fn push_param<DB: Backend>(sql: &mut String, next: &mut usize) {
    DB::placeholder(sql, *next);
    *next += 1;
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
    fn placeholders_number_from_one() {
        let mut sql = String::new();
        push_placeholders::<sqlx::Postgres>(&mut sql, 2, 2, ", 'held'");
        assert_eq!(sql, "($1, $2, 'held'), ($3, $4, 'held')");
        let mut sql = String::new();
        let mut next = 3;
        push_list::<sqlx::Postgres>(&mut sql, 2, &mut next);
        assert_eq!((sql.as_str(), next), ("$3, $4", 5));
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
