//! Small file systems that really fill: a tmpfs of a chosen size mounted on
//! a test's directory, for the tests of a full disk.
//!
//! Mounting needs root (CAP_SYS_ADMIN). Where the test process cannot
//! mount, [`Tmpfs::mount`] says so and returns `None`, and the test is
//! skipped with a message, unless `EDGE_REQUIRE_TMPFS=1` (CI sets it; CI runs
//! as root), which turns that into a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::FixtureError;

/// A mounted tmpfs, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

/// Whether a test that needs a tmpfs must fail where none can be mounted.
pub fn tmpfs_required() -> bool {
    crate::required("EDGE_REQUIRE_TMPFS")
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on `dir` (created if missing), owned by
    /// `owner` (uid, gid) when given. `Ok(None)` (after a message on
    /// stderr) when this process cannot mount and a tmpfs is not required.
    ///
    /// # Errors
    /// When mounting fails and `EDGE_REQUIRE_TMPFS=1`.
    pub fn mount(
        dir: &Path,
        bytes: u64,
        owner: Option<(u32, u32)>,
    ) -> Result<Option<Tmpfs>, FixtureError> {
        std::fs::create_dir_all(dir)?;
        let options = match owner {
            Some((uid, gid)) => format!("size={bytes},uid={uid},gid={gid},mode=0700"),
            None => format!("size={bytes},mode=0755"),
        };
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(dir)
            .stdin(Stdio::null())
            .output();
        let why = match output {
            Ok(out) if out.status.success() => {
                return Ok(Some(Tmpfs {
                    dir: dir.to_path_buf(),
                }));
            }
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(err) => err.to_string(),
        };
        if tmpfs_required() {
            return Err(FixtureError::Io(std::io::Error::other(format!(
                "cannot mount a tmpfs on {}: {why}",
                dir.display()
            ))));
        }
        eprintln!(
            "SKIPPED (needs a tmpfs): cannot mount one here ({why}); run as root, or set \
             EDGE_REQUIRE_TMPFS=1 to fail instead"
        );
        Ok(None)
    }

    /// Where it is mounted.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fills the file system with `name`, written until it has no space
    /// left (as a log or an image pull would); returns the file's path and
    /// the bytes written.
    pub fn fill(&self, name: &str) -> std::io::Result<(PathBuf, u64)> {
        fill(&self.dir.join(name))
    }
}

/// Writes `path` until its file system has no space left; returns it and
/// the bytes written.
pub fn fill(path: &Path) -> std::io::Result<(PathBuf, u64)> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path)?;
    let block = vec![0x5a_u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(err) if err.raw_os_error() == Some(28) => break, // ENOSPC
            Err(err) => return Err(err),
        }
    }
    // Whatever is left in the page cache is the file system's to keep.
    let _ = file.sync_all();
    Ok((path.to_path_buf(), written))
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, so a process that still has a file open there (a killed
        // child being reaped) cannot keep the mount.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
    }
}
