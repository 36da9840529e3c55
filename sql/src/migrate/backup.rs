//! The SQLite copy taken before migrations change a database.
//!
//! `VACUUM INTO` writes a consistent snapshot of the database (one read
//! transaction; concurrent writers, if any, do not tear it) as a fresh,
//! compact file in `backups/` beside the database file. The copy is made in
//! steps so that a kill at any point never leaves something that looks like
//! a complete backup:
//!
//! 1. written as `.<name>.partial` (hidden, and not matching the backup
//!    pattern);
//! 2. synced to disk;
//! 3. renamed to `<stem>-<UTC time>-schema-<from>-to-<to>.db`, and the
//!    directory synced, so the rename itself survives a power cut.
//!
//! Leftover `.partial` files (a killed attempt) are deleted before the next
//! copy. Before writing, free space is checked against the database's size:
//! a copy that cannot fit is refused without writing a byte, rather than
//! filling the disk the site runs on.
//!
//! Retention: per schema version a copy was taken at, only the newest copy
//! is kept (a start that is killed and retried copies the same schema
//! again), and only the copies of the three newest such versions. So the
//! way back to each of the last few schemas stays, and a crash loop cannot
//! fill the disk with copies. Each copy is a whole database: on a site
//! short of disk, delete older ones once an upgrade is known good.

use std::path::{Path, PathBuf};

use sqlx::SqliteConnection;

use super::error::{BackupError, MigrateError};
use super::{Upgrade, pause_at};

/// How many schema versions keep a copy.
pub(crate) const KEEP_SCHEMAS: usize = 3;

/// The directory copies of `file` go to: `backups/` beside it.
pub(crate) fn directory(file: &Path) -> PathBuf {
    file.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("backups")
}

/// Copies the database on `conn` (whose file is `file`, at schema `from`)
/// into `dir`, then applies the retention rule; returns the copy's path.
pub(crate) async fn sqlite(
    conn: &mut SqliteConnection,
    file: &Path,
    dir: &Path,
    from: i64,
    to: i64,
    upgrade: &Upgrade<'_>,
) -> Result<PathBuf, MigrateError> {
    let failed = |cause| MigrateError::BackupFailed {
        database: upgrade.database,
        from,
        to,
        cause: Box::new(cause),
        flag: upgrade.backup_flag,
        env: upgrade.backup_env,
    };
    let stem = stem(file);
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |error| BackupError::Io { what, path, error }
    };
    std::fs::create_dir_all(dir)
        .map_err(io("create the backup directory", dir))
        .map_err(failed)?;
    remove_partials(dir, &stem).map_err(failed)?;

    let (needed,): (i64,) = sqlx::query_as(
        "SELECT (p.page_count - f.freelist_count) * s.page_size \
         FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|error| MigrateError::Sql {
        database: upgrade.database,
        error,
    })?;
    let needed = u64::try_from(needed).unwrap_or(0);
    let free = free_bytes(dir)
        .map_err(|e| io("measure the free space of", dir)(e.into()))
        .map_err(failed)?;
    if !fits(needed, free) {
        return Err(failed(BackupError::NoRoom {
            dir: dir.to_owned(),
            free,
            needed,
        }));
    }

    let name = format!("{stem}-{}-schema-{from}-to-{to}.db", timestamp());
    let partial = dir.join(format!(".{name}.partial"));
    let done = dir.join(&name);
    let Some(target) = partial.to_str() else {
        return Err(failed(BackupError::Io {
            what: "name a file in",
            path: dir.to_owned(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
        }));
    };
    if let Err(error) = sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut *conn)
        .await
    {
        let _ = std::fs::remove_file(&partial);
        return Err(failed(BackupError::Copy {
            path: partial,
            error,
        }));
    }
    pause_at("backup").await;

    let (synced, renamed) = (partial.clone(), done.clone());
    let dir_owned = dir.to_owned();
    let finish = tokio::task::spawn_blocking(move || -> Result<(), BackupError> {
        std::fs::File::open(&synced)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", &synced))?;
        std::fs::rename(&synced, &renamed).map_err(io("rename", &synced))?;
        std::fs::File::open(&dir_owned)
            .and_then(|d| d.sync_all())
            .map_err(io("sync the directory", &dir_owned))?;
        Ok(())
    })
    .await;
    let finished = match finish {
        Ok(result) => result,
        Err(join) => Err(BackupError::Io {
            what: "finish",
            path: partial.clone(),
            error: std::io::Error::other(join.to_string()),
        }),
    };
    if let Err(cause) = finished {
        let _ = std::fs::remove_file(&partial);
        return Err(failed(cause));
    }
    if let Err(err) = prune(dir, &stem) {
        // The new copy is complete; an old one left over only costs space.
        tracing::warn!(%err, dir = %dir.display(), "cannot delete older database backups");
    }
    Ok(done)
}

/// Room kept free after the copy: the migration itself and the WAL need
/// space too, and a copy that leaves none only moves the failure to the
/// migration (a tenth of the database, at least 64 MiB).
pub(crate) fn headroom(needed: u64) -> u64 {
    (needed / 10).max(64 << 20)
}

/// Whether a copy of `needed` bytes, and the headroom after it, fit in
/// `free`.
pub(crate) fn fits(needed: u64, free: u64) -> bool {
    needed.saturating_add(headroom(needed)) <= free
}

/// Bytes free in `dir`'s file system for an unprivileged writer.
fn free_bytes(dir: &Path) -> Result<u64, rustix::io::Errno> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The database file's name without its extension (`edge` for `edge.db`).
fn stem(file: &Path) -> String {
    file.file_stem().map_or_else(
        || "database".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Now in UTC, to the second, without separators: `20261123T000000Z`.
fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect()
}

/// A complete copy's name split into (time, schema it was taken at), if
/// `name` is one of `stem`'s.
pub(crate) fn parse(stem: &str, name: &str) -> Option<(String, i64)> {
    let rest = name.strip_prefix(stem)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".db")?;
    let mut parts = rest.split('-');
    let time = parts.next()?;
    let from = match (parts.next()?, parts.next()?, parts.next()?, parts.next()?) {
        ("schema", from, "to", to) if to.parse::<i64>().is_ok() => from.parse().ok()?,
        _ => return None,
    };
    let is_time = time.len() == 16 && time.ends_with('Z') && time.as_bytes()[8] == b'T';
    (is_time && parts.next().is_none()).then(|| (time.to_owned(), from))
}

/// Deletes the partial copies a killed attempt left.
fn remove_partials(dir: &Path, stem: &str) -> Result<(), BackupError> {
    let prefix = format!(".{stem}-");
    for entry in read_dir(dir)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name.ends_with(".partial") {
            std::fs::remove_file(entry.path()).map_err(|error| BackupError::Io {
                what: "delete the partial backup",
                path: entry.path(),
                error,
            })?;
        }
    }
    Ok(())
}

/// Applies the retention rule to `stem`'s copies in `dir`.
pub(crate) fn prune(dir: &Path, stem: &str) -> Result<(), BackupError> {
    let mut copies: Vec<(String, i64, PathBuf)> = read_dir(dir)?
        .into_iter()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            parse(stem, &name).map(|(time, from)| (time, from, entry.path()))
        })
        .collect();
    // Newest first; the first copy of each schema version is its newest.
    copies.sort_by(|a, b| b.0.cmp(&a.0));
    let mut kept: Vec<i64> = Vec::new();
    for (_, from, path) in copies {
        if !kept.contains(&from) && kept.len() < KEEP_SCHEMAS {
            kept.push(from);
            continue;
        }
        std::fs::remove_file(&path).map_err(|error| BackupError::Io {
            what: "delete the old backup",
            path,
            error,
        })?;
    }
    Ok(())
}

/// The entries of `dir`.
fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, BackupError> {
    let io = |error| BackupError::Io {
        what: "list",
        path: dir.to_owned(),
        error,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)
}
