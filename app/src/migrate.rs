//! Versioned schema migrations from `app/migrations/`, applied at start under a named lock.
//!
//! Each file `NNNN_name.sql` is one version. Its statements (separated by `;` at the end of a
//! line) run in order; only when all of them succeeded is the version recorded in
//! `schema_migrations`, so the recorded version is always the last one that was fully applied.
//! MySQL cannot roll back DDL, so a migration with several statements must be safe to run again
//! (`IF NOT EXISTS`, `INSERT IGNORE`).

use crate::db::{Classify, Db, DbError};
use mysql_async::prelude::Queryable;

/// One schema version.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version number, from the file name.
    pub version: u32,
    /// The file name under `app/migrations/`.
    pub file: &'static str,
    /// The SQL text.
    pub sql: &'static str,
}

/// Every migration, in order. A unit test checks this list against the folder.
#[cfg(not(feature = "expand-test-migration"))]
pub const MIGRATIONS: &[Migration] = &RELEASED;

/// The released migrations and one more, expand-only (a table and a nullable column), from
/// `app/migrations-test/`: the binary the VM suite deploys by `systemctl reload onebox-app` to show
/// a migration going into service while the previous version still serves. Test builds only.
#[cfg(feature = "expand-test-migration")]
pub const MIGRATIONS: &[Migration] = &[
    RELEASED[0],
    RELEASED[1],
    RELEASED[2],
    RELEASED[3],
    RELEASED[4],
    Migration {
        version: 6,
        file: "../migrations-test/0006_expand_test.sql",
        sql: include_str!("../migrations-test/0006_expand_test.sql"),
    },
];

/// The migrations of `app/migrations/`.
const RELEASED: [Migration; 5] = [
    Migration {
        version: 1,
        file: "0001_users.sql",
        sql: include_str!("../migrations/0001_users.sql"),
    },
    Migration {
        version: 2,
        file: "0002_sessions.sql",
        sql: include_str!("../migrations/0002_sessions.sql"),
    },
    Migration {
        version: 3,
        file: "0003_posts.sql",
        sql: include_str!("../migrations/0003_posts.sql"),
    },
    Migration {
        version: 4,
        file: "0004_settings.sql",
        sql: include_str!("../migrations/0004_settings.sql"),
    },
    Migration {
        version: 5,
        file: "0005_post_create_keys.sql",
        sql: include_str!("../migrations/0005_post_create_keys.sql"),
    },
];

/// The name of the MySQL lock held while migrating.
const LOCK_NAME: &str = "onebox-app.migrations";
/// How long to wait for another instance's migrations to finish, in seconds.
const LOCK_WAIT_SECONDS: u32 = 120;

/// Migrating the schema failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database could not be used.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Another instance held the lock for too long.
    #[error(
        "another onebox-app held the migration lock `{LOCK_NAME}` for more than {LOCK_WAIT_SECONDS}s"
    )]
    Locked,
    /// A statement of a migration failed; the schema stays at `recorded`.
    #[error(
        "migration app/migrations/{file} failed at statement {statement} (line {line}): {source}; \
         the database schema stays at version {recorded}"
    )]
    Failed {
        /// The migration file.
        file: &'static str,
        /// 1-based number of the failing statement in the file.
        statement: usize,
        /// 1-based line where that statement starts.
        line: usize,
        /// The version recorded in `schema_migrations`.
        recorded: u32,
        /// What the database said.
        source: mysql_async::Error,
    },
    /// The database has a newer schema than this binary knows.
    #[error(
        "the database schema is at version {found} but this onebox-app only knows versions up to \
         {known}; run a newer onebox-app"
    )]
    TooNew {
        /// The recorded version.
        found: u32,
        /// The newest version this binary has.
        known: u32,
    },
}

/// Brings the schema up to date; returns the versions applied now.
pub async fn migrate(db: &Db) -> Result<Vec<u32>, MigrateError> {
    let mut conn = db.conn().await?;
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, ?)", (LOCK_NAME, LOCK_WAIT_SECONDS))
        .await
        .classify(db)?;
    if got.flatten() != Some(1) {
        return Err(MigrateError::Locked);
    }
    let result = apply(db, &mut conn).await;
    // The lock is also released when the connection closes, should this fail.
    let _: Result<Option<Option<i64>>, _> = conn
        .exec_first("SELECT RELEASE_LOCK(?)", (LOCK_NAME,))
        .await;
    result
}

/// The recorded schema version: the highest version in `schema_migrations`, 0 for none.
pub async fn recorded_version(conn: &mut mysql_async::Conn) -> Result<u32, mysql_async::Error> {
    let version: Option<Option<u32>> = conn
        .query_first("SELECT MAX(version) FROM schema_migrations")
        .await?;
    Ok(version.flatten().unwrap_or(0))
}

async fn apply(db: &Db, conn: &mut mysql_async::Conn) -> Result<Vec<u32>, MigrateError> {
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
           version INT UNSIGNED NOT NULL PRIMARY KEY,
           file VARCHAR(255) NOT NULL,
           applied_at DATETIME(6) NOT NULL DEFAULT UTC_TIMESTAMP(6)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    )
    .await
    .classify(db)?;
    let mut recorded = recorded_version(conn).await.classify(db)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if recorded > known {
        return Err(MigrateError::TooNew {
            found: recorded,
            known,
        });
    }
    let mut applied = Vec::new();
    let start = recorded;
    for migration in MIGRATIONS.iter().filter(|m| m.version > start) {
        for (index, (line, statement)) in statements(migration.sql).into_iter().enumerate() {
            if let Err(err) = conn.query_drop(statement).await {
                return Err(match db.classify(err) {
                    DbError::Query(source) => MigrateError::Failed {
                        file: migration.file,
                        statement: index + 1,
                        line,
                        recorded,
                        source,
                    },
                    unavailable => MigrateError::Db(unavailable),
                });
            }
        }
        conn.exec_drop(
            "INSERT INTO schema_migrations (version, file) VALUES (?, ?)",
            (migration.version, migration.file),
        )
        .await
        .classify(db)?;
        recorded = migration.version;
        applied.push(migration.version);
        tracing::info!(
            version = migration.version,
            file = migration.file,
            "applied migration"
        );
    }
    Ok(applied)
}

/// Splits a migration into its statements with the line each starts on: a statement ends with
/// `;` at the end of a line; lines starting with `--` are comments.
fn statements(sql: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (number, line) in sql.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if current.is_empty() {
            start = number + 1;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let statement = current.trim().trim_end_matches(';').trim().to_string();
            if !statement.is_empty() {
                out.push((start, statement));
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push((start, rest.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_the_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = RELEASED.iter().map(|m| m.file).collect();
        assert_eq!(files, listed);
        for (i, m) in RELEASED.iter().enumerate() {
            assert_eq!(
                m.version as usize,
                i + 1,
                "versions are 1, 2, 3... without gaps"
            );
            assert!(
                m.file.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.file
            );
        }
    }

    #[test]
    fn splits_statements_with_their_lines() {
        let parts = statements("-- c\nCREATE TABLE a (\n x INT\n);\n\nINSERT INTO a VALUES (1);\n");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, 2);
        assert!(parts[0].1.starts_with("CREATE TABLE a"));
        assert_eq!(parts[1], (6, "INSERT INTO a VALUES (1)".to_string()));
    }
}
