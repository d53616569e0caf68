//! The admin area under `/admin`: a login form, the post list with publish, unpublish and delete,
//! the post editor and the settings form. Every form carries a CSRF token: the session's own
//! token once logged in, and for the login form a random token also set as a cookie (double
//! submit). A form whose token does not match is refused with 403 and changes nothing.

use crate::api::PageQuery;
use crate::input::{self, InputError};
use crate::model::{self, Post, SessionUser, SiteSettings};
use crate::pages::{PageError, render};
use crate::password;
use crate::session::{self, LoginError};
use crate::state::AppState;
use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;

/// The cookie carrying the login form's CSRF token.
const LOGIN_CSRF_COOKIE: &str = "onebox_login_csrf";

#[derive(Template)]
#[template(path = "admin_login.html")]
struct LoginPage {
    site: SiteSettings,
    csrf: String,
    username: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_index.html")]
struct IndexPage {
    site: SiteSettings,
    username: String,
    csrf: String,
    posts: Vec<Post>,
    notice: Option<String>,
    newer: Option<u32>,
    older: Option<u32>,
}

#[derive(Template)]
#[template(path = "admin_edit.html")]
struct EditPage {
    site: SiteSettings,
    csrf: String,
    id: Option<u64>,
    action: String,
    title: String,
    body: String,
    published: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_settings.html")]
struct SettingsPage {
    site: SiteSettings,
    csrf: String,
    title: String,
    description: String,
    error: Option<String>,
}

type PageResult = Result<Response, PageError>;
type FormData = Result<Form<HashMap<String, String>>, FormRejection>;

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(index))
        .route("/admin/", get(|| async { redirect("/admin") }))
        .route("/admin/login", post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/posts/new", get(new_post))
        .route("/admin/posts", post(create_post))
        .route("/admin/posts/{id}", get(edit_post).post(update_post))
        .route("/admin/posts/{id}/publish", post(publish))
        .route("/admin/posts/{id}/unpublish", post(unpublish))
        .route("/admin/posts/{id}/delete", post(delete))
        .route("/admin/settings", get(settings_form).post(save_settings))
}

fn redirect(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/admin"));
    (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response()
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn is_token(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn form(data: FormData) -> Result<HashMap<String, String>, PageError> {
    data.map(|Form(map)| map)
        .map_err(|e| PageError::new(e.status(), e.body_text()))
}

fn field<'a>(map: &'a HashMap<String, String>, name: &str) -> Result<&'a str, PageError> {
    map.get(name).map(String::as_str).ok_or_else(|| {
        PageError::new(
            StatusCode::BAD_REQUEST,
            format!("The form has no field `{name}`."),
        )
    })
}

fn csrf_refused() -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        "This form did not come from this site or has expired (CSRF check failed); nothing was \
         changed. Reload the page and try again.",
    )
}

/// The logged-in user whose session's CSRF token the form carries; otherwise the answer to give.
async fn checked_user(
    state: &AppState,
    headers: &HeaderMap,
    map: &HashMap<String, String>,
) -> Result<SessionUser, Response> {
    let user = match session::current_user(state, headers).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(redirect("/admin")),
        Err(err) => return Err(PageError::from(err).into_response()),
    };
    match map.get("csrf") {
        Some(token) if same(token, &user.csrf_token) => Ok(user),
        _ => Err(csrf_refused().into_response()),
    }
}

async fn user_or_login(state: &AppState, headers: &HeaderMap) -> Result<SessionUser, Response> {
    match session::current_user(state, headers).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(redirect("/admin")),
        Err(err) => Err(PageError::from(err).into_response()),
    }
}

/// The answer for a post id that names no post.
fn no_such_post() -> PageError {
    PageError::new(StatusCode::NOT_FOUND, "There is no such post.")
}

fn post_id(raw: &str) -> Result<u64, PageError> {
    raw.parse().map_err(|_| no_such_post())
}

async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let site = model::settings(&state.db).await?;
    let Some(user) = session::current_user(&state, &headers).await? else {
        return login_page(site, &headers, String::new(), None, StatusCode::OK);
    };
    let Query(query) = query.map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let page = query
        .page()
        .map_err(|m| PageError::new(StatusCode::BAD_REQUEST, m))?;
    let (posts, more) = model::list_posts(&state.db, false, page, 50).await?;
    let page = IndexPage {
        site,
        username: user.username,
        csrf: user.csrf_token,
        posts,
        notice: None,
        newer: (page > 1).then(|| page - 1),
        older: more.then_some(page + 1),
    };
    Ok(render(&page).into_response())
}

/// The login form with a CSRF token, re-using the browser's login token cookie when it has one.
fn login_page(
    site: SiteSettings,
    headers: &HeaderMap,
    username: String,
    error: Option<String>,
    status: StatusCode,
) -> PageResult {
    let existing = session::cookie(headers, LOGIN_CSRF_COOKIE).filter(|t| is_token(t));
    let csrf = match existing {
        Some(token) => token.to_string(),
        None => password::random_token()
            .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    };
    let cookie = session::set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, headers);
    let page = LoginPage {
        site,
        csrf,
        username,
        error,
    };
    Ok((status, [(SET_COOKIE, cookie)], render(&page)).into_response())
}

async fn login(State(state): State<AppState>, headers: HeaderMap, data: FormData) -> PageResult {
    let map = form(data)?;
    let cookie_token = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let form_token = field(&map, "csrf")?;
    if !is_token(cookie_token) || !same(cookie_token, form_token) {
        return Err(csrf_refused());
    }
    let username = field(&map, "username")?.trim().to_string();
    let password = field(&map, "password")?;
    match session::login(&state, &username, password, &headers).await {
        Ok(cookie) => Ok((
            StatusCode::SEE_OTHER,
            [
                (LOCATION, HeaderValue::from_static("/admin")),
                (SET_COOKIE, cookie),
            ],
        )
            .into_response()),
        Err(LoginError::Db(err)) => Err(err.into()),
        Err(LoginError::Internal(err)) => Err(PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            err.to_string(),
        )),
        Err(err) => {
            let status = match err {
                LoginError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            let retry = match err {
                LoginError::Throttled(seconds) => Some(seconds),
                _ => None,
            };
            let site = model::settings(&state.db).await?;
            let mut response = login_page(site, &headers, username, Some(err.to_string()), status)?;
            if let Some(seconds) = retry {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            Ok(response)
        }
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, data: FormData) -> PageResult {
    let map = form(data)?;
    if let Err(answer) = checked_user(&state, &headers, &map).await {
        return Ok(answer);
    }
    let cookie = session::logout(&state, &headers).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (LOCATION, HeaderValue::from_static("/admin")),
            (SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

async fn new_post(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let user = match user_or_login(&state, &headers).await {
        Ok(user) => user,
        Err(answer) => return Ok(answer),
    };
    let site = model::settings(&state.db).await?;
    let page = EditPage {
        site,
        csrf: user.csrf_token,
        id: None,
        action: "/admin/posts".into(),
        title: String::new(),
        body: String::new(),
        published: false,
        error: None,
    };
    Ok(render(&page).into_response())
}

async fn edit_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> PageResult {
    let user = match user_or_login(&state, &headers).await {
        Ok(user) => user,
        Err(answer) => return Ok(answer),
    };
    let id = post_id(&raw)?;
    let post = model::get_post(&state.db, id, false)
        .await?
        .ok_or_else(no_such_post)?;
    let site = model::settings(&state.db).await?;
    let page = EditPage {
        site,
        csrf: user.csrf_token,
        id: Some(id),
        action: format!("/admin/posts/{id}"),
        title: post.title,
        body: post.body,
        published: post.published,
        error: None,
    };
    Ok(render(&page).into_response())
}

/// The editor's fields, checked; on a problem the editor again with the text kept.
async fn post_fields(
    state: &AppState,
    user: &SessionUser,
    id: Option<u64>,
    map: &HashMap<String, String>,
) -> Result<(String, String, bool), Response> {
    let title = map.get("title").cloned().unwrap_or_default();
    let body = map
        .get("body")
        .cloned()
        .unwrap_or_default()
        .replace("\r\n", "\n");
    let published = map.contains_key("published");
    let checked = input::line("title", &title, input::MAX_TITLE, false)
        .and_then(|t| input::text("body", &body, state.settings.max_body_bytes).map(|b| (t, b)));
    match checked {
        Ok((title, body)) => Ok((title, body, published)),
        Err(InputError { status, message }) => {
            let site = match model::settings(&state.db).await {
                Ok(site) => site,
                Err(err) => return Err(PageError::from(err).into_response()),
            };
            let action = id.map_or_else(
                || "/admin/posts".to_string(),
                |id| format!("/admin/posts/{id}"),
            );
            let page = EditPage {
                site,
                csrf: user.csrf_token.clone(),
                id,
                action,
                title,
                body,
                published,
                error: Some(message),
            };
            Err((status, render(&page)).into_response())
        }
    }
}

async fn create_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    data: FormData,
) -> PageResult {
    let map = form(data)?;
    let user = match checked_user(&state, &headers, &map).await {
        Ok(user) => user,
        Err(answer) => return Ok(answer),
    };
    let (title, body, published) = match post_fields(&state, &user, None, &map).await {
        Ok(fields) => fields,
        Err(answer) => return Ok(answer),
    };
    let post = model::create_post(&state.db, &title, &body, published).await?;
    Ok(redirect(&format!("/admin/posts/{}", post.id)))
}

async fn update_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    data: FormData,
) -> PageResult {
    let map = form(data)?;
    let user = match checked_user(&state, &headers, &map).await {
        Ok(user) => user,
        Err(answer) => return Ok(answer),
    };
    let id = post_id(&raw)?;
    let (title, body, published) = match post_fields(&state, &user, Some(id), &map).await {
        Ok(fields) => fields,
        Err(answer) => return Ok(answer),
    };
    model::update_post(&state.db, id, &title, &body, published)
        .await?
        .ok_or_else(no_such_post)?;
    Ok(redirect("/admin"))
}

/// What the post list's buttons do to a post.
#[derive(Debug, Clone, Copy)]
enum PostAction {
    Publish,
    Unpublish,
    Delete,
}

/// Applies `action` to the post `raw` for a logged-in user whose form carries the session's
/// CSRF token, then back to the post list; 404 when there is no such post.
async fn act_on_post(
    state: AppState,
    headers: HeaderMap,
    raw: String,
    data: FormData,
    action: PostAction,
) -> PageResult {
    let map = form(data)?;
    if let Err(answer) = checked_user(&state, &headers, &map).await {
        return Ok(answer);
    }
    let id = post_id(&raw)?;
    let found = match action {
        PostAction::Publish => model::set_published(&state.db, id, true).await?,
        PostAction::Unpublish => model::set_published(&state.db, id, false).await?,
        PostAction::Delete => model::delete_post(&state.db, id).await?,
    };
    if !found {
        return Err(no_such_post());
    }
    Ok(redirect("/admin"))
}

async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    data: FormData,
) -> PageResult {
    act_on_post(state, headers, raw, data, PostAction::Publish).await
}

async fn unpublish(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    data: FormData,
) -> PageResult {
    act_on_post(state, headers, raw, data, PostAction::Unpublish).await
}

async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    data: FormData,
) -> PageResult {
    act_on_post(state, headers, raw, data, PostAction::Delete).await
}

async fn settings_form(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let user = match user_or_login(&state, &headers).await {
        Ok(user) => user,
        Err(answer) => return Ok(answer),
    };
    let site = model::settings(&state.db).await?;
    let page = SettingsPage {
        title: site.title.clone(),
        description: site.description.clone(),
        site,
        csrf: user.csrf_token,
        error: None,
    };
    Ok(render(&page).into_response())
}

async fn save_settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    data: FormData,
) -> PageResult {
    let map = form(data)?;
    let user = match checked_user(&state, &headers, &map).await {
        Ok(user) => user,
        Err(answer) => return Ok(answer),
    };
    let title = map.get("title").cloned().unwrap_or_default();
    let description = map.get("description").cloned().unwrap_or_default();
    let checked = input::line("title", &title, input::MAX_TITLE, false).and_then(|t| {
        input::line("description", &description, input::MAX_DESCRIPTION, true).map(|d| (t, d))
    });
    match checked {
        Ok((title, description)) => {
            model::set_settings(&state.db, &title, &description).await?;
            Ok(redirect("/admin/settings"))
        }
        Err(InputError { status, message }) => {
            let site = model::settings(&state.db).await?;
            let page = SettingsPage {
                site,
                csrf: user.csrf_token,
                title,
                description,
                error: Some(message),
            };
            Ok((status, render(&page)).into_response())
        }
    }
}
