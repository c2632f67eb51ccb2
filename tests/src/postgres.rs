//! A real PostgreSQL server for the fleet suites, in a temp dir on a free loopback port.
//!
//! `initdb` + `pg_ctl` from Debian's `postgresql` package (installed by `.ci/run`). PostgreSQL
//! refuses to run as root, so as root the cluster is made and run as the `postgres` user the
//! package creates. Durability is off (`fsync=off`): these servers hold test state only.
//! Where no server can be made, [`Postgres::start`] says so loudly and returns `None`, except
//! under CI, where a missing server is a failure, not a skip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running server; stopped (immediately) when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
}

impl Postgres {
    /// Makes a cluster and starts it, or says why not.
    pub fn start() -> Option<Self> {
        match Self::try_start() {
            Ok(pg) => Some(pg),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("PostgreSQL is required under CI (.ci/run installs it): {why}")
            }
            Err(why) => {
                // Straight to stderr: libtest does not capture it, so the skip shows.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!!!! SKIPPED: fleet test needs PostgreSQL: {why} !!!!!\n"
                );
                None
            }
        }
    }

    fn try_start() -> Result<Self, String> {
        let bin = bin_dir().ok_or("no initdb found (apt-get install postgresql)")?;
        let run_as = crate::is_root().then_some("postgres");
        let dir = tempfile::Builder::new()
            .prefix("claw-pg")
            .tempdir()
            .map_err(|e| e.to_string())?;
        if let Some(user) = run_as {
            let status = Command::new("chown")
                .args(["-R", user, &dir.path().display().to_string()])
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("cannot hand the temp dir to {user}"));
            }
        }
        let port = crate::free_port();
        let pg = Self {
            dir,
            bin,
            port,
            run_as,
        };
        let data = pg.data().display().to_string();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "claw",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        pg.resume()?;
        Ok(pg)
    }

    /// `postgres://claw@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://claw@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`-m immediate`, as a crash would).
    pub fn kill(&self) {
        let data = self.data().display().to_string();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// Starts the server again (on the same port) and waits until it accepts connections.
    pub fn resume(&self) -> Result<(), String> {
        let data = self.data().display().to_string();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off \
             -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "30", "start",
            ],
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            ))
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The newest `/usr/lib/postgresql/<v>/bin` with `initdb`, else the directory of an `initdb`
/// on PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path).find(|d| Path::new(d).join("initdb").exists())
        })
    })
}
