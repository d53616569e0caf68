//! A private MariaDB server: its own datadir and unix socket, no TCP, unix_socket authentication
//! for the current system user (no password anywhere); root and non-root alike.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::process::{ChildGuard, Signal, Stop, remove_at_exit};

/// How long mariadbd may take to answer after a start, and to shut down on SIGTERM.
const START_SECS: u64 = 60;
const SHUTDOWN: Duration = Duration::from_secs(30);

/// The environment variable naming a MariaDB server (`mysql://USER@localhost/?socket=PATH`) that
/// [`MariaDb::shared`] uses instead of starting one; `onebox-testkit with-mariadb` sets it.
pub const URL_VAR: &str = "ONEBOX_TEST_MYSQL_URL";

/// A private mariadbd.
///
/// Its directory holds `data/` (the datadir), `mysqld.sock`, `mysqld.pid` and `mariadbd.log`
/// (the server's output). A fresh datadir is copied from a template initialised once per user
/// and MariaDB version with `mariadb-install-db` (in `~/.cache/onebox-testkit/`, or
/// `$ONEBOX_TESTKIT_CACHE`), which takes seconds where the copy takes milliseconds.
#[derive(Debug)]
pub struct MariaDb {
    dir: Dir,
    socket: PathBuf,
    user: String,
    server: Option<ChildGuard>,
    /// Whether the data is kept: stopped with SIGTERM rather than killed when dropped.
    keep: bool,
}

#[derive(Debug)]
enum Dir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
    /// A server this kit did not start ([`URL_VAR`]).
    External,
}

impl MariaDb {
    /// Starts a server in a new temporary directory, removed (server killed) when dropped.
    pub fn start() -> anyhow::Result<MariaDb> {
        let dir = tempfile::Builder::new()
            .prefix("onebox-mariadb-")
            .tempdir()
            .context("creating a temporary directory for MariaDB")?;
        Self::start_at(Dir::Temp(dir), false)
    }

    /// Starts a server in `dir` (created if missing), initialising `dir/data` unless it holds a
    /// datadir already: the data outlives the server, which is stopped with SIGTERM (a clean
    /// InnoDB shutdown) when dropped.
    pub fn start_in(dir: &Path) -> anyhow::Result<MariaDb> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        Self::start_at(Dir::Kept(dir), true)
    }

    /// The server every test of this process shares, started at the first call (a server of
    /// [`start`](Self::start)) and killed when the process exits, its directory removed then;
    /// or the server `$ONEBOX_TEST_MYSQL_URL` names, when it is set (see [`URL_VAR`]).
    /// Give each test its own [`database`](Self::database).
    ///
    /// # Panics
    /// When the server cannot start (every call panics with the same reason).
    #[allow(clippy::panic)] // A test kit fails the test, with the reason.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<Result<MariaDb, String>> = OnceLock::new();
        let shared = SHARED.get_or_init(|| {
            let start = || -> anyhow::Result<MariaDb> {
                if let Ok(url) = std::env::var(URL_VAR) {
                    let db = Self::connect(&url)?;
                    db.sql("SELECT 1").with_context(|| {
                        format!("the server of {URL_VAR}={url} does not answer")
                    })?;
                    return Ok(db);
                }
                let db = Self::start()?;
                remove_at_exit(db.dir())?;
                Ok(db)
            };
            start().map_err(|e| format!("{e:#}"))
        });
        match shared {
            Ok(db) => db,
            Err(e) => panic!("the tests' shared MariaDB server did not start: {e}"),
        }
    }

    /// A server started elsewhere (or by another [`MariaDb`]), from its URL
    /// `mysql://USER@localhost/[DB]?socket=PATH`: for [`database`](Self::database) and
    /// [`sql`](Self::sql) on it; the outage operations refuse, and dropping it does nothing.
    pub fn connect(url: &str) -> anyhow::Result<MariaDb> {
        let user = url
            .strip_prefix("mysql://")
            .and_then(|rest| rest.split_once('@'))
            .map(|(user, _)| user.to_string())
            .filter(|u| !u.is_empty() && !u.contains(':'))
            .with_context(|| format!("{URL_VAR}={url}: expected mysql://USER@localhost/?socket=PATH (unix_socket authentication)"))?;
        let socket = url
            .split_once("socket=")
            .map(|(_, s)| PathBuf::from(s.split('&').next().unwrap_or(s)))
            .with_context(|| format!("{URL_VAR}={url}: no socket= parameter"))?;
        Ok(MariaDb {
            dir: Dir::External,
            socket,
            user,
            server: None,
            keep: true,
        })
    }

    fn start_at(dir: Dir, keep: bool) -> anyhow::Result<MariaDb> {
        let mut db = MariaDb {
            dir,
            socket: PathBuf::new(),
            user: current_user()?,
            server: None,
            keep,
        };
        db.socket = db.dir().join("mysqld.sock");
        // sockaddr_un holds 107 bytes of path.
        if db.socket.as_os_str().len() > 107 {
            bail!(
                "the socket path {} is longer than a unix socket allows (107 bytes): use a shorter directory",
                db.socket.display()
            );
        }
        let data = db.dir().join("data");
        if !data.join("mysql").is_dir() {
            init_datadir(&data)?;
        }
        db.resume()?;
        Ok(db)
    }

    /// Its directory (`data/`, the socket, the log).
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Dir::Temp(t) => t.path(),
            Dir::Kept(p) => p,
            Dir::External => self.socket.parent().unwrap_or(Path::new("/")),
        }
    }

    /// Its unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The account tests connect as: the current system user, authenticated by unix_socket.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The server's URL without a database: `mysql://USER@localhost/?socket=PATH`.
    pub fn url(&self) -> String {
        self.url_of("")
    }

    /// The URL of database `db` on this server.
    pub fn url_of(&self, db: &str) -> String {
        format!(
            "mysql://{}@localhost/{db}?socket={}",
            self.user,
            self.socket.display()
        )
    }

    /// Whether the server this kit started is running (an external one: whether it answers).
    pub fn running(&mut self) -> bool {
        match self.server.as_mut() {
            Some(server) => server.running(),
            None => matches!(self.dir, Dir::External) && greets(&self.socket),
        }
    }

    /// The server's process id, while this kit runs it.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(ChildGuard::pid)
    }

    /// What the server logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir().join("mariadbd.log")).unwrap_or_default()
    }

    /// A fresh, empty database of its own (utf8mb4), dropped when the [`Database`] is.
    pub fn database(&self) -> anyhow::Result<Database> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "t_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.sql(&format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))?;
        Ok(Database {
            url: self.url_of(&name),
            name,
            socket: self.socket.clone(),
            user: self.user.clone(),
        })
    }

    /// Runs `sql` with the `mariadb` client and returns its output (tab-separated, no column
    /// names).
    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        client(&self.socket, &self.user, None, sql)
    }

    /// Kills the server with SIGKILL, as a crash or an outage would (its datadir stays).
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Stops the server with SIGTERM (a clean shutdown, up to 30 s, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.terminate(SHUTDOWN);
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its connections and accepts new ones, but
    /// answers nothing until [`thaw`](Self::thaw). Returns once every thread of the server has
    /// stopped: `kill` only marks the signal pending and wakes one thread, which stops the others
    /// when it runs, so on a busy machine another thread can still answer a query for some
    /// milliseconds after `kill` returns.
    pub fn freeze(&mut self) -> anyhow::Result<()> {
        let server = self.running_server()?;
        server.signal(Signal::STOP)?;
        let pid = server.pid();
        crate::process::try_wait_until(
            Duration::from_secs(10),
            "every thread of mariadbd to stop",
            || all_threads_stopped(pid),
        )?;
        Ok(())
    }

    /// Whether every thread of the server is stopped (after [`freeze`](Self::freeze)).
    pub fn frozen(&self) -> bool {
        self.pid().is_some_and(all_threads_stopped)
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&mut self) -> anyhow::Result<()> {
        self.running_server()?.signal(Signal::CONT)?;
        Ok(())
    }

    fn running_server(&mut self) -> anyhow::Result<&mut ChildGuard> {
        match self.server.as_mut() {
            Some(server) => {
                if server.exited().is_some() {
                    bail!("the MariaDB server has exited");
                }
                Ok(server)
            }
            None => bail!("the MariaDB server is not running"),
        }
    }

    /// Starts the server again on its datadir (after [`kill`](Self::kill) or
    /// [`stop`](Self::stop)) and waits until it accepts connections; nothing to do while it runs.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        if matches!(self.dir, Dir::External) {
            bail!("this MariaDB server was not started by the test kit ({URL_VAR})");
        }
        if let Some(server) = self.server.as_mut()
            && server.running()
        {
            return Ok(());
        }
        let dir = self.dir().to_path_buf();
        let mut cmd = Command::new(program("mariadbd"));
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .args(SERVER_OPTIONS);
        let stop = if self.keep {
            Stop::Term(SHUTDOWN)
        } else {
            Stop::Kill
        };
        let mut server = ChildGuard::spawn_with(cmd, dir.join("mariadbd.log"), false, stop)
            .context("mariadbd (Debian package mariadb-server; `just deps` installs it)")?;
        let socket = self.socket.clone();
        server.try_wait_until(
            Duration::from_secs(START_SECS),
            &format!("mariadbd to accept connections on {}", socket.display()),
            || greets(&socket),
        )?;
        self.server = Some(server);
        Ok(())
    }

    /// [`stop`](Self::stop), then [`resume`](Self::resume).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.resume()
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        // The server first, then its directory (fields drop in declaration order).
        self.server.take();
    }
}

/// The server's options: unix socket only, no binary log, a small redo log, and the settings
/// the benchmark and many parallel tests need.
const SERVER_OPTIONS: &[&str] = &[
    "--skip-networking",
    "--skip-log-bin",
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=2",
    "--max-connections=500",
];

/// Whether the server on `socket` sends a MySQL protocol-10 greeting (it accepts connections).
fn greets(socket: &Path) -> bool {
    let Ok(mut conn) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = [0u8; 5];
    conn.read_exact(&mut head).is_ok() && head[4] == 10
}

/// A database of its own on a [`MariaDb`], dropped (with the `mariadb` client) when dropped.
#[derive(Debug)]
pub struct Database {
    name: String,
    url: String,
    socket: PathBuf,
    user: String,
}

impl Database {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its URL: `mysql://USER@localhost/NAME?socket=PATH`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `sql` in this database with the `mariadb` client and returns its output
    /// (tab-separated, no column names).
    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        client(&self.socket, &self.user, Some(&self.name), sql)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Best effort: a server killed by the test takes its databases along anyway.
        if greets(&self.socket) {
            let _ = client(
                &self.socket,
                &self.user,
                None,
                &format!("DROP DATABASE IF EXISTS `{}`", self.name),
            );
        }
    }
}

/// Runs `sql` through the `mariadb` client on `socket` as `user`, in `db`.
fn client(socket: &Path, user: &str, db: Option<&str>, sql: &str) -> anyhow::Result<String> {
    let mut cmd = Command::new(program("mariadb"));
    cmd.arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--user={user}"))
        .args(["--batch", "--skip-column-names", "-e", sql]);
    if let Some(db) = db {
        cmd.arg(db);
    }
    let out = cmd
        .output()
        .context("running the mariadb client (Debian package mariadb-client)")?;
    if !out.status.success() {
        bail!(
            "mariadb on {}: `{sql}` failed: {}",
            socket.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fills `data` (which must not hold a datadir) with a fresh datadir: a copy of the template,
/// or `mariadb-install-db` when there can be no template.
fn init_datadir(data: &Path) -> anyhow::Result<()> {
    if data.exists() {
        std::fs::remove_dir_all(data)
            .with_context(|| format!("removing the incomplete datadir {}", data.display()))?;
    }
    match template() {
        Ok(Some(template)) => {
            let out = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(data)
                .output()
                .context("running cp")?;
            if !out.status.success() {
                bail!(
                    "copying the MariaDB template {} to {}: {}",
                    template.display(),
                    data.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let _ = std::fs::remove_file(data.join(TEMPLATE_MARK));
            Ok(())
        }
        Ok(None) => install_db(data),
        Err(e) => Err(e.context("preparing the MariaDB datadir template")),
    }
}

/// The file that marks a complete template.
const TEMPLATE_MARK: &str = "onebox-testkit-template";

/// The datadir template of this user and MariaDB version, made now if missing; `None` when
/// there is no cache directory to keep it in.
fn template() -> anyhow::Result<Option<PathBuf>> {
    let cache = match std::env::var_os("ONEBOX_TESTKIT_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => match (std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME")) {
            (Some(xdg), _) if !xdg.is_empty() => PathBuf::from(xdg).join("onebox-testkit"),
            (_, Some(home)) if !home.is_empty() => {
                PathBuf::from(home).join(".cache/onebox-testkit")
            }
            _ => return Ok(None),
        },
    };
    let version = mariadbd_version()?;
    let name: String = format!("mariadb-{version}-{}", current_user()?)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = cache.join(name);
    if path.join(TEMPLATE_MARK).is_file() {
        // Only a template of our own: anything else could hand the tests a planted datadir.
        let meta = std::fs::metadata(&path)?;
        if meta.uid() != rustix::process::getuid().as_raw() || meta.mode() & 0o022 != 0 {
            bail!(
                "{} is not a directory of this user's alone; remove it",
                path.display()
            );
        }
        return Ok(Some(path));
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".template-")
        .tempdir_in(&cache)
        .with_context(|| format!("creating a directory in {}", cache.display()))?;
    let data = work.path().join("data");
    install_db(&data)?;
    std::fs::write(data.join(TEMPLATE_MARK), "")?;
    // Two processes may race to make it: the first rename wins, the other copy is dropped.
    if std::fs::rename(&data, &path).is_err() && !path.join(TEMPLATE_MARK).is_file() {
        bail!("cannot put the MariaDB template at {}", path.display());
    }
    Ok(Some(path))
}

/// `mariadb-install-db` into `data`: root and the current user, both by unix_socket.
fn install_db(data: &Path) -> anyhow::Result<()> {
    let user = current_user()?;
    let mut cmd = Command::new(program("mariadb-install-db"));
    cmd.arg("--no-defaults");
    if is_root() {
        cmd.arg("--user=root");
    }
    cmd.arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=socket")
        .arg(format!("--auth-root-socket-user={user}"))
        .args(["--skip-test-db", "--innodb-log-file-size=16M"]);
    let out = cmd.output().context(
        "running mariadb-install-db (Debian package mariadb-server; `just deps` installs it)",
    )?;
    if !out.status.success() {
        bail!(
            "mariadb-install-db --datadir={} failed ({}):\n{}{}",
            data.display(),
            out.status,
            crate::tail(&String::from_utf8_lossy(&out.stdout), 20),
            crate::tail(&String::from_utf8_lossy(&out.stderr), 20)
        );
    }
    Ok(())
}

fn mariadbd_version() -> anyhow::Result<String> {
    let out = Command::new(program("mariadbd"))
        .arg("--version")
        .output()
        .context("running mariadbd --version (Debian package mariadb-server)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("no version in `mariadbd --version`: {text}"))
}

/// `name`, from /usr/sbin when it is not on PATH (mariadbd lives there).
fn program(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    if !on_path && sbin.is_file() {
        sbin
    } else {
        PathBuf::from(name)
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The current system user's name (`id -un`).
pub fn current_user() -> anyhow::Result<String> {
    static USER: OnceLock<Result<String, String>> = OnceLock::new();
    USER.get_or_init(|| {
        let out = Command::new("id")
            .arg("-un")
            .output()
            .map_err(|e| format!("running `id -un`: {e}"))?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || name.is_empty() {
            return Err("`id -un` names no user".to_string());
        }
        Ok(name)
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Whether every thread of process `pid` (`/proc/PID/task`) is stopped (state `T`); false when
/// they cannot be read.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks {
        let tid = task
            .ok()
            .and_then(|t| t.file_name().to_str()?.parse::<u32>().ok());
        if tid.and_then(crate::process::process_state) != Some('T') {
            return false;
        }
        any = true;
    }
    any
}
