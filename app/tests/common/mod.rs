//! Test harness: a fresh database per test on the MariaDB server the tests share, the real
//! onebox-app binary on a free loopback port, an HTTP client, and a private mariadbd for the
//! tests that take the database away (servers and processes from the test kit, onebox-testkit).
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

pub mod edge;

use mysql_async::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A directory removed when dropped; `.0` is its path.
pub struct TempDir(pub PathBuf, onebox_testkit::tempfile::TempDir);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = onebox_testkit::temp_dir(&format!("app-{what}"));
        TempDir(dir.path().to_path_buf(), dir)
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

/// The MariaDB server the tests of this process share (the test kit's: a private mariadbd
/// started at the first call and killed with the process, or `$ONEBOX_TEST_MYSQL_URL`'s).
pub fn server_url() -> String {
    onebox_testkit::MariaDb::shared().url()
}

/// A fresh, empty database of its own for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
    db: onebox_testkit::Database,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::of(onebox_testkit::MariaDb::shared())
    }

    /// A database on the server at `server` (a URL without a database).
    pub async fn on(server: &str) -> TestDb {
        Self::of(&onebox_testkit::MariaDb::connect(server).unwrap())
    }

    fn of(server: &onebox_testkit::MariaDb) -> TestDb {
        let db = server
            .database()
            .unwrap_or_else(|e| panic!("creating a test database: {e:#}"));
        TestDb {
            name: db.name().to_string(),
            url: db.url().to_string(),
            db,
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

/// The path of the onebox-app binary under test.
pub fn binary() -> PathBuf {
    onebox_testkit::program("onebox-app", env!("CARGO_BIN_EXE_onebox-app"))
}

/// A running onebox-app, killed on drop.
pub struct App {
    pub child: onebox_testkit::ChildGuard,
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

    /// Starts the binary; `Err(its output)` when it exits before listening.
    pub fn try_start(
        url: &str,
        config: &Path,
        dir: &TempDir,
    ) -> Result<(onebox_testkit::ChildGuard, String), String> {
        let mut cmd = Command::new(binary());
        cmd.arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--database-url", url])
            .env("RUST_LOG", "warn");
        let log = dir.0.join("stderr.log");
        let mut child = onebox_testkit::ChildGuard::spawn(cmd, &log).unwrap();
        let listening = || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .find_map(|line| Some(line.split("listening on ").nth(1)?.trim().to_string()))
        };
        match child.try_wait_until(Duration::from_secs(60), "onebox-app to listen", || {
            listening().is_some()
        }) {
            Ok(()) => Ok((child, listening().unwrap_or_default())),
            Err(_) => {
                child.kill();
                Err(child.log_text())
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the app wrote (standard output and error) so far.
    pub fn stderr(&self) -> String {
        self.child.log_text()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.running()
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

/// A MariaDB server of the test's own, for tests that stop and restart it: the test kit's
/// [`onebox_testkit::MariaDb`] (`url()`, `kill()`, `freeze()`, `thaw()`, `restart()` ...).
pub struct PrivateMariadb(onebox_testkit::MariaDb);

impl std::ops::Deref for PrivateMariadb {
    type Target = onebox_testkit::MariaDb;
    fn deref(&self) -> &onebox_testkit::MariaDb {
        &self.0
    }
}

impl std::ops::DerefMut for PrivateMariadb {
    fn deref_mut(&mut self) -> &mut onebox_testkit::MariaDb {
        &mut self.0
    }
}

impl PrivateMariadb {
    pub fn start() -> PrivateMariadb {
        PrivateMariadb(
            onebox_testkit::MariaDb::start()
                .unwrap_or_else(|e| panic!("the private mariadbd did not start: {e:#}")),
        )
    }

    /// Starts (again) the server on its datadir and waits until it answers.
    pub fn resume(&mut self) {
        self.0
            .resume()
            .unwrap_or_else(|e| panic!("the private mariadbd did not come back: {e:#}"));
    }
}

/// Kills every connection of the server `admin` is connected to but its own (`KILL
/// CONNECTION`, as a restart's shutdown closes them one by one); returns how many were killed.
pub async fn kill_connections(admin: &mut mysql_async::Conn) -> usize {
    let ids: Vec<u64> = admin
        .query("SELECT id FROM information_schema.processlist WHERE id <> CONNECTION_ID() AND command <> 'Daemon'")
        .await
        .unwrap();
    let mut killed = 0;
    for id in ids {
        if admin
            .query_drop(format!("KILL CONNECTION {id}"))
            .await
            .is_ok()
        {
            killed += 1;
        }
    }
    killed
}
