//! Building SQL at run time for both backends: placeholders in each
//! backend's syntax, bind values kept in step with them, and the fixed
//! statement shapes that let drivers reuse prepared statements.

use sqlx::{Arguments as _, Encode, FromRow, IntoArguments, Type};

use super::DbError;
use super::backend::Backend;
use crate::model::ReadingQuery;

/// The row counts multi-row statements come in, largest first. Statements,
/// not rows, are the cost in sqlx's SQLite driver, so rows are batched; and a
/// few fixed shapes (rather than one per group size) let both drivers reuse
/// their prepared statements. Powers of two, so any group takes at most one
/// statement per shape: small groups (single-reading calls) are where the
/// statement count shows. Every shape stays under both backends' bind limits
/// (512 rows × 14 columns).
pub(super) const STATEMENT_ROWS: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];

// The widest statement (readings, 14 columns) stays within SQLite's bind limit
// (32,766; PostgreSQL allows 65,535).
const _: () = assert!(STATEMENT_ROWS[0] * 14 <= 32_766);

/// Splits `rows` into consecutive chunks whose lengths are in
/// [`STATEMENT_ROWS`].
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

/// A bind value of a query built at run time.
pub(super) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Arg::Int(value)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(value: &'a str) -> Self {
        Arg::Text(value)
    }
}

/// SQL text and its bind values, kept in step so placeholders are numbered
/// in the order the values bind, whatever filters a query has.
pub(super) struct SqlBuilder<'a, DB> {
    sql: String,
    args: Vec<Arg<'a>>,
    backend: std::marker::PhantomData<DB>,
}

impl<DB> Default for SqlBuilder<'_, DB> {
    fn default() -> Self {
        SqlBuilder {
            sql: String::new(),
            args: Vec::new(),
            backend: std::marker::PhantomData,
        }
    }
}

impl<'a, DB: Backend> SqlBuilder<'a, DB> {
    pub(super) fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    pub(super) fn arg(&mut self, value: impl Into<Arg<'a>>) {
        self.args.push(value.into());
        DB::placeholder(&mut self.sql, self.args.len());
    }

    /// ` AND …` for the query's time range, sync state and cursor. `prefix`
    /// qualifies `seq` and `sync_state`; `time` is the measured_at
    /// expression.
    pub(super) fn filters(&mut self, query: &ReadingQuery, prefix: &str, time: &str) {
        if let Some(from) = query.from_us {
            self.push(&format!(" AND {time} >= "));
            self.arg(from);
        }
        if let Some(to) = query.to_us {
            self.push(&format!(" AND {time} < "));
            self.arg(to);
        }
        // Only a reading's own table has sync_state; `s.` rows join `r.`.
        if let Some(state) = query.sync_state {
            let table = if prefix == "s." { "r." } else { prefix };
            self.push(&format!(" AND {table}sync_state = "));
            self.arg(state as i64);
        }
        if let Some(after) = query.after {
            self.push(&format!(" AND ({time}, {prefix}seq) > ("));
            self.arg(after.measured_at_us);
            self.push(", ");
            self.arg(after.seq);
            self.push(")");
        }
    }

    /// ` FROM readings WHERE seq >= first AND seq <= last`: the readings a
    /// group (or a sensor-index batch) covers.
    pub(super) fn readings_in_seq_range(&mut self, first_seq: i64, last_seq: i64) {
        self.push(" FROM readings WHERE seq >= ");
        self.arg(first_seq);
        self.push(" AND seq <= ");
        self.arg(last_seq);
    }

    /// The bind values, in placeholder order.
    pub(super) fn arguments(&self) -> Result<DB::Arguments<'a>, DbError>
    where
        i64: Encode<'a, DB> + Type<DB>,
        &'a str: Encode<'a, DB> + Type<DB>,
    {
        let mut arguments = DB::Arguments::default();
        for arg in &self.args {
            match *arg {
                Arg::Int(value) => arguments.add(value),
                Arg::Text(value) => arguments.add(value),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok(arguments)
    }

    /// The statement, for `execute`.
    pub(super) fn query(&'a self) -> Result<sqlx::query::Query<'a, DB, DB::Arguments<'a>>, DbError>
    where
        DB::Arguments<'a>: IntoArguments<'a, DB>,
        i64: Encode<'a, DB> + Type<DB>,
        &'a str: Encode<'a, DB> + Type<DB>,
    {
        Ok(sqlx::query_with(&self.sql, self.arguments()?))
    }

    /// The statement, for rows of `T`.
    pub(super) fn query_as<T>(
        &'a self,
    ) -> Result<sqlx::query::QueryAs<'a, DB, T, DB::Arguments<'a>>, DbError>
    where
        T: for<'r> FromRow<'r, DB::Row>,
        DB::Arguments<'a>: IntoArguments<'a, DB>,
        i64: Encode<'a, DB> + Type<DB>,
        &'a str: Encode<'a, DB> + Type<DB>,
    {
        Ok(sqlx::query_as_with(&self.sql, self.arguments()?))
    }
}

/// Appends `rows` groups of `cols` placeholders, `(…), (…)`, numbered from
/// `first` in the backend's syntax.
pub(super) fn push_placeholders<DB: Backend>(
    sql: &mut String,
    first: usize,
    rows: usize,
    cols: usize,
) {
    let mut n = first;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..cols {
            if col > 0 {
                sql.push_str(", ");
            }
            DB::placeholder(sql, n);
            n += 1;
        }
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Postgres, Sqlite};

    use super::{STATEMENT_ROWS, push_placeholders, shaped_chunks};

    #[test]
    fn placeholders_follow_the_backend() {
        let mut pg = String::new();
        push_placeholders::<Postgres>(&mut pg, 1, 2, 3);
        assert_eq!(pg, "($1, $2, $3), ($4, $5, $6)");
        let mut lite = String::new();
        push_placeholders::<Sqlite>(&mut lite, 1, 2, 2);
        assert_eq!(lite, "(?, ?), (?, ?)");
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
}
