//! Logins and sessions: the session cookie, its server-side row, and the login check shared by
//! the API and the admin form.

use crate::db::DbError;
use crate::model::{self, SessionUser};
use crate::password;
use crate::state::AppState;
use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HeaderValue};
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "onebox_session";

/// Why a login did not produce a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong user name or password.
    #[error("wrong username or password")]
    Wrong,
    /// Too many failures for this user name.
    #[error("too many failed logins for this username; try again in {0} seconds")]
    Throttled(u64),
    /// The database could not be used.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Hashing or randomness failed.
    #[error(transparent)]
    Internal(#[from] password::PasswordError),
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request reached the edge over HTTPS (`X-Forwarded-Proto: https`).
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        })
}

/// A `Set-Cookie` value for cookie `name`: HttpOnly, SameSite=Lax, Path=/, Secure over HTTPS;
/// `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
    let secure = if is_https(headers) { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The logged-in user of the request, if its session cookie names a live session.
pub async fn current_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<SessionUser>, DbError> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) if token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) => {
            model::session_user(&state.db, &token_hash(token)).await
        }
        _ => Ok(None),
    }
}

/// Checks `username` and `password` and, when they match, starts a session: returns the
/// `Set-Cookie` header value for it.
pub async fn login(
    state: &AppState,
    username: &str,
    password: &str,
    headers: &HeaderMap,
) -> Result<HeaderValue, LoginError> {
    state
        .throttle
        .check(username)
        .map_err(LoginError::Throttled)?;
    let user = model::user_hash(&state.db, username).await?;
    let (id, hash) = match &user {
        Some((id, hash)) => (Some(*id), hash.clone()),
        None => (None, password::DUMMY_HASH.to_string()),
    };
    let attempt = password.to_string();
    let matches = tokio::task::spawn_blocking(move || password::verify_password(&attempt, &hash))
        .await
        .unwrap_or(false);
    let Some(user_id) = id.filter(|_| matches) else {
        state.throttle.failed(username);
        return Err(LoginError::Wrong);
    };
    state.throttle.succeeded(username);
    let token = password::random_token()?;
    let csrf = password::random_token()?;
    let lifetime_secs = state.settings.session_lifetime_secs;
    model::create_session(&state.db, &token_hash(&token), user_id, &csrf, lifetime_secs).await?;
    Ok(set_cookie(
        SESSION_COOKIE,
        &token,
        lifetime_secs,
        headers,
    ))
}

/// Ends the request's session, if any, and returns the `Set-Cookie` value that deletes it.
pub async fn logout(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, DbError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        model::delete_session(&state.db, &token_hash(token)).await?;
    }
    Ok(set_cookie(SESSION_COOKIE, "", 0, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies_and_forwarded_proto() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; onebox_session=abc ; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(!is_https(&h));
        assert!(
            !set_cookie("x", "y", 5, &h)
                .to_str()
                .expect("ascii")
                .contains("Secure")
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(is_https(&h));
        let c = set_cookie("x", "y", 5, &h);
        assert_eq!(
            c.to_str().expect("ascii"),
            "x=y; Path=/; Max-Age=5; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
