//! Building the store's queries at run time for both backends: bind values
//! kept in step with their placeholders, whatever filters a query has
//! (statement shapes and placeholders themselves: [`edge_sql::statement`]).

use sqlx::{Arguments as _, Encode, FromRow, IntoArguments, Type};

use super::DbError;
use super::backend::Backend;
use super::first_versions::sync_state_of;
use crate::model::ReadingQuery;

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
            let table = match prefix {
                "" => "readings",
                "s." => "r",
                alias => alias.trim_end_matches('.'),
            };
            self.push(&format!(" AND {} = ", sync_state_of(table)));
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
