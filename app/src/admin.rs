//! The admin area under `/admin`: a login form, the post list with publish, unpublish and delete,
//! the post editor and the settings form. Every form carries a CSRF token: the session's own
//! token once logged in, and for the login form a random token also set as a cookie (double
//! submit). A form whose token does not match is refused with 403 and changes nothing.

use crate::api::PageQuery;
use crate::extract::{
    AdminRejection, AdminUser, ClientAddr, CsrfForm, LOGIN_CSRF_COOKIE, LoginForm, is_token,
    redirect,
};
use crate::filters;
use crate::input::{self, InputError};
use crate::model::{self, Post, SessionUser, SiteSettings};
use crate::pages::{PageError, purges_pages, render};
use crate::password;
use crate::session::{self, LoginError};
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

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
    /// The new-post form's key (64 hex digits, random for each new form): the same form sent
    /// twice makes one post. Empty in the edit form.
    create_key: String,
    error: Option<String>,
}

/// A new form's key: 64 random hex digits.
fn new_form_key() -> Result<String, PageError> {
    crate::password::random_token().map_err(|e| {
        tracing::error!("no key for the new-post form: {e}");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The form could not be made.",
        )
    })
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
type AdminResult = Result<Response, AdminRejection>;

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginFields {
    username: String,
    password: String,
}

/// The post editor's fields (an unticked checkbox is absent).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PostFields {
    title: String,
    body: String,
    published: Option<String>,
    /// The new-post form's key ([`EditPage::create_key`]); absent from the edit form.
    create_key: String,
}

/// The settings form's fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SettingsFields {
    title: String,
    description: String,
}

/// A form with nothing but its CSRF token (log out, publish, unpublish, delete).
#[derive(Debug, Deserialize)]
struct NoFields {}

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
    let user = session::current_user(&state, &headers).await?;
    let site = model::settings(&state.db).await?;
    let Some(user) = user else {
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
        Some(token) => token,
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

async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    LoginForm(fields): LoginForm<LoginFields>,
) -> PageResult {
    let bad = |e: InputError| PageError::new(e.status, e.message);
    let username = input::username("username", &fields.username).map_err(bad)?;
    let password = input::password("password", &fields.password).map_err(bad)?;
    match session::login(&state, client, &username, &password, &headers).await {
        Ok(cookie) => Ok((
            StatusCode::SEE_OTHER,
            [
                (LOCATION, HeaderValue::from_static("/admin")),
                (SET_COOKIE, cookie),
            ],
        )
            .into_response()),
        Err(LoginError::Db(err)) => Err(err.into()),
        Err(LoginError::Internal(err)) => {
            tracing::error!("{err}");
            Err(PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side.",
            ))
        }
        Err(err) => {
            let (status, retry) = match err {
                LoginError::Throttled(seconds) => (StatusCode::TOO_MANY_REQUESTS, Some(seconds)),
                LoginError::Busy => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
                _ => (StatusCode::UNAUTHORIZED, None),
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

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    _: CsrfForm<NoFields>,
) -> PageResult {
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

async fn new_post(State(state): State<AppState>, AdminUser(user): AdminUser) -> PageResult {
    let site = model::settings(&state.db).await?;
    let page = EditPage {
        site,
        csrf: user.csrf_token,
        id: None,
        action: "/admin/posts".into(),
        title: String::new(),
        body: String::new(),
        published: false,
        create_key: new_form_key()?,
        error: None,
    };
    Ok(render(&page).into_response())
}

async fn edit_post(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    Path(raw): Path<String>,
) -> PageResult {
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
        create_key: String::new(),
        error: None,
    };
    Ok(render(&page).into_response())
}

/// The editor's fields, checked; on a problem the editor again with the text kept.
async fn post_fields(
    state: &AppState,
    user: &SessionUser,
    id: Option<u64>,
    fields: PostFields,
) -> Result<(String, String, bool), AdminRejection> {
    let body = fields.body.replace("\r\n", "\n");
    let published = fields.published.is_some();
    let checked = input::line("title", &fields.title, input::MAX_TITLE, false)
        .and_then(|t| input::text("body", &body, state.settings.max_body_bytes).map(|b| (t, b)));
    let InputError { status, message } = match checked {
        Ok((title, body)) => return Ok((title, body, published)),
        Err(err) => err,
    };
    let site = model::settings(&state.db).await?;
    let action = id.map_or_else(
        || "/admin/posts".to_string(),
        |id| format!("/admin/posts/{id}"),
    );
    let page = EditPage {
        site,
        csrf: user.csrf_token.clone(),
        id,
        action,
        title: fields.title,
        body,
        published,
        // The form shown again keeps its key: nothing was made with it.
        create_key: match id {
            Some(_) => String::new(),
            None if is_token(&fields.create_key) => fields.create_key,
            None => new_form_key()?,
        },
        error: Some(message),
    };
    Err(AdminRejection::Answer(
        (status, render(&page)).into_response(),
    ))
}

async fn create_post(
    State(state): State<AppState>,
    CsrfForm { user, fields }: CsrfForm<PostFields>,
) -> AdminResult {
    // A form without a key (a script's, or a page from before keys) makes a post each time.
    let form_key = match fields.create_key.as_str() {
        "" => None,
        key if is_token(key) => Some(key.to_string()),
        _ => {
            return Err(PageError::new(
                StatusCode::BAD_REQUEST,
                "The form's create_key is not valid: load the form again.",
            )
            .into());
        }
    };
    let (title, body, published) = post_fields(&state, &user, None, fields).await?;
    let key =
        form_key.map(|k| model::create_key("form", &user.username, &k, (&title, &body, published)));
    let post = model::create_post(&state.db, key, &title, &body, published).await?;
    Ok(purges_pages(redirect(&format!("/admin/posts/{}", post.id))))
}

async fn update_post(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    CsrfForm { user, fields }: CsrfForm<PostFields>,
) -> AdminResult {
    let id = post_id(&raw)?;
    let (title, body, published) = post_fields(&state, &user, Some(id), fields).await?;
    model::update_post(&state.db, id, &title, &body, published)
        .await?
        .ok_or_else(no_such_post)?;
    Ok(purges_pages(redirect("/admin")))
}

/// What the post list's buttons do to a post.
#[derive(Debug, Clone, Copy)]
enum PostAction {
    Publish,
    Unpublish,
    Delete,
}

/// Applies `action` to the post `raw`, then back to the post list; 404 when there is no such
/// post. Only called once the form's CSRF token was checked.
async fn act_on_post(state: AppState, raw: String, action: PostAction) -> PageResult {
    let id = post_id(&raw)?;
    let found = match action {
        PostAction::Publish => model::set_published(&state.db, id, true).await?,
        PostAction::Unpublish => model::set_published(&state.db, id, false).await?,
        PostAction::Delete => model::delete_post(&state.db, id).await?,
    };
    if !found {
        return Err(no_such_post());
    }
    Ok(purges_pages(redirect("/admin")))
}

async fn publish(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    _: CsrfForm<NoFields>,
) -> PageResult {
    act_on_post(state, raw, PostAction::Publish).await
}

async fn unpublish(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    _: CsrfForm<NoFields>,
) -> PageResult {
    act_on_post(state, raw, PostAction::Unpublish).await
}

async fn delete(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    _: CsrfForm<NoFields>,
) -> PageResult {
    act_on_post(state, raw, PostAction::Delete).await
}

async fn settings_form(State(state): State<AppState>, AdminUser(user): AdminUser) -> PageResult {
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
    CsrfForm { user, fields }: CsrfForm<SettingsFields>,
) -> PageResult {
    let SettingsFields { title, description } = fields;
    let checked = input::line("title", &title, input::MAX_TITLE, false).and_then(|t| {
        input::line("description", &description, input::MAX_DESCRIPTION, true).map(|d| (t, d))
    });
    match checked {
        Ok((title, description)) => {
            model::set_settings(&state.db, &title, &description).await?;
            Ok(purges_pages(redirect("/admin/settings")))
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
