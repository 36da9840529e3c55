//! A PostgreSQL server of a test's own, for tests that stop, restart or
//! fill the server: `initdb` in a temporary directory, a free port, started
//! and stopped with `pg_ctl`. Never the shared server the other tests use.
//!
//! The binaries come from `pg_config --bindir` (or the newest
//! `/usr/lib/postgresql/*/bin`). PostgreSQL refuses to run as root, so when
//! the tests run as root (as in CI) the server runs as the `postgres` user
//! through `runuser`, and its directories are handed to that user. Where no
//! server binaries exist, the test is skipped with a message unless
//! `EDGE_REQUIRE_POSTGRES=1`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::FixtureError;

/// How [`PostgresServer::stop`] stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnects clients, rolls back their transactions, checkpoints.
    Fast,
    /// Quits at once without a checkpoint, as a crash or power cut would;
    /// the next start recovers from the WAL.
    Immediate,
}

/// A running PostgreSQL server in a temporary directory; stopped (fast)
/// when dropped.
pub struct PostgresServer {
    bin: PathBuf,
    /// `Some(user)` when commands run as that user (the tests run as root).
    run_as: Option<String>,
    owner: Option<(u32, u32)>,
    root: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    running: bool,
}

impl PostgresServer {
    /// Creates and starts a server. `Ok(None)` (after a message) when no
    /// PostgreSQL binaries are installed and PostgreSQL is not required.
    ///
    /// # Errors
    /// When a step fails (initdb, the start), or the binaries are missing
    /// while `EDGE_REQUIRE_POSTGRES=1`.
    pub fn start() -> Result<Option<PostgresServer>, FixtureError> {
        let Some(bin) = bin_dir() else {
            if crate::postgres_required() {
                return Err(FixtureError::NotReady(
                    "no PostgreSQL server binaries (pg_config --bindir)".into(),
                ));
            }
            eprintln!(
                "SKIPPED (needs PostgreSQL's server binaries): none found; set \
                 EDGE_REQUIRE_POSTGRES=1 to fail instead"
            );
            return Ok(None);
        };
        let root = tempfile::tempdir()?;
        let (run_as, owner) = if is_root() {
            let owner = user_ids("postgres")?;
            (Some("postgres".to_owned()), Some(owner))
        } else {
            (None, None)
        };
        let data = root.path().join("data");
        let mut server = PostgresServer {
            bin,
            run_as,
            owner,
            data,
            port: free_port()?,
            root,
            running: false,
        };
        server.hand_over(server.root.path())?;
        server.run(
            "initdb",
            &[
                "-D",
                &server.data.display().to_string(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                // Small WAL segments, so a test server stays small.
                "--wal-segsize=1",
            ],
        )?;
        server.start_again()?;
        Ok(Some(server))
    }

    /// `postgres://postgres@127.0.0.1:{port}/{database}`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one statement on the server's `postgres` database, as the
    /// superuser: for creating databases and tablespaces (which refuse to
    /// run in a transaction, so one statement a call).
    pub async fn execute(&self, sql: &str) -> Result<(), FixtureError> {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::raw_sql(sql).execute(&mut admin).await?;
        admin.close().await?;
        Ok(())
    }

    /// The uid and gid the server runs as, when not the test's own (for
    /// directories it must own, like a tablespace).
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// A directory in the server's temporary directory that the server may
    /// use (for a tablespace or a mount point).
    pub fn dir(&self, name: &str) -> Result<PathBuf, FixtureError> {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir)?;
        self.hand_over(&dir)?;
        Ok(dir)
    }

    /// Gives `path` to the server's user (a no-op when not running as root).
    pub fn hand_over(&self, path: &Path) -> Result<(), FixtureError> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// Stops the server.
    pub fn stop(&mut self, mode: StopMode) -> Result<(), FixtureError> {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-D",
                &self.data.display().to_string(),
                "-m",
                mode,
                "-w",
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same data and port, waiting until it
    /// accepts connections (after recovery, if it crashed).
    pub fn start_again(&mut self) -> Result<(), FixtureError> {
        let socket_dir = self.root.path().display().to_string();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={socket_dir} \
             -c fsync=on -c synchronous_commit=on -c full_page_writes=on \
             -c min_wal_size=4MB -c max_wal_size=32MB -c max_connections=40",
            self.port
        );
        let log = self.root.path().join("server.log").display().to_string();
        // Counted as running from here: a start that times out may still
        // bring the server up, and dropping the fixture must stop it.
        self.running = true;
        self.run(
            "pg_ctl",
            &[
                "start",
                "-D",
                &self.data.display().to_string(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
            ],
        )?;
        Ok(())
    }

    /// The server's log so far, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), FixtureError> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(&exe);
                cmd
            }
            None => Command::new(&exe),
        };
        let output = cmd
            .args(args)
            .current_dir(self.root.path())
            .stdin(Stdio::null())
            .output()?;
        if output.status.success() {
            Ok(())
        } else {
            Err(FixtureError::NotReady(format!(
                "{program} {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Before the temporary directory goes: a server left running would
        // outlive its data directory.
        if self.running {
            let _ = self.stop(StopMode::Immediate);
        }
    }
}

/// The server binaries' directory.
fn bin_dir() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let mut candidates: Vec<PathBuf> = from_pg_config.into_iter().collect();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = versions
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .collect();
        found.sort();
        candidates.extend(found.into_iter().rev());
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The uid and gid of `user`.
fn user_ids(user: &str) -> Result<(u32, u32), FixtureError> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(FixtureError::NotReady(format!(
            "running as root, PostgreSQL needs the user {user:?}, which does not exist"
        ))),
        Err(err) => Err(FixtureError::Io(std::io::Error::other(err))),
    }
}

/// A port nothing listens on now (bound and released: the server binds it
/// a moment later).
fn free_port() -> Result<u16, FixtureError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
