//! A site's books: which of its seqs the cloud holds a version of, as runs
//! of consecutive seqs in `held_runs`, and which it never will, as rows of
//! `seq_coverage` (rejected or dropped, each with its reason). A seq is in
//! a run or in a row, never both, and a held seq stays held.
//!
//! Runs rather than a row per seq: a push of thousands of consecutive seqs
//! books them by merging one run, and the coverage of a site with millions
//! of versions reads a few rows. Every function here runs inside the
//! caller's write transaction (or read snapshot, for coverage).

use edge_cloud_link::contract::{Coverage, MAX_COVERAGE_GAPS, SeqRange};
use edge_sql::runs::{id_runs, merge_runs};
use edge_sql::statement::push_placeholders;

use super::DbError;
use super::backend::Backend;
use super::sql::shaped_chunks;

/// Most seqs between two runs of one push that still share one read of the
/// runs around them; further apart, each group is read on its own, so a
/// read covers a stretch about as long as the push.
const MAX_SHARED_GAP: i64 = 4_096;

/// Books `seqs` of `site` as held: merges them into its runs and removes
/// any rejected or dropped rows they had (held wins).
#[edge_sql::sql_bounds]
pub(super) async fn book_held<DB: Backend>(
    conn: &mut DB::Connection,
    site: &str,
    seqs: &[i64],
) -> Result<(), DbError> {
    let runs = id_runs(seqs);
    for group in groups(&runs) {
        let (Some(&(from, _)), Some(&(_, to))) = (group.first(), group.last()) else {
            continue;
        };
        forget_unsent::<DB>(conn, site, group).await?;
        let touching =
            runs_within::<DB>(conn, site, from.saturating_sub(1), to.saturating_add(1)).await?;
        let merged = merge_runs(touching.iter().chain(group).copied().collect());
        if merged == touching {
            // Every seq was held already (a replay, or duplicates).
            continue;
        }
        if let (Some(first), Some(last)) = (touching.first(), touching.last()) {
            let mut sql = String::from("DELETE FROM held_runs WHERE site_id = ");
            DB::placeholder(&mut sql, 1);
            sql.push_str(" AND seq_from BETWEEN ");
            DB::placeholder(&mut sql, 2);
            sql.push_str(" AND ");
            DB::placeholder(&mut sql, 3);
            sqlx::query::<DB>(&sql)
                .bind(site)
                .bind(first.0)
                .bind(last.0)
                .execute(&mut *conn)
                .await?;
        }
        for chunk in shaped_chunks(&merged) {
            let mut sql = String::from("INSERT INTO held_runs (site_id, seq_from, seq_to) VALUES ");
            push_placeholders::<DB>(&mut sql, 1, chunk.len(), 3, "");
            let mut insert = sqlx::query::<DB>(&sql);
            for &(seq_from, seq_to) in chunk {
                insert = insert.bind(site).bind(seq_from).bind(seq_to);
            }
            insert.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Those of `seqs` (sorted) that `site`'s runs hold.
#[edge_sql::sql_bounds]
pub(super) async fn held_among<DB: Backend>(
    conn: &mut DB::Connection,
    site: &str,
    seqs: &[i64],
) -> Result<Vec<i64>, DbError> {
    // Reports and rejections are small; their seqs may lie far apart, so
    // they are grouped as a push's are, one read of the runs per group.
    let mut held = Vec::new();
    for group in groups(&id_runs(seqs)) {
        let (Some(&(first, _)), Some(&(_, last))) = (group.first(), group.last()) else {
            continue;
        };
        let runs = runs_within::<DB>(conn, site, first, last).await?;
        held.extend(seqs.iter().copied().filter(|seq| {
            (first..=last).contains(seq) && runs.iter().any(|(a, b)| (a..=b).contains(&seq))
        }));
    }
    Ok(held)
}

/// `site`'s runs holding any seq of `from..=to`, in seq order: the one
/// holding `from`, if any, and those starting inside.
#[edge_sql::sql_bounds]
async fn runs_within<DB: Backend>(
    conn: &mut DB::Connection,
    site: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, i64)>, DbError> {
    let mut sql = String::from("SELECT seq_from, seq_to FROM held_runs WHERE site_id = ");
    DB::placeholder(&mut sql, 1);
    sql.push_str(
        " AND seq_from BETWEEN COALESCE((SELECT MAX(seq_from) FROM held_runs WHERE site_id = ",
    );
    DB::placeholder(&mut sql, 2);
    sql.push_str(" AND seq_from <= ");
    DB::placeholder(&mut sql, 3);
    sql.push_str("), ");
    DB::placeholder(&mut sql, 4);
    sql.push_str(") AND ");
    DB::placeholder(&mut sql, 5);
    sql.push_str(" ORDER BY seq_from");
    let mut runs: Vec<(i64, i64)> = sqlx::query_as::<DB, (i64, i64)>(&sql)
        .bind(site)
        .bind(site)
        .bind(from)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
    runs.retain(|(_, run_to)| *run_to >= from);
    Ok(runs)
}

/// Removes the rejected or dropped rows of the seqs in `runs` (a seq
/// reported unsent and then pushed after all: held wins). Usually there
/// are none, and one range read says so.
#[edge_sql::sql_bounds]
async fn forget_unsent<DB: Backend>(
    conn: &mut DB::Connection,
    site: &str,
    runs: &[(i64, i64)],
) -> Result<(), DbError> {
    let (Some(&(from, _)), Some(&(_, to))) = (runs.first(), runs.last()) else {
        return Ok(());
    };
    let mut sql = String::from("SELECT seq FROM seq_coverage WHERE site_id = ");
    DB::placeholder(&mut sql, 1);
    sql.push_str(" AND seq BETWEEN ");
    DB::placeholder(&mut sql, 2);
    sql.push_str(" AND ");
    DB::placeholder(&mut sql, 3);
    let rows: Vec<(i64,)> = sqlx::query_as::<DB, (i64,)>(&sql)
        .bind(site)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
    let now_held: Vec<i64> = rows
        .into_iter()
        .map(|(seq,)| seq)
        .filter(|seq| runs.iter().any(|(a, b)| (a..=b).contains(&seq)))
        .collect();
    for chunk in shaped_chunks(&now_held) {
        let mut sql = String::from("DELETE FROM seq_coverage WHERE site_id = ");
        DB::placeholder(&mut sql, 1);
        sql.push_str(" AND seq IN (");
        edge_sql::statement::push_list::<DB>(&mut sql, chunk.len(), &mut 2);
        sql.push(')');
        let mut delete = sqlx::query::<DB>(&sql).bind(site);
        for seq in chunk {
            delete = delete.bind(*seq);
        }
        delete.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves the site's contiguous watermark up past every accounted seq (held
/// or recorded unsent) that follows it. Reads only from the watermark up
/// to the first gap: a run at a time, and unsent rows in pages that start
/// small, so a push behind a long-standing gap costs a short read; over a
/// site's life every run and row is passed once.
#[edge_sql::sql_bounds]
pub(super) async fn advance_watermark<DB: Backend>(
    conn: &mut DB::Connection,
    site: &str,
) -> Result<(), DbError> {
    let mut sql = String::from("SELECT contiguous_upto FROM site_books WHERE site_id = ");
    DB::placeholder(&mut sql, 1);
    let stored: Option<i64> = sqlx::query_as::<DB, (i64,)>(&sql)
        .bind(site)
        .fetch_optional(&mut *conn)
        .await?
        .map(|(w,)| w);
    let mut watermark = stored.unwrap_or(0);
    loop {
        let before = watermark;
        // The run holding the next seq, if any.
        if let Some(&(_, run_to)) = runs_within::<DB>(conn, site, watermark + 1, watermark + 1)
            .await?
            .first()
        {
            watermark = watermark.max(run_to);
        }
        watermark = unsent_following::<DB>(conn, site, watermark).await?;
        if watermark == before {
            break;
        }
    }
    if stored != Some(watermark) {
        let mut sql = String::from("INSERT INTO site_books (site_id, contiguous_upto) VALUES ");
        push_placeholders::<DB>(&mut sql, 1, 1, 2, "");
        sql.push_str(
            " ON CONFLICT (site_id) DO UPDATE SET contiguous_upto = excluded.contiguous_upto",
        );
        sqlx::query::<DB>(&sql)
            .bind(site)
            .bind(watermark)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The last of the unsent rows that follow `watermark` one after another
/// (`watermark` itself when none does), read in pages that start small.
#[edge_sql::sql_bounds]
async fn unsent_following<DB: Backend>(
    conn: &mut DB::Connection,
    site: &str,
    mut watermark: i64,
) -> Result<i64, DbError> {
    let mut sql = String::from("SELECT seq FROM seq_coverage WHERE site_id = ");
    DB::placeholder(&mut sql, 1);
    sql.push_str(" AND seq > ");
    DB::placeholder(&mut sql, 2);
    sql.push_str(" ORDER BY seq LIMIT ");
    DB::placeholder(&mut sql, 3);
    let mut page: i64 = 16;
    loop {
        let seqs: Vec<(i64,)> = sqlx::query_as::<DB, (i64,)>(&sql)
            .bind(site)
            .bind(watermark)
            .bind(page)
            .fetch_all(&mut *conn)
            .await?;
        let mut followed = 0;
        for (seq,) in &seqs {
            if *seq != watermark + 1 {
                break;
            }
            watermark = *seq;
            followed += 1;
        }
        if followed < seqs.len() || (seqs.len() as i64) < page {
            return Ok(watermark);
        }
        page = (page * 4).min(16_384);
    }
}

/// `site`'s coverage, read inside the caller's snapshot.
#[edge_sql::sql_bounds]
pub(super) async fn coverage<DB: Backend>(
    conn: &mut DB::Connection,
    site: &str,
) -> Result<Coverage, DbError> {
    // `versions_written`: the versions the site wrote (whoever pushed
    // them), which is what the site counts as synced.
    let mut sql =
        String::from("SELECT contiguous_upto, versions_written FROM site_books WHERE site_id = ");
    DB::placeholder(&mut sql, 1);
    let (watermark, versions): (i64, i64) = sqlx::query_as::<DB, (i64, i64)>(&sql)
        .bind(site)
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or((0, 0));
    // PostgreSQL sums BIGINTs as NUMERIC.
    let mut sql = String::from(
        "SELECT CAST(COALESCE(SUM(seq_to - seq_from + 1), 0) AS BIGINT), COALESCE(MAX(seq_to), 0) \
         FROM held_runs WHERE site_id = ",
    );
    DB::placeholder(&mut sql, 1);
    let (held, max_held): (i64, i64) = sqlx::query_as::<DB, (i64, i64)>(&sql)
        .bind(site)
        .fetch_one(&mut *conn)
        .await?;
    let mut sql = String::from(
        "SELECT COALESCE(SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'dropped' THEN 1 ELSE 0 END), 0), \
         COALESCE(MAX(seq), 0) FROM seq_coverage WHERE site_id = ",
    );
    DB::placeholder(&mut sql, 1);
    let (rejected, dropped, max_unsent): (i64, i64, i64) =
        sqlx::query_as::<DB, (i64, i64, i64)>(&sql)
            .bind(site)
            .fetch_one(&mut *conn)
            .await?;
    // Gaps: wherever a run or row above the watermark does not follow the
    // previous one (the first follows the watermark itself). Runs and rows
    // never share a seq, so in seq order each starts after the last ended.
    let mut sql = String::from(
        "SELECT prev + 1, seq_from - 1 FROM (SELECT seq_from, \
         COALESCE(LAG(seq_to) OVER (ORDER BY seq_from), ",
    );
    DB::placeholder(&mut sql, 1);
    sql.push_str(") AS prev FROM (SELECT seq_from, seq_to FROM held_runs WHERE site_id = ");
    DB::placeholder(&mut sql, 2);
    sql.push_str(" AND seq_to > ");
    DB::placeholder(&mut sql, 3);
    sql.push_str(" UNION ALL SELECT seq, seq FROM seq_coverage WHERE site_id = ");
    DB::placeholder(&mut sql, 4);
    sql.push_str(" AND seq > ");
    DB::placeholder(&mut sql, 5);
    sql.push_str(") AS accounted) AS ordered WHERE seq_from > prev + 1 ORDER BY seq_from LIMIT ");
    DB::placeholder(&mut sql, 6);
    let gap_rows: Vec<(i64, i64)> = sqlx::query_as::<DB, (i64, i64)>(&sql)
        .bind(watermark)
        .bind(site)
        .bind(watermark)
        .bind(site)
        .bind(watermark)
        .bind(MAX_COVERAGE_GAPS as i64 + 1)
        .fetch_all(&mut *conn)
        .await?;

    let max_seq = max_held.max(max_unsent) as u64;
    let gaps_truncated = gap_rows.len() > MAX_COVERAGE_GAPS;
    let gaps: Vec<SeqRange> = gap_rows
        .into_iter()
        .take(MAX_COVERAGE_GAPS)
        .map(|(first, last)| SeqRange {
            first: first as u64,
            last: last as u64,
        })
        .collect();
    let highest_contiguous_seq = gaps.first().map_or(max_seq, |gap| gap.first - 1);
    Ok(Coverage {
        site_id: site.to_owned(),
        highest_contiguous_seq,
        max_seq,
        held_seqs: held as u64,
        versions: versions as u64,
        rejected_seqs: rejected as u64,
        dropped_seqs: dropped as u64,
        gaps,
        gaps_truncated,
    })
}

/// `runs` (sorted, distinct) in groups whose runs lie at most
/// [`MAX_SHARED_GAP`] apart.
fn groups(runs: &[(i64, i64)]) -> Vec<&[(i64, i64)]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 1..runs.len() {
        if runs[i].0 - runs[i - 1].1 > MAX_SHARED_GAP {
            groups.push(&runs[start..i]);
            start = i;
        }
    }
    if start < runs.len() {
        groups.push(&runs[start..]);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::{MAX_SHARED_GAP, groups};

    #[test]
    fn runs_far_apart_are_read_apart() {
        let runs = [
            (1, 10),
            (20, 30),
            (40 + MAX_SHARED_GAP, 50 + MAX_SHARED_GAP),
        ];
        let grouped = groups(&runs);
        assert_eq!(grouped, vec![&runs[..2], &runs[2..]]);
        assert!(groups(&[]).is_empty());
    }
}
