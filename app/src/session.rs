//! Logins and sessions: the session cookie, its server-side row, and the login check shared by
//! the API and the admin form.

use crate::db::DbError;
use crate::model::{self, SessionUser};
use crate::password;
use crate::state::AppState;
use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HeaderValue};
use cookie::{Cookie, SameSite};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "onebox_session";

/// Why a login did not produce a session.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong user name or password.
    #[error("wrong username or password")]
    Wrong,
    /// Too many failures from this client, or for this user name from this client.
    #[error("too many failed logins; try again in {0} seconds")]
    Throttled(u64),
    /// Every password check slot is busy (a login storm): try again in a moment.
    #[error("the server is busy checking other logins; try again in a moment")]
    Busy,
    /// The database could not be used.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Hashing or randomness failed.
    #[error(transparent)]
    Internal(#[from] password::PasswordError),
}

/// The value of cookie `name` in the request's `Cookie` headers, if any (parsed by the `cookie`
/// crate; an unparsable pair is skipped).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
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
    let seconds = i64::try_from(max_age).unwrap_or(i64::MAX);
    let cookie = Cookie::build((name, value))
        .path("/")
        .max_age(cookie::time::Duration::seconds(seconds))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(is_https(headers))
        .build();
    HeaderValue::from_str(&cookie.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
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
        Some(token) if crate::extract::is_token(&token) => {
            model::session_user(&state.db, &token_hash(&token)).await
        }
        _ => Ok(None),
    }
}

/// Checks `username` and `password` for `client` and, when they match, starts a session:
/// returns the `Set-Cookie` header value for it.
///
/// The attempt is refused before any work when the client is throttled, and before the
/// database is asked when every password check slot is busy; it is counted as a failure
/// before the password is checked.
pub async fn login(
    state: &AppState,
    client: IpAddr,
    username: &str,
    password: &str,
    headers: &HeaderMap,
) -> Result<HeaderValue, LoginError> {
    let outcome = check_and_start(state, client, username, password, headers).await;
    state.metrics.login(&outcome);
    outcome
}

async fn check_and_start(
    state: &AppState,
    client: IpAddr,
    username: &str,
    password: &str,
    headers: &HeaderMap,
) -> Result<HeaderValue, LoginError> {
    let attempt = state
        .throttle
        .begin(client, username)
        .map_err(|r| LoginError::Throttled(r.retry_after_secs))?;
    let slot = match state.verifier.slot() {
        Ok(slot) => slot,
        Err(password::Busy) => {
            // No guess was checked: the attempt does not count.
            state.throttle.succeeded(attempt);
            return Err(LoginError::Busy);
        }
    };
    let user = model::user_hash(&state.db, username).await?;
    let (id, hash) = match user {
        Some((id, hash)) => (Some(id), hash),
        None => (None, password::DUMMY_HASH.to_string()),
    };
    let matches = slot.verify(password.to_string(), hash).await;
    let Some(user_id) = id.filter(|_| matches) else {
        return Err(LoginError::Wrong);
    };
    state.throttle.succeeded(attempt);
    let token = password::random_token()?;
    let csrf = password::random_token()?;
    let lifetime_secs = state.settings.session_lifetime_secs;
    model::create_session(
        &state.db,
        &token_hash(&token),
        user_id,
        &csrf,
        lifetime_secs,
    )
    .await?;
    Ok(set_cookie(SESSION_COOKIE, &token, lifetime_secs, headers))
}

/// Ends the request's session, if any, and returns the `Set-Cookie` value that deletes it.
pub async fn logout(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, DbError> {
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        model::delete_session(&state.db, &token_hash(&token)).await?;
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
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
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
            "x=y; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=5"
        );
    }
}
