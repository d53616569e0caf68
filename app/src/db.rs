//! The connection pool, with a one-second limit on reaching the database, a bounded wait for a
//! database that is restarting, and self-healing after the database went away.
//!
//! An outage starts with the first connection-level failure. For its first
//! `[app] database_wait_secs`, a request that needs a connection waits for the database to come
//! back (a planned `systemctl restart mariadb` takes a few seconds) instead of answering 503; once
//! the outage is older than that, requests answer 503 at once until a connection succeeds again.

use crate::metrics::{DbErrorKind, DbErrors};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a request waits for a database connection before answering 503.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// After a connection-level failure, connections taken from the pool are pinged first for this
/// long, so that connections left over from before a database restart are discarded instead of
/// failing a request each.
const SUSPECT_WINDOW: Duration = Duration::from_secs(30);

/// How many times [`Db::retrying`] runs one operation at most while the database comes back.
/// Each try after the first waits until the database answers ([`Db::conn`]), but may still draw
/// another pooled connection the same restart or kill closed (the pool holds up to 32): 3 tries
/// failed once so in a CI run of the kill test (1 of 4,292 reads). The outage's wait bounds the
/// tries in time.
pub const TRIES: u32 = 8;

/// A database error, sorted by what the caller should answer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached right now (down, restarting, connection lost, too slow).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database answered with an error for this query.
    #[error("the database refused the query: {0}")]
    Query(#[from] mysql_async::Error),
}

/// The database URL is not usable.
#[derive(Debug, thiserror::Error)]
#[error("the database URL `{url}` is not valid: {source}")]
pub struct UrlError {
    /// The URL with any password hidden.
    url: String,
    /// What the driver said.
    source: mysql_async::UrlError,
}

/// A pool of connections to the site's database.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// Errors by kind, for the metrics.
    errors: DbErrors,
    /// When the last connection-level failure happened, in milliseconds since `epoch`.
    last_failure_ms: Arc<AtomicU64>,
    /// When the current outage began (the first failure since the last success), in
    /// milliseconds since `epoch`; `u64::MAX` while the database answers.
    outage_since_ms: Arc<AtomicU64>,
    /// How long into an outage requests still wait for the database.
    wait: Duration,
    epoch: Instant,
}

impl Db {
    /// Makes a pool for `url`. Nothing is connected until the first use.
    ///
    /// Besides `mysql://user:password@host:port/database`, the URL may name a unix socket with
    /// `?socket=/run/mysqld/mysqld.sock`; with MariaDB's `unix_socket` authentication no password
    /// is needed at all.
    #[cfg(test)]
    pub fn new(url: &str) -> Result<Db, UrlError> {
        Self::with_wait(url, Duration::ZERO)
    }

    /// Makes a pool for `url` (see the tests' `Db::new`), with requests waiting up to `wait` into an outage for the database to be back.
    pub fn with_wait(url: &str, wait: Duration) -> Result<Db, UrlError> {
        let opts = Opts::from_url(url).map_err(|source| UrlError {
            url: hide_password(url),
            source,
        })?;
        let pool_opts = PoolOpts::default()
            .with_constraints(PoolConstraints::new(0, 32).unwrap_or_default())
            .with_inactive_connection_ttl(Duration::from_secs(60))
            .with_ttl_check_interval(Duration::from_secs(30));
        let opts = OptsBuilder::from_opts(opts)
            .pool_opts(pool_opts)
            .init(vec!["SET time_zone = '+00:00'"]);
        Ok(Db {
            pool: Pool::new(opts),
            errors: DbErrors::default(),
            last_failure_ms: Arc::new(AtomicU64::new(u64::MAX)),
            outage_since_ms: Arc::new(AtomicU64::new(u64::MAX)),
            wait,
            epoch: Instant::now(),
        })
    }

    /// A connection. While the database is unreachable and the outage is younger than the
    /// configured wait, this waits for it to come back (trying again every 100 to 500 ms); past
    /// that, [`DbError::Unavailable`] within [`CONNECT_TIMEOUT`].
    pub async fn conn(&self) -> Result<Conn, DbError> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.conn_now().await {
                Ok(conn) => return Ok(conn),
                Err(DbError::Unavailable(why)) => {
                    let Some(left) = self.wait_left() else {
                        return Err(DbError::Unavailable(why));
                    };
                    tokio::time::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Runs `op` on a connection ([`Db::conn`]), and runs it again while it fails because the
    /// database went away under it ([`DbError::Unavailable`]: a restart closed its connection,
    /// or it was killed), once a connection succeeds again, on that connection: up to [`TRIES`]
    /// times, for as long as the outage's wait (`[app] database_wait_secs`) counted from this
    /// call's own first failure. `op` gets the connection and the number of tries before it (0
    /// the first time) and must be safe to run again after a failure at any point, the commit
    /// included, whose outcome a closed connection leaves unknown: idempotent, or keyed so that
    /// it finds what an earlier try made ([`crate::model::create_post`]). Counted from the
    /// call's own failure, not the outage's start ([`Db::wait_left`]): another request's
    /// connection, taken between this one's failure and its check, can end the outage in
    /// between (the closing server answers on some connections while it closes others).
    pub async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, DbError>
    where
        F: FnMut(Conn, u32) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let mut until = None;
        let mut tries = 0;
        let mut conn = self.conn().await;
        loop {
            let failed = match conn {
                Ok(conn) => match op(conn, tries).await {
                    Err(DbError::Unavailable(why)) => why,
                    done => return done,
                },
                Err(DbError::Unavailable(why)) => why,
                Err(err) => return Err(err),
            };
            tries += 1;
            if tries >= TRIES {
                return Err(DbError::Unavailable(failed));
            }
            if tries == 1 {
                tracing::warn!(
                    "the database went away under a query ({failed}): trying again once it answers"
                );
            }
            let until = *until.get_or_insert_with(|| tokio::time::Instant::now() + self.wait);
            // Waits until the database answers again, and the next try runs on that connection;
            // past the outage's wait, `conn` fails at once.
            conn = match tokio::time::timeout_at(until, self.conn()).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(_)) | Err(_) => return Err(DbError::Unavailable(failed)),
            };
        }
    }

    /// How much longer requests may wait for the database in the current outage: `None` when
    /// there is no outage or it is older than the configured wait.
    pub fn wait_left(&self) -> Option<Duration> {
        let since = self.outage_since_ms.load(Ordering::Relaxed);
        if since == u64::MAX {
            return None;
        }
        let now = self.now_ms();
        let end = since.saturating_add(u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX));
        (now < end).then(|| Duration::from_millis(end - now))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// A connection at once, or [`DbError::Unavailable`] within [`CONNECT_TIMEOUT`] (no waiting
    /// for a restart: the health check uses this).
    pub async fn conn_now(&self) -> Result<Conn, DbError> {
        let conn = self.try_conn().await?;
        // The database answers: any outage is over.
        self.outage_since_ms.store(u64::MAX, Ordering::Relaxed);
        Ok(conn)
    }

    async fn try_conn(&self) -> Result<Conn, DbError> {
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            let got = tokio::time::timeout_at(deadline, self.pool.get_conn()).await;
            let mut conn = match got {
                Ok(Ok(conn)) => conn,
                Ok(Err(err)) => return Err(self.classify(err)),
                Err(_) => {
                    self.note_failure();
                    return Err(DbError::Unavailable(format!(
                        "no connection within {} ms",
                        CONNECT_TIMEOUT.as_millis()
                    )));
                }
            };
            if !self.suspect() {
                return Ok(conn);
            }
            match tokio::time::timeout_at(deadline, conn.ping()).await {
                Ok(Ok(())) => return Ok(conn),
                // A connection from before the outage: drop it and take the next one.
                Ok(Err(_)) => continue,
                Err(_) => {
                    self.note_failure();
                    return Err(DbError::Unavailable(
                        "the database did not answer a ping".into(),
                    ));
                }
            }
        }
    }

    /// Whether the database answers a trivial query right now.
    pub async fn healthy(&self) -> Result<(), DbError> {
        let mut conn = self.conn_now().await?;
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        match tokio::time::timeout_at(deadline, conn.query_drop("DO 1")).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.classify(err)),
            Err(_) => Err(DbError::Unavailable(
                "the database did not answer `DO 1`".into(),
            )),
        }
    }

    /// Sorts a driver error into unavailable (503) or a query error (500), remembering
    /// connection-level failures.
    pub fn classify(&self, err: mysql_async::Error) -> DbError {
        let unavailable = match &err {
            mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
            // Shutdown in progress, connection killed, server gone away, lost connection.
            mysql_async::Error::Server(server) => {
                matches!(server.code, 1053 | 1927 | 2006 | 2013 | 1040 | 1203)
            }
            _ => false,
        };
        if unavailable {
            self.note_failure();
            DbError::Unavailable(err.to_string())
        } else {
            self.errors.count(DbErrorKind::query);
            DbError::Query(err)
        }
    }

    /// The error counters, for [`crate::metrics::Metrics::new`].
    pub fn errors(&self) -> &DbErrors {
        &self.errors
    }

    /// Remembers a connection-level failure (and counts it as `unavailable`).
    fn note_failure(&self) {
        self.errors.count(DbErrorKind::unavailable);
        let now = self.now_ms();
        self.last_failure_ms.store(now, Ordering::Relaxed);
        // The first failure since the database last answered starts the outage.
        let _ = self.outage_since_ms.compare_exchange(
            u64::MAX,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn suspect(&self) -> bool {
        let last = self.last_failure_ms.load(Ordering::Relaxed);
        if last == u64::MAX {
            return false;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        now.saturating_sub(last) < u64::try_from(SUSPECT_WINDOW.as_millis()).unwrap_or(0)
    }

    /// Closes every connection.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}

/// How long one query may take before the request answers 503: a database that accepts
/// connections but does not answer (frozen, overloaded, half-dead network) counts as down.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// A query future limited to [`QUERY_TIMEOUT`], with driver errors sorted by [`Db::classify`].
pub trait Timed<T>: Future<Output = Result<T, mysql_async::Error>> + Sized {
    /// Runs the query; a timeout is [`DbError::Unavailable`].
    fn timed(self, db: &Db) -> impl Future<Output = Result<T, DbError>> {
        let db = db.clone();
        async move {
            match tokio::time::timeout(QUERY_TIMEOUT, self).await {
                Ok(result) => result.map_err(|err| db.classify(err)),
                Err(_) => {
                    db.note_failure();
                    Err(DbError::Unavailable(format!(
                        "the database did not answer within {} ms",
                        QUERY_TIMEOUT.as_millis()
                    )))
                }
            }
        }
    }
}

impl<T, F: Future<Output = Result<T, mysql_async::Error>>> Timed<T> for F {}

/// A result from a query, with driver errors sorted by [`Db::classify`].
pub trait Classify<T> {
    /// Sorts the error of `self` with `db`.
    fn classify(self, db: &Db) -> Result<T, DbError>;
}

impl<T> Classify<T> for Result<T, mysql_async::Error> {
    fn classify(self, db: &Db) -> Result<T, DbError> {
        self.map_err(|err| db.classify(err))
    }
}

/// `url` with the password, if any, replaced by `***`.
fn hide_password(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords() {
        assert_eq!(hide_password("mysql://u:secret@h/db"), "mysql://u:***@h/db");
        assert_eq!(
            hide_password("mysql://u@h/db?socket=/s"),
            "mysql://u@h/db?socket=/s"
        );
    }

    #[tokio::test]
    async fn socket_urls_are_accepted() {
        let db = Db::new("mysql://onebox@localhost/onebox?socket=/run/mysqld/mysqld.sock");
        assert!(db.is_ok());
        let err = Db::new("postgres://x:pw@h/db").err().expect("bad scheme");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}
