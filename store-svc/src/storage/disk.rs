//! Free space on the file system holding the site database.
//!
//! A trait, so a test can stand in a small disk where it cannot mount one.

use std::io;
use std::path::{Path, PathBuf};

/// Most the SQLite WAL grows to between checkpoints (the writer's automatic
/// checkpoint bounds it; see `db::checkpoint`). Growth up to it is counted
/// as already used, so a burst of commits cannot eat into the reserve.
pub const WAL_CEILING_BYTES: u64 = 64 * 1024 * 1024;

/// The file system's size and free space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Size of the file system.
    pub total_bytes: u64,
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
}

/// Where free space is read from.
pub trait DiskProbe: Send + Sync {
    /// The current size and free space.
    fn space(&self) -> io::Result<DiskSpace>;
}

/// The real file system of a directory, through `statvfs`.
#[derive(Debug, Clone)]
pub struct FileSystem {
    dir: PathBuf,
}

impl FileSystem {
    /// The file system holding `dir`.
    pub fn of(dir: &Path) -> Self {
        FileSystem {
            dir: dir.to_path_buf(),
        }
    }
}

impl DiskProbe for FileSystem {
    fn space(&self) -> io::Result<DiskSpace> {
        let stat = rustix::fs::statvfs(&self.dir)?;
        Ok(DiskSpace {
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        })
    }
}

/// What the WAL beside `db_file` may still grow by before it is rewound.
pub fn wal_growth_left(db_file: &Path) -> u64 {
    let mut wal = db_file.as_os_str().to_owned();
    wal.push("-wal");
    let current = std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len());
    WAL_CEILING_BYTES.saturating_sub(current)
}
