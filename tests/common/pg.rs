//! A throwaway PostgreSQL server for integration tests.
//!
//! `Pg::start()` runs `initdb` in a fresh directory under /tmp and starts a server listening on a
//! free port of 127.0.0.1 only, with trust authentication and fsync off. Every call starts its
//! own server, so tests are independent and may run in parallel. Dropping the `Pg` stops the
//! server and removes the directory.
//!
//! The URL is `postgres://postgres@127.0.0.1:PORT/postgres`: superuser `postgres`, no password,
//! the default `postgres` database (the test owns the whole server, so no separate database).
//!
//! Binaries come from the newest `/usr/lib/postgresql/<version>/bin` (Debian/Ubuntu `postgresql`
//! package, see scripts/setup.sh), else from `initdb` on PATH. initdb and postgres refuse to run
//! as root, so as root (CI) they run as the `postgres` system user through `runuser`.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// How long `pg_ctl -w` waits for the server to accept connections.
const START_TIMEOUT_S: u32 = 30;

pub struct Pg {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    as_postgres: bool,
    // Removes the directory when dropped, which is after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl Pg {
    /// Starts a fresh server. `None` only when the PostgreSQL binaries are not installed;
    /// any other failure panics with the command output or the server log.
    pub fn start() -> Option<Pg> {
        let Some(bin) = find_bindir() else {
            eprintln!(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on \
                 PATH): skipping; run scripts/setup.sh or apt install postgresql"
            );
            return None;
        };
        let as_postgres = is_root();

        let dir = tempfile::Builder::new()
            .prefix("antenne-pg-")
            .tempdir_in("/tmp")
            .expect("create temp dir for PostgreSQL under /tmp");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 PostgreSQL temp dir");
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown PostgreSQL temp dir to the postgres user");
        }

        let mut pg = Pg {
            url: String::new(),
            port: 0,
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            bin,
            as_postgres,
            dir,
        };

        let out = pg
            .cmd("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "-A", "trust"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("spawn initdb");
        check(&out, "initdb");

        let socket_dir = pg.dir.path().display().to_string();
        pg.append_conf(&format!(
            "\n# antenne test server\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket_dir}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             shared_buffers = 16MB\n"
        ));

        // The port is free when we look, but another process may take it before the server
        // binds it: retry with a new port when that happens.
        for attempt in 1..=3 {
            let port = free_port();
            pg.append_conf(&format!("port = {port}\n"));
            let out = pg
                .cmd("pg_ctl")
                .arg("-D")
                .arg(&pg.data)
                .arg("-l")
                .arg(&pg.log)
                .args(["-w", "-t", &START_TIMEOUT_S.to_string(), "start"])
                .output()
                .expect("spawn pg_ctl start");
            if out.status.success() {
                pg.port = port;
                pg.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                assert!(
                    TcpStream::connect_timeout(
                        &(Ipv4Addr::LOCALHOST, port).into(),
                        Duration::from_secs(5)
                    )
                    .is_ok(),
                    "PostgreSQL started but 127.0.0.1:{port} refuses connections; log:\n{}",
                    pg.server_log()
                );
                return Some(pg);
            }
            let log = pg.server_log();
            if attempt < 3 && log.contains("could not bind") {
                continue;
            }
            // Dropping `pg` while unwinding kills whatever did start.
            panic!(
                "PostgreSQL did not start (pg_ctl -w waits up to {START_TIMEOUT_S} s):\n{}{}\nserver log:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
        }
        unreachable!()
    }

    /// The server log so far (for assertion messages).
    pub fn server_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// A command for one of the PostgreSQL binaries, as the postgres user when we are root.
    fn cmd(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // The postgres user may not be allowed into our working directory (e.g. /root).
        c.current_dir(self.dir.path());
        c
    }

    fn append_conf(&self, text: &str) {
        let path = self.data.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
    }

    fn stop(&self) {
        let stopped = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .output()
            .is_ok_and(|o| o.status.success());
        if stopped {
            return;
        }
        // pg_ctl failed (or the server was never started): kill the postmaster if its pid file
        // is there; its children exit when it does.
        let pid = fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        if let Some(pid) = pid {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .output();
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// The bin directory of the newest /usr/lib/postgresql/<version>, else the directory of `initdb`
/// on PATH.
fn find_bindir() -> Option<PathBuf> {
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            // "15", "16", or old-style "9.6".
            let version: Vec<u32> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin);
    newest.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    })
}

/// uid and gid of the `postgres` system user (created by the Debian package).
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("spawn id");
        assert!(
            out.status.success(),
            "running as root, PostgreSQL must run as the `postgres` user, which does not exist \
             (apt install postgresql creates it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id from `id`")
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port on 127.0.0.1")
        .port()
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
