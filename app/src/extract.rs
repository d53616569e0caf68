//! Request extractors: the session's user, CSRF-checked admin forms, the login form's
//! double-submit check, and typed JSON bodies whose errors name the field.
//!
//! A handler that takes one of these runs only when the check passed; otherwise the extractor's
//! rejection is the answer (a redirect to the login form, 401, 403, 400, 413 or 415).

use crate::api::ApiError;
use crate::db::DbError;
use crate::linger::PeerAddr;
use crate::model::SessionUser;
use crate::pages::PageError;
use crate::session;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use std::net::IpAddr;

/// The cookie carrying the login form's CSRF token.
pub const LOGIN_CSRF_COOKIE: &str = "onebox_login_csrf";

/// A `303 See Other` to `to`.
pub fn redirect(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/admin"));
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

/// Constant-time comparison of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `value` looks like one of our tokens and form keys: 64 lower-case hex digits, as
/// [`crate::password::random_token`] writes them.
pub fn is_token(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The answer to a form whose CSRF token is missing or wrong.
pub fn csrf_refused() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "This form did not come from this site or has expired (CSRF check failed); nothing was \
         changed. Reload the page and try again.",
    )
}

/// The client's address: the peer's, or, when the peer is one of `[app] trusted_proxies` (the
/// edge), the last address in `X-Forwarded-For` that is not a trusted proxy. A forwarded
/// header from any other peer is ignored: a client cannot choose the address it is counted as.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<PeerAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip());
        Ok(ClientAddr(client_addr(
            peer,
            &parts.headers,
            &state.trusted_proxies,
        )))
    }
}

/// The client's address for a request from `peer` with `headers` (see [`ClientAddr`]).
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = crate::throttle::canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // The edge's own header is the last one; walk from the right, past our own proxies.
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = crate::throttle::canonical(ip);
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// The user of the request's session, if it has a live one. Never rejects for want of a
/// session; a database failure is a 503 API error.
pub struct MaybeUser(pub Option<SessionUser>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(MaybeUser(
            session::current_user(state, &parts.headers).await?,
        ))
    }
}

/// An API request with a live session (its user); 401 without one.
pub struct ApiUser(pub SessionUser);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        session::current_user(state, &parts.headers)
            .await?
            .map(ApiUser)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "log in first: this needs a session",
                )
            })
    }
}

/// The request's `Idempotency-Key` header, if it has one: 1 to 255 visible ASCII characters
/// (a UUID, say), else 400. A creation sent again with the same key gives the same post
/// ([`crate::model::create_post`]).
pub struct IdempotencyKey(pub Option<String>);

/// The longest `Idempotency-Key` taken.
const MAX_IDEMPOTENCY_KEY: usize = 255;

impl FromRequestParts<AppState> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let Some(value) = values.next() else {
            return Ok(IdempotencyKey(None));
        };
        let bytes = value.as_bytes();
        if values.next().is_some()
            || bytes.is_empty()
            || bytes.len() > MAX_IDEMPOTENCY_KEY
            || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "the Idempotency-Key header must be one value of 1 to 255 visible ASCII characters",
            ));
        }
        Ok(IdempotencyKey(Some(
            String::from_utf8_lossy(bytes).into_owned(),
        )))
    }
}

/// Why an admin page or form was not handled: the answer to give instead.
pub enum AdminRejection {
    /// Not logged in: back to the login form.
    LogIn,
    /// An error page (403 for a failed CSRF check, 400/413 for an unreadable form, 503...).
    Page(PageError),
    /// Another answer, e.g. the form again with what is wrong in it.
    Answer(Response),
}

impl IntoResponse for AdminRejection {
    fn into_response(self) -> Response {
        match self {
            AdminRejection::LogIn => redirect("/admin"),
            AdminRejection::Page(page) => page.into_response(),
            AdminRejection::Answer(response) => response,
        }
    }
}

impl From<PageError> for AdminRejection {
    fn from(err: PageError) -> AdminRejection {
        AdminRejection::Page(err)
    }
}

impl From<DbError> for AdminRejection {
    fn from(err: DbError) -> AdminRejection {
        AdminRejection::Page(err.into())
    }
}

/// The logged-in user of an admin page; without a session, a redirect to the login form.
pub struct AdminUser(pub SessionUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = AdminRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, AdminRejection> {
        session::current_user(state, &parts.headers)
            .await?
            .map(AdminUser)
            .ok_or(AdminRejection::LogIn)
    }
}

/// The fields of a posted HTML form (`application/x-www-form-urlencoded`) as `T`, with the raw
/// `csrf` field beside them.
async fn read_form<T: DeserializeOwned>(
    req: Request,
    state: &AppState,
) -> Result<(Option<String>, T), PageError> {
    let body = Bytes::from_request(req, state)
        .await
        .map_err(|rejection| PageError::new(rejection.status(), rejection.body_text()))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).map_err(|e| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("The form cannot be read: {e}."),
        )
    })?;
    let csrf = pairs
        .into_iter()
        .find_map(|(k, v)| (k == "csrf").then_some(v));
    let fields = serde_urlencoded::from_bytes(&body).map_err(|e| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("The form cannot be read: {e}."),
        )
    })?;
    Ok((csrf, fields))
}

/// A form posted by the logged-in user, carrying their session's CSRF token: the user and the
/// form's fields as `T`. Without a session, a redirect to the login form; with a missing or
/// wrong token, 403 before anything is done.
pub struct CsrfForm<T> {
    /// The logged-in user.
    pub user: SessionUser,
    /// The form's fields.
    pub fields: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = AdminRejection;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AdminRejection> {
        let (mut parts, body) = req.into_parts();
        let AdminUser(user) = AdminUser::from_request_parts(&mut parts, state).await?;
        let (csrf, fields) = read_form(Request::from_parts(parts, body), state).await?;
        match csrf {
            Some(token) if same(&token, &user.csrf_token) => Ok(CsrfForm { user, fields }),
            _ => Err(csrf_refused().into()),
        }
    }
}

/// The login form, posted with the token of the browser's login CSRF cookie (double submit):
/// a form sent from another site, which cannot read or set that cookie, is refused with 403.
pub struct LoginForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for LoginForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, PageError> {
        let cookie = session::cookie(req.headers(), LOGIN_CSRF_COOKIE).unwrap_or_default();
        let (csrf, fields) = read_form(req, state).await?;
        match csrf {
            Some(token) if is_token(&cookie) && same(&cookie, &token) => Ok(LoginForm(fields)),
            _ => Err(csrf_refused()),
        }
    }
}

/// A JSON request body as `T` (a `#[serde(deny_unknown_fields)]` type): 415 unless it is
/// `application/json`, 413 when too large, 400 with a message naming the field otherwise.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "the request body is too large")
            } else {
                ApiError::new(status, format!("cannot read the request body: {rejection}"))
            }
        })?;
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the request body must be JSON with Content-Type: application/json",
            ));
        }
        from_json(&body)
            .map(ApiJson)
            .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))
    }
}

/// `body` as `T`, or a message naming the field that is wrong.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    // serde would also read a struct from an array, field by field; the API takes objects only.
    if body.trim_ascii_start().first() == Some(&b'[') {
        return Err("the request body must be a JSON object, not an array".into());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data if path != "." => {
                format!("field `{path}`: {inner}")
            }
            serde_json::error::Category::Data => {
                let text = inner.to_string();
                if text.starts_with("invalid type") {
                    format!("the request body must be a JSON object ({text})")
                } else {
                    text
                }
            }
            _ => format!("the request body is not valid JSON: {inner}"),
        }
    })?;
    de.end()
        .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        title: String,
        published: bool,
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = |body: &str| from_json::<Input>(body.as_bytes()).expect_err(body);
        assert!(err(r#"{"title": 5, "published": true}"#).contains("field `title`"));
        assert!(err(r#"{"title": "t"}"#).contains("`published`"));
        assert!(err(r#"{"title": "t", "published": "yes"}"#).contains("field `published`"));
        assert!(err(r#"{"title": "t", "published": true, "x": 1}"#).contains("`x`"));
        assert!(err("[1, 2]").contains("JSON object"), "{}", err("[1, 2]"));
        assert!(err("{").contains("not valid JSON"));
        assert!(err(r#"{"title": "t", "published": true} x"#).contains("not valid JSON"));
        let ok: Input = from_json(br#"{"title": "t", "published": true}"#).expect("valid");
        assert!(ok.published);
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let mut h = HeaderMap::new();
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7"),
        );
        assert_eq!(
            client_addr(ip("127.0.0.1"), &h, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_addr(ip("127.0.0.3"), &h, &trusted),
            ip("127.0.0.3"),
            "untrusted peer"
        );
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 127.0.0.1"),
        );
        assert_eq!(
            client_addr(ip("127.0.0.1"), &h, &trusted),
            ip("198.51.100.7"),
            "past our proxies"
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &trusted), ip("127.0.0.1"));
        assert_eq!(
            client_addr(ip("::ffff:127.0.0.1"), &h, &trusted),
            ip("127.0.0.1"),
            "mapped"
        );
    }

    #[test]
    fn tokens() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(is_token(&"a".repeat(64)));
        assert!(!is_token(&"g".repeat(64)));
        assert!(!is_token(&"A".repeat(64)));
        assert!(!is_token(&"a".repeat(63)));
    }
}
