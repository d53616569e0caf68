//! Test harness: a fresh database per test on the MariaDB server of `scripts/with-test-db`, the
//! real onebox-app binary on a free loopback port, an HTTP client, and a private mariadbd for the
//! tests that take the database away.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use mysql_async::prelude::Queryable;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("onebox-app-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `url` (a server URL, with or without a database) pointing at database `db`.
pub fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The MariaDB server of `scripts/with-test-db`.
pub fn server_url() -> String {
    std::env::var("ONEBOX_TEST_MYSQL_URL").unwrap_or_else(|_| {
        panic!(
            "ONEBOX_TEST_MYSQL_URL is not set: run the tests through `scripts/with-test-db cargo test \
             --release -p onebox-app`, which starts a private MariaDB server"
        )
    })
}

/// A fresh, empty database of its own for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
    server: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::on(&server_url()).await
    }

    pub async fn on(server: &str) -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("t_{}_{n}_{nanos}", std::process::id());
        let mut conn = mysql_async::Conn::from_url(server).await.unwrap();
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        TestDb {
            url: with_db(server, &name),
            name,
            server: server.to_string(),
        }
    }

    /// A connection to this database.
    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url.as_str())
            .await
            .unwrap()
    }

    /// Runs `sql` on this database.
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(sql).await.unwrap();
        conn.disconnect().await.unwrap();
    }

    /// The first column of the first row of `sql`.
    pub async fn value<T: mysql_async::prelude::FromValue + Send + 'static>(
        &self,
        sql: &str,
    ) -> Option<T> {
        let mut conn = self.conn().await;
        let v: Option<T> = conn.query_first(sql).await.unwrap();
        conn.disconnect().await.unwrap();
        v
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort, outside any runtime: the mariadb client drops the database.
        let socket = self
            .server
            .split("socket=")
            .nth(1)
            .map(|s| s.split('&').next().unwrap_or(s).to_string());
        if let Some(socket) = socket {
            let _ = Command::new("mariadb")
                .args(["--no-defaults", &format!("--socket={socket}"), "-e"])
                .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The path of the onebox-app binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_onebox-app")
}

/// A running onebox-app.
pub struct App {
    pub child: Child,
    pub base: String,
    pub dir: TempDir,
    pub config: PathBuf,
}

/// A site file with `app_extra` lines in its `[app]` section.
pub fn write_config(dir: &Path, app_extra: &str) -> PathBuf {
    let path = dir.join("site.toml");
    std::fs::write(
        &path,
        format!("[site]\ndomain = \"foobar.com\"\n\n[app]\n{app_extra}\n"),
    )
    .unwrap();
    path
}

impl App {
    /// Starts onebox-app on `db` with `app_extra` in its `[app]` section.
    pub fn start(db: &TestDb, app_extra: &str) -> App {
        Self::start_url(&db.url, app_extra)
    }

    pub fn start_url(url: &str, app_extra: &str) -> App {
        let dir = TempDir::new("app");
        let config = write_config(&dir.0, app_extra);
        match Self::try_start(url, &config, &dir) {
            Ok((child, base)) => App {
                child,
                base,
                dir,
                config,
            },
            Err(err) => panic!("onebox-app did not start: {err}"),
        }
    }

    /// Starts the binary; `Err(stderr)` when it exits before listening.
    pub fn try_start(url: &str, config: &Path, dir: &TempDir) -> Result<(Child, String), String> {
        let stderr = std::fs::File::create(dir.0.join("stderr.log")).unwrap();
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--database-url", url])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(line)) if line.contains("listening on ") => {
                let base = line
                    .split("listening on ")
                    .nth(1)
                    .unwrap()
                    .trim()
                    .to_string();
                // Keep draining stdout so the child never blocks on it.
                std::thread::spawn(move || for _ in lines {});
                Ok((child, base))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(std::fs::read_to_string(dir.0.join("stderr.log")).unwrap_or_default())
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the app wrote on standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client with its own cookie jar that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Sends `request`; a request that gets no answer at all fails the test.
pub async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap()
}

/// The status of the answer to `request`.
pub async fn status(request: reqwest::RequestBuilder) -> reqwest::StatusCode {
    send(request).await.status()
}

/// The body of the answer to `request`, as text (whatever its status).
pub async fn text(request: reqwest::RequestBuilder) -> String {
    send(request).await.text().await.unwrap()
}

/// The body of the answer to `request`, as JSON (whatever its status).
pub async fn json(request: reqwest::RequestBuilder) -> serde_json::Value {
    send(request).await.json().await.unwrap()
}

/// The header `name` of `answer`; fails the test when it is missing or not text.
pub fn header(answer: &reqwest::Response, name: &str) -> String {
    answer
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` header in the answer from {}", answer.url()))
        .to_str()
        .unwrap()
        .to_string()
}

/// The status of a JSON error answer and its `error` message ("" when there is none).
pub async fn error_of(answer: reqwest::Response) -> (u16, String) {
    let status = answer.status().as_u16();
    let v: serde_json::Value = answer.json().await.unwrap();
    (status, v["error"].as_str().unwrap_or_default().to_string())
}

/// `POST /api/login` as `user` with `password`, from `c` (not sent yet).
pub fn api_login(
    c: &reqwest::Client,
    app: &App,
    user: &str,
    password: &str,
) -> reqwest::RequestBuilder {
    c.post(app.url("/api/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
}

/// `POST /api/posts` of a new post, from `c` (not sent yet).
pub fn api_new_post(
    c: &reqwest::Client,
    app: &App,
    title: &str,
    body: &str,
    published: bool,
) -> reqwest::RequestBuilder {
    c.post(app.url("/api/posts"))
        .json(&serde_json::json!({"title": title, "body": body, "published": published}))
}

/// `POST` of the form `fields` to `path`, from `c` (not sent yet).
pub fn post_form(
    c: &reqwest::Client,
    app: &App,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    c.post(app.url(path)).form(fields)
}

/// `onebox-app --database-url DB_URL admin set-password USER`, not started yet (with the
/// binary's own log level, so that a test sees everything it could print).
pub fn set_password_command(db_url: &str, user: &str) -> Command {
    let mut command = Command::new(binary());
    command.args(["--database-url", db_url, "admin", "set-password", user]);
    command
}

/// Runs `onebox-app admin set-password USER` with `stdin` on its standard input.
pub fn run_set_password(db_url: &str, user: &str, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = set_password_command(db_url, user)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{stdin}").unwrap();
    child.wait_with_output().unwrap()
}

/// Sets `user`'s password with `onebox-app admin set-password` (password on standard input).
pub fn set_password(db_url: &str, user: &str, password: &str) {
    let out = run_set_password(db_url, user, password);
    assert!(
        out.status.success(),
        "set-password failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh database with user `admin` / `admin-password-1`, and the app running on it.
pub async fn app_with_admin(app_extra: &str) -> (TestDb, App) {
    app_with_admin_on(&server_url(), app_extra).await
}

/// [`app_with_admin`] on the MariaDB server at `server` (a URL without a database).
pub async fn app_with_admin_on(server: &str, app_extra: &str) -> (TestDb, App) {
    let db = TestDb::on(server).await;
    set_password(&db.url, "admin", "admin-password-1");
    let app = App::start(&db, app_extra);
    (db, app)
}

/// A client logged in as `admin` through the API.
pub async fn admin_client(app: &App) -> reqwest::Client {
    let c = client();
    let r = send(api_login(&c, app, "admin", "admin-password-1")).await;
    assert_eq!(r.status(), 200, "login: {}", r.text().await.unwrap());
    c
}

/// Creates a post through the API and returns its JSON.
pub async fn create_post(
    c: &reqwest::Client,
    app: &App,
    title: &str,
    body: &str,
    published: bool,
) -> serde_json::Value {
    let r = send(api_new_post(c, app, title, body, published)).await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// A MariaDB server of the test's own, for tests that stop and restart it.
pub struct PrivateMariadb {
    pub dir: TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl PrivateMariadb {
    pub fn start() -> PrivateMariadb {
        let dir = TempDir::new("mariadb");
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.0.join("data").display()));
        install.args(["--auth-root-authentication-method=socket", "--skip-test-db"]);
        if is_root() {
            install.arg("--user=root");
        }
        let out = install
            .output()
            .expect("mariadb-install-db (Debian package mariadb-server)");
        assert!(
            out.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = dir.0.join("m.sock");
        let mut db = PrivateMariadb {
            dir,
            socket,
            child: None,
        };
        db.resume();
        db
    }

    /// The server URL (no database).
    pub fn url(&self) -> String {
        format!(
            "mysql://{}@localhost/?socket={}",
            whoami(),
            self.socket.display()
        )
    }

    /// Starts (again) the server on its datadir and waits until it answers.
    pub fn resume(&mut self) {
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.0.join("data").display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--pid-file={}", self.dir.0.join("m.pid").display()))
            .arg(format!(
                "--log-error={}",
                self.dir.0.join("error.log").display()
            ))
            .args([
                "--skip-networking",
                "--innodb-buffer-pool-size=32M",
                "--skip-log-bin",
            ]);
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let ok = Command::new("mariadb-admin")
                .args([
                    "--no-defaults",
                    &format!("--socket={}", self.socket.display()),
                    "ping",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the private mariadbd did not come up: {}",
            std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
        );
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Kills the server (as a crash or an outage would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        self.kill();
    }
}

fn is_root() -> bool {
    whoami() == "root"
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
