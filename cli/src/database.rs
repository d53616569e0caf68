//! The app's MariaDB database and its user, made over the server's unix socket as the user
//! running `onebox provision` (root on a server: MariaDB's root authenticates by unix_socket).

use mysql_async::prelude::Queryable;
use onebox_site::SiteFile;
use std::path::PathBuf;
use std::time::Duration;

/// How long a command waits for MariaDB to accept connections (it may still be starting).
pub const WAIT: Duration = Duration::from_secs(120);
/// How long the first boot's provisioning steps wait for it: they are not ordered after
/// mariadb.service (so they start while it starts), and a first start on a slow VPS may take
/// minutes (MariaDB's unit gives it 15).
pub const FIRST_BOOT_WAIT: Duration = Duration::from_secs(15 * 60);
/// How often a connection is tried while MariaDB is not there yet.
const RETRY: Duration = Duration::from_millis(100);

/// The database to make, from the site file's `[app] database_url`.
#[derive(Debug, Clone)]
pub struct DbPlan {
    /// MariaDB's unix socket.
    pub socket: PathBuf,
    /// The database name.
    pub database: String,
    /// The app's database user (unix_socket authentication: the system user of that name).
    pub app_user: String,
    /// The user this command connects as.
    pub admin_user: String,
    /// How long [`DbPlan::connect`] waits for MariaDB (default 2 minutes).
    pub wait: Duration,
}

impl DbPlan {
    /// The plan for `site`'s `[app] database_url`: a unix socket URL without a password, with a
    /// database and user name made of letters, digits, `_`, `-` (and `.` in a user name).
    pub fn from_site(site: &SiteFile) -> Result<DbPlan, String> {
        let url = site.app.resolved_database_url();
        let key = "app.database_url";
        if url.has_password() {
            return Err(format!(
                "{key} `{url}`: provision makes a unix_socket user, with no password: remove the password, or make the database yourself and use --no-database"
            ));
        }
        let socket = url.socket().ok_or_else(|| {
            format!("{key} `{url}`: provision works over MariaDB's unix socket: add ?socket=/run/mysqld/mysqld.sock, or use --no-database")
        })?;
        let database = url.database().unwrap_or_default();
        let app_user = url.user().unwrap_or_default();
        let ok = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c)
                })
        };
        if !ok(&database, &[]) {
            return Err(format!(
                "{key}: the database name `{}` must be 1 to 64 letters, digits, `_` or `-`",
                database.escape_debug()
            ));
        }
        if !ok(&app_user, &['.']) {
            return Err(format!(
                "{key}: the user name `{}` must be 1 to 64 letters, digits, `_`, `-` or `.`",
                app_user.escape_debug()
            ));
        }
        Ok(DbPlan {
            socket,
            database,
            app_user,
            admin_user: crate::provision::current_user(),
            wait: WAIT,
        })
    }

    /// The same plan, waiting `wait` for MariaDB.
    pub fn waiting(self, wait: Duration) -> DbPlan {
        DbPlan { wait, ..self }
    }

    /// Connects as the admin user, waiting for MariaDB to come up (trying every 0.1 s).
    pub async fn connect(&self) -> anyhow::Result<mysql_async::Conn> {
        let opts = mysql_async::OptsBuilder::default()
            .socket(Some(self.socket.display().to_string()))
            .user(Some(self.admin_user.clone()));
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            match mysql_async::Conn::new(opts.clone()).await {
                Ok(conn) => return Ok(conn),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing_wait(&self.socket, &e);
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => anyhow::bail!(
                    "MariaDB at {} did not accept {} within {} s: {e}",
                    self.socket.display(),
                    self.admin_user,
                    self.wait.as_secs()
                ),
            }
        }
    }

    /// Whether the app's `users` table has `name` (false when the table does not exist yet).
    pub async fn user_exists(&self, name: &str) -> anyhow::Result<bool> {
        let mut conn = self.connect().await?;
        let sql = format!(
            "SELECT COUNT(*) FROM `{}`.users WHERE username = ?",
            self.database
        );
        let found: Result<Option<u64>, _> = conn.exec_first(sql, (name,)).await;
        let _ = conn.disconnect().await;
        match found {
            Ok(n) => Ok(n.unwrap_or(0) > 0),
            // 1146: no such table (the app has not migrated yet).
            Err(mysql_async::Error::Server(e)) if e.code == 1146 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn tracing_wait(socket: &std::path::Path, e: &mysql_async::Error) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "onebox provision: waiting for MariaDB at {}: {e}",
            socket.display()
        );
    }
}

/// Makes the database and, unless it is the admin user itself, the app's user (unix_socket
/// authentication, all privileges on that database only). Idempotent.
pub async fn create(db: &DbPlan) -> anyhow::Result<()> {
    let mut conn = db.connect().await?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        db.database
    ))
    .await?;
    if db.app_user != db.admin_user {
        conn.query_drop(format!(
            "CREATE USER IF NOT EXISTS '{}'@'localhost' IDENTIFIED VIA unix_socket",
            db.app_user
        ))
        .await?;
        conn.query_drop(format!(
            "GRANT ALL PRIVILEGES ON `{}`.* TO '{}'@'localhost'",
            db.database, db.app_user
        ))
        .await?;
    }
    conn.disconnect().await?;
    println!(
        "database `{}` and its user {} ready (unix_socket, {})",
        db.database,
        db.app_user,
        db.socket.display()
    );
    Ok(())
}
