//! The site's data in MySQL: posts, settings, users and sessions. Parameterised queries only.
//!
//! Every function runs its queries through [`Db::retrying`]: when the database goes away under
//! them (a restart closes every connection, or one is killed), they run again once it answers,
//! within `[app] database_wait_secs`, so a request in flight rides out a MariaDB restart, a
//! write as well as a read. Each is written so that running again is safe whatever the earlier
//! try did, its commit included: reads and updates to given values as they are, a new post and
//! a new session kept once by their key if the earlier try made them.

use crate::db::{Db, DbError, Timed};
use mysql_async::prelude::Queryable;
use serde::Serialize;

/// A post as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Post {
    /// The post's id.
    pub id: u64,
    /// The title, plain text.
    pub title: String,
    /// The body, Markdown.
    pub body: String,
    /// Whether the public pages show it.
    pub published: bool,
    /// When it was created, UTC, RFC 3339.
    pub created_at: String,
    /// When it was last changed, UTC, RFC 3339.
    pub updated_at: String,
}

/// The site's settings.
#[derive(Debug, Clone, Serialize)]
pub struct SiteSettings {
    /// The site's title.
    pub title: String,
    /// A line describing the site.
    pub description: String,
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct SessionUser {
    /// The user name.
    pub username: String,
    /// The CSRF token of this session's forms.
    pub csrf_token: String,
}

type PostRow = (u64, String, String, bool, String, String);

const POST_COLUMNS: &str = "id, title, body, published, \
    DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%sZ'), DATE_FORMAT(updated_at, '%Y-%m-%dT%H:%i:%sZ')";

fn post((id, title, body, published, created_at, updated_at): PostRow) -> Post {
    Post {
        id,
        title,
        body,
        published,
        created_at,
        updated_at,
    }
}

/// One page of posts, newest first (`published_only` for the public), and whether there are more.
pub async fn list_posts(
    db: &Db,
    published_only: bool,
    page: u32,
    per_page: u32,
) -> Result<(Vec<Post>, bool), DbError> {
    db.retrying(|mut conn, _| async move {
        let offset = u64::from(page.saturating_sub(1)) * u64::from(per_page);
        let filter = if published_only {
            "WHERE published = TRUE"
        } else {
            ""
        };
        let rows: Vec<PostRow> = conn
            .exec(
                format!(
                    "SELECT {POST_COLUMNS} FROM posts {filter} ORDER BY id DESC LIMIT ? OFFSET ?"
                ),
                (u64::from(per_page) + 1, offset),
            )
            .timed(db)
            .await?;
        let more = rows.len() > per_page as usize;
        Ok((
            rows.into_iter().take(per_page as usize).map(post).collect(),
            more,
        ))
    })
    .await
}

/// The post `id`, if it exists (and is published, with `published_only`).
pub async fn get_post(db: &Db, id: u64, published_only: bool) -> Result<Option<Post>, DbError> {
    db.retrying(|mut conn, _| async move {
        let filter = if published_only {
            "AND published = TRUE"
        } else {
            ""
        };
        let row: Option<PostRow> = conn
            .exec_first(
                format!("SELECT {POST_COLUMNS} FROM posts WHERE id = ? {filter}"),
                (id,),
            )
            .timed(db)
            .await?;
        Ok(row.map(post))
    })
    .await
}

/// Creates a post and returns it, exactly once even when the database goes away as it commits,
/// or the client sends the same creation again.
///
/// The post is made with a key (`posts.create_key`, unique): one made from the client's own and
/// the fields ([`create_key`]: the API's `Idempotency-Key`, the admin form's `create_key`), or a
/// random one. A try after one whose outcome was lost ([`Db::retrying`]: the connection closed,
/// or the query timed out while the server went on with it), or a request sent again with the
/// same client key, inserts the same key again: if that key's post is there (or is being
/// committed: the insert waits for it), the insert becomes a no-op that returns that post's id
/// (`LAST_INSERT_ID(id)`), so no second post is made, and the post is returned as it is now.
pub async fn create_post(
    db: &Db,
    key: Option<[u8; 16]>,
    title: &str,
    body: &str,
    published: bool,
) -> Result<Post, DbError> {
    let key = match key {
        Some(key) => key,
        None => crate::password::random_bytes::<16>()
            .map_err(|e| DbError::Unavailable(format!("no key for the new post: {e}")))?,
    };
    let id = db
        .retrying(|mut conn, _| async move {
            conn.exec_drop(
                "INSERT INTO posts (title, body, published, create_key) VALUES (?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)",
                (title, body, published, &key[..]),
            )
            .timed(db)
            .await?;
            // A row inserted reports its new id; a duplicate key, the id that
            // `LAST_INSERT_ID(id)` set: the earlier try's post.
            conn.last_insert_id().filter(|&id| id > 0).ok_or_else(|| {
                DbError::Query(mysql_async::Error::Other(
                    "the database reported no id for the new post".into(),
                ))
            })
        })
        .await?;
    get_post(db, id, false)
        .await?
        .ok_or_else(|| DbError::Unavailable("the new post vanished".into()))
}

/// The key a post is stored with when `username` creates it with the client's key
/// `client_key` and these fields: the first 16 bytes of SHA-256 over `scope` (where the key came
/// from), the user, the key and the fields. So one user's key never finds another's post, and
/// the same key sent with other fields (a form sent back to, changed and sent again; a client
/// reusing a key) makes a new post rather than returning the old one and losing what was sent.
pub fn create_key(
    scope: &str,
    username: &str,
    client_key: &str,
    (title, body, published): (&str, &str, bool),
) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    let published = if published { "1" } else { "0" };
    for part in [scope, username, client_key, title, body, published] {
        // Each part with its length first: no two lists of parts hash alike.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest: [u8; 32] = hash.finalize().into();
    let mut key = [0u8; 16];
    key.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    key
}

/// Replaces the post `id`; `None` when there is no such post. Tried again as it is (the same
/// values) when the database goes away under it.
pub async fn update_post(
    db: &Db,
    id: u64,
    title: &str,
    body: &str,
    published: bool,
) -> Result<Option<Post>, DbError> {
    let found = db.retrying(|mut conn, _| async move {
        let found: Option<u64> = conn
            .exec_first("SELECT id FROM posts WHERE id = ?", (id,))
            .timed(db)
            .await?;
        if found.is_none() {
            return Ok(false);
        }
        conn.exec_drop(
            "UPDATE posts SET title = ?, body = ?, published = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ?",
            (title, body, published, id),
        )
        .timed(db)
        .await?;
        Ok(true)
    })
    .await?;
    if !found {
        return Ok(None);
    }
    get_post(db, id, false).await
}

/// Publishes or unpublishes the post `id`; false when there is no such post.
pub async fn set_published(db: &Db, id: u64, published: bool) -> Result<bool, DbError> {
    db.retrying(|mut conn, _| async move {
        conn.exec_drop(
            "UPDATE posts SET published = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ?",
            (published, id),
        )
        .timed(db)
        .await?;
        let found: Option<u64> = conn
            .exec_first("SELECT id FROM posts WHERE id = ?", (id,))
            .timed(db)
            .await?;
        Ok(found.is_some())
    })
    .await
}

/// Deletes the post `id`; false when there was no such post. The first try that reaches the
/// database looks the post up, and only deletes one that is there. A try after one whose
/// `DELETE` went out and whose outcome a closed connection left unknown finds the post gone
/// either way, and says it was deleted, as the post was there before that `DELETE`; a post that
/// was never there stays a `false` whichever try finds it so.
pub async fn delete_post(db: &Db, id: u64) -> Result<bool, DbError> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    // Whether the post was there, once a try's lookup has answered.
    let there = OnceLock::new();
    // Whether a try has sent the `DELETE`.
    let sent = AtomicBool::new(false);
    let (there, sent) = (&there, &sent);
    db.retrying(|mut conn, _| async move {
        let was_there = match there.get() {
            Some(&was_there) => was_there,
            None => {
                // No `DELETE` went out before this lookup answered: it sees the post as it was.
                let row: Option<u64> = conn
                    .exec_first("SELECT id FROM posts WHERE id = ?", (id,))
                    .timed(db)
                    .await?;
                *there.get_or_init(|| row.is_some())
            }
        };
        if !was_there {
            return Ok(false);
        }
        let sent_before = sent.swap(true, Ordering::Relaxed);
        conn.exec_drop("DELETE FROM posts WHERE id = ?", (id,))
            .timed(db)
            .await?;
        Ok(conn.affected_rows() > 0 || sent_before)
    })
    .await
}

/// The site's settings.
pub async fn settings(db: &Db) -> Result<SiteSettings, DbError> {
    db.retrying(|mut conn, _| async move { settings_on(&mut conn, db).await })
        .await
}

/// The site's settings, on `conn` (empty before any were set).
async fn settings_on(conn: &mut mysql_async::Conn, db: &Db) -> Result<SiteSettings, DbError> {
    let row: Option<(String, String)> = conn
        .query_first("SELECT title, description FROM settings WHERE id = 1")
        .timed(db)
        .await?;
    let (title, description) = row.unwrap_or_default();
    Ok(SiteSettings { title, description })
}

/// Replaces the site's settings.
pub async fn set_settings(db: &Db, title: &str, description: &str) -> Result<(), DbError> {
    db.retrying(|mut conn, _| async move {
        conn.exec_drop(
            "INSERT INTO settings (id, title, description) VALUES (1, ?, ?) \
             ON DUPLICATE KEY UPDATE title = VALUES(title), description = VALUES(description)",
            (title, description),
        )
        .timed(db)
        .await
    })
    .await
}

/// The id and password hash of `username`.
pub async fn user_hash(db: &Db, username: &str) -> Result<Option<(u64, String)>, DbError> {
    db.retrying(|mut conn, _| async move {
        conn.exec_first(
            "SELECT id, password_hash FROM users WHERE username = ?",
            (username,),
        )
        .timed(db)
        .await
    })
    .await
}

/// Creates `username` or changes their password, ending their sessions.
pub async fn set_password(db: &Db, username: &str, hash: &str) -> Result<(), DbError> {
    db.retrying(|mut conn, _| async move {
        conn.exec_drop(
            "INSERT INTO users (username, password_hash) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE password_hash = VALUES(password_hash)",
            (username, hash),
        )
        .timed(db)
        .await?;
        conn.exec_drop(
            "DELETE s FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.username = ?",
            (username,),
        )
        .timed(db)
        .await
    })
    .await
}

/// Stores a new session for `user_id`, valid for `lifetime_secs` seconds. A try after one whose
/// commit a closed connection left unknown finds the session stored (its token is random) and
/// leaves it.
pub async fn create_session(
    db: &Db,
    token_hash: &[u8],
    user_id: u64,
    csrf_token: &str,
    lifetime_secs: u64,
) -> Result<(), DbError> {
    db.retrying(|mut conn, _| async move {
        conn.query_drop("DELETE FROM sessions WHERE expires_at < UTC_TIMESTAMP(6) LIMIT 1000")
            .timed(db)
            .await?;
        conn.exec_drop(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at) \
             VALUES (?, ?, ?, UTC_TIMESTAMP(6) + INTERVAL ? SECOND) \
             ON DUPLICATE KEY UPDATE token_hash = token_hash",
            (token_hash, user_id, csrf_token, lifetime_secs),
        )
        .timed(db)
        .await
    })
    .await
}

/// The user of the live session whose token hashes to `token_hash`.
pub async fn session_user(db: &Db, token_hash: &[u8]) -> Result<Option<SessionUser>, DbError> {
    db.retrying(|mut conn, _| async move {
        let row: Option<(String, String)> = conn
            .exec_first(
                "SELECT u.username, s.csrf_token FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = ? AND s.expires_at > UTC_TIMESTAMP(6)",
                (token_hash,),
            )
            .timed(db)
            .await?;
        Ok(row.map(|(username, csrf_token)| SessionUser {
            username,
            csrf_token,
        }))
    })
    .await
}

/// Ends the session whose token hashes to `token_hash`.
pub async fn delete_session(db: &Db, token_hash: &[u8]) -> Result<(), DbError> {
    db.retrying(|mut conn, _| async move {
        conn.exec_drop("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
            .timed(db)
            .await
    })
    .await
}

/// The settings and one page of published posts (newest first) on one connection, and whether
/// there are more.
pub async fn home(
    db: &Db,
    page: u32,
    per_page: u32,
) -> Result<(SiteSettings, Vec<Post>, bool), DbError> {
    db.retrying(|mut conn, _| async move {
        let site = settings_on(&mut conn, db).await?;
        let offset = u64::from(page.saturating_sub(1)) * u64::from(per_page);
        let rows: Vec<PostRow> = conn
            .exec(
                format!("SELECT {POST_COLUMNS} FROM posts WHERE published = TRUE ORDER BY id DESC LIMIT ? OFFSET ?"),
                (u64::from(per_page) + 1, offset),
            )
            .timed(db)
            .await?;
        let more = rows.len() > per_page as usize;
        let posts = rows.into_iter().take(per_page as usize).map(post).collect();
        Ok((site, posts, more))
    })
    .await
}

/// The settings and the published post `id`, on one connection.
pub async fn site_and_post(db: &Db, id: u64) -> Result<(SiteSettings, Option<Post>), DbError> {
    db.retrying(|mut conn, _| async move {
        let site = settings_on(&mut conn, db).await?;
        let post: Option<PostRow> = conn
            .exec_first(
                format!("SELECT {POST_COLUMNS} FROM posts WHERE id = ? AND published = TRUE"),
                (id,),
            )
            .timed(db)
            .await?;
        Ok((site, post.map(post_from)))
    })
    .await
}

fn post_from(row: PostRow) -> Post {
    post(row)
}
