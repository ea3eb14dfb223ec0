//! A throwaway PostgreSQL cluster for a test: `initdb` and `pg_ctl` in a temporary folder, on a free
//! loopback port, stopped (and its files removed) when dropped. Needs PostgreSQL's server binaries
//! (Debian's `postgresql` package, which `tests/setup.sh` installs); no system service runs.
//! As root, the cluster runs as the `postgres` user (PostgreSQL refuses to run as root). Shared by
//! the integration tests and the host's own (each uses part of it: what one leaves unused is not
//! dead).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// The server's options, to start it again as it was.
    options: String,
}

impl TestPostgres {
    /// Starts a cluster with `fsync` off (the tests kill processes, not machines) and waits until
    /// it accepts connections.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a cluster that flushes its commits to disk (`fsync` on, PostgreSQL's default, as a
    /// production database runs) or not, and waits until it accepts connections.
    pub fn start_with(fsync: bool) -> Self {
        let bin = server_binaries();
        let dir = tempfile::Builder::new()
            .prefix("pagewright-pg-")
            .tempdir()
            .expect("a temporary folder");
        let data = dir.path().join("data");
        if as_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        run(postgres_command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]));
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            dir.path().display(),
            if fsync { "on" } else { "off" }
        );
        let cluster = Self {
            dir,
            bin,
            port,
            options,
        };
        cluster.start_again();
        cluster.stop_when_this_process_ends();
        cluster
    }

    /// Leaves behind a watchdog that stops the cluster and removes its files once this process is
    /// gone: a cluster shared through a `static` is never dropped, and a killed test drops nothing.
    fn stop_when_this_process_ends(&self) {
        let stop = postgres_command(&self.bin.join("pg_ctl"));
        let stop: Vec<String> = std::iter::once(stop.get_program())
            .chain(stop.get_args())
            .map(|part| format!("'{}'", part.to_string_lossy()))
            .collect();
        let data = self.dir.path().join("data");
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D '{data}' -m immediate stop; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = stop.join(" "),
            data = data.display(),
            dir = self.dir.path().display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &watchdog])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }

    /// Starts the cluster (again, after [`TestPostgres::stop`]) on its port, with its data.
    pub fn start_again(&self) {
        run(postgres_command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-o", &self.options, "-w", "start"]));
    }

    /// A database of its own in this cluster, and its URL.
    pub fn database(&self, name: &str) -> String {
        run(postgres_command(&self.bin.join("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            name,
        ]));
        self.url(name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in database `name` with psql; its output, unaligned and without headers.
    pub fn query(&self, name: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", name, "-At", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "psql: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Stops the cluster now, as a database that goes away would.
    pub fn stop(&self) {
        let _ = postgres_command(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `/usr/lib/postgresql/VERSION/bin`, or `$PG_BIN`.
fn server_binaries() -> PathBuf {
    if let Some(bin) = std::env::var_os("PG_BIN") {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL's server binaries (apt-get install postgresql, or set PG_BIN)")
}

fn as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .map(|uids| uids.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// `program`, run as the `postgres` user when this process is root.
fn postgres_command(program: &Path) -> Command {
    if as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("the command runs");
    assert!(output.status.success(), "{command:?}: {output:?}");
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}
