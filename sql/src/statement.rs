//! Multi-row statements built at run time for both backends: rows batched
//! into a few fixed statement shapes, and placeholders in each backend's
//! syntax, numbered in the order their values bind.

use crate::backend::SqlDatabase;

/// The row counts multi-row statements come in, largest first. Statements,
/// not rows, are the cost in sqlx's SQLite driver, so rows are batched; and a
/// few fixed shapes (rather than one per group size) let both drivers reuse
/// their prepared statements. Powers of two, so any group takes at most one
/// statement per shape: small groups (single-reading calls) are where the
/// statement count shows. A caller with a shape set of its own passes it to
/// [`chunks_of_shapes`]; every set ends in 1, so every row count is covered.
pub const STATEMENT_ROWS: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];

/// The row counts of statements that bind one value per row (`IN` lists of
/// ids): larger than [`STATEMENT_ROWS`], since such a statement stays far
/// below the bind limit, and each statement saved is a round trip to the
/// driver's worker thread.
pub const LIST_ROWS: [usize; 13] = [4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1];

/// The most bind parameters one statement may carry on both backends:
/// SQLite's limit (PostgreSQL allows 65,535).
pub const MAX_BIND_PARAMETERS: usize = 32_766;

/// Whether the largest statement of `shapes`, at `columns` bound per row,
/// stays within [`MAX_BIND_PARAMETERS`]; for a compile-time check beside
/// each statement's column count:
/// `const _: () = assert!(fits_bind_limit(&STATEMENT_ROWS, 14));`.
pub const fn fits_bind_limit(shapes: &[usize], columns: usize) -> bool {
    !shapes.is_empty() && shapes[0] * columns <= MAX_BIND_PARAMETERS
}

/// Splits `rows` into consecutive chunks whose lengths are in
/// [`STATEMENT_ROWS`].
pub fn shaped_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    chunks_of_shapes(rows, &STATEMENT_ROWS)
}

/// Splits `rows` into consecutive chunks whose lengths are in `shapes`
/// (largest first, ending in 1), each as large as the rows left allow.
pub fn chunks_of_shapes<'r, T>(
    mut rows: &'r [T],
    shapes: &'static [usize],
) -> impl Iterator<Item = &'r [T]> {
    std::iter::from_fn(move || {
        let size = shapes.iter().copied().find(|size| *size <= rows.len())?;
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// The smallest of [`STATEMENT_ROWS`] that holds `len` rows (`len` itself
/// beyond the largest): a list of `len` values padded to it, by repeating
/// one, keeps to the fixed shapes.
pub fn padded_shape(len: usize) -> usize {
    padded_shape_of(len, &STATEMENT_ROWS)
}

/// The smallest of `shapes` (largest first) that holds `len` rows, as
/// [`padded_shape`] does for [`STATEMENT_ROWS`].
pub fn padded_shape_of(len: usize, shapes: &[usize]) -> usize {
    shapes
        .iter()
        .rev()
        .copied()
        .find(|size| *size >= len)
        .unwrap_or(len)
}

/// Appends `rows` groups of `columns` placeholders, `(…), (…)`, numbered
/// from `first` in the backend's syntax; `tail` (SQL with no parameters,
/// such as `, 'held'`) closes every group.
pub fn push_placeholders<DB: SqlDatabase>(
    sql: &mut String,
    first: usize,
    rows: usize,
    columns: usize,
    tail: &str,
) {
    let mut next = first;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        push_list::<DB>(sql, columns, &mut next);
        sql.push_str(tail);
        sql.push(')');
    }
}

/// Appends a placeholder list `?, ?, ?` of `count` parameters numbered from
/// `*next`, and moves `*next` past them.
pub fn push_list<DB: SqlDatabase>(sql: &mut String, count: usize, next: &mut usize) {
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        push_param::<DB>(sql, next);
    }
}

/// Appends one placeholder numbered `*next`, and moves `*next` on.
pub fn push_param<DB: SqlDatabase>(sql: &mut String, next: &mut usize) {
    DB::placeholder(sql, *next);
    *next += 1;
}

#[cfg(test)]
mod tests {
    use sqlx::{Postgres, Sqlite};

    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let mut pg = String::new();
        push_placeholders::<Postgres>(&mut pg, 1, 2, 3, "");
        assert_eq!(pg, "($1, $2, $3), ($4, $5, $6)");
        let mut lite = String::new();
        push_placeholders::<Sqlite>(&mut lite, 1, 2, 2, "");
        assert_eq!(lite, "(?, ?), (?, ?)");
    }

    #[test]
    fn placeholders_number_from_first_and_keep_their_tail() {
        let mut sql = String::new();
        push_placeholders::<Postgres>(&mut sql, 1, 2, 2, ", 'held'");
        assert_eq!(sql, "($1, $2, 'held'), ($3, $4, 'held')");
        let mut sql = String::new();
        push_placeholders::<Postgres>(&mut sql, 3, 1, 2, "");
        assert_eq!(sql, "($3, $4)");
        let mut sql = String::new();
        let mut next = 3;
        push_list::<Postgres>(&mut sql, 2, &mut next);
        assert_eq!((sql.as_str(), next), ("$3, $4", 5));
    }

    #[test]
    fn chunks_cover_every_row_in_order_with_fixed_shapes() {
        for total in [0, 1, 7, 8, 9, 511, 512, 1000, 8000] {
            let rows: Vec<usize> = (0..total).collect();
            let chunks: Vec<&[usize]> = shaped_chunks(&rows).collect();
            assert!(chunks.iter().all(|c| STATEMENT_ROWS.contains(&c.len())));
            assert_eq!(chunks.concat(), rows);
        }
    }

    #[test]
    fn other_shape_sets_are_kept() {
        static SHAPES: [usize; 3] = [100, 10, 1];
        let rows: Vec<u32> = (0..234).collect();
        let sizes: Vec<usize> = chunks_of_shapes(&rows, &SHAPES).map(<[u32]>::len).collect();
        assert_eq!(sizes, [100, 100, 10, 10, 10, 1, 1, 1, 1]);
    }

    #[test]
    fn lists_pad_to_the_next_shape() {
        assert_eq!(padded_shape(1), 1);
        assert_eq!(padded_shape(3), 4);
        assert_eq!(padded_shape(257), 512);
        assert_eq!(padded_shape(600), 600);
        assert!(fits_bind_limit(&STATEMENT_ROWS, 63));
        assert!(!fits_bind_limit(&STATEMENT_ROWS, 64));
        assert_eq!(padded_shape_of(600, &LIST_ROWS), 1024);
        assert_eq!(padded_shape_of(5000, &LIST_ROWS), 5000);
        assert!(fits_bind_limit(&LIST_ROWS, 7));
    }
}
