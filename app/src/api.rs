//! The JSON API under `/api/`. Errors are `{"error": "..."}` with the fitting status.

use crate::db::DbError;
use crate::extract::{ApiJson, ApiUser, ClientAddr, IdempotencyKey, MaybeUser};
use crate::input::{self, InputError, PostInput, SettingsInput};
use crate::model;
use crate::pages::purges_pages;
use crate::session::{self, LoginError};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

/// An API error: status and message, answered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> ApiError {
        match err {
            DbError::Unavailable(_) => {
                tracing::warn!("{err}");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable",
                );
                e.retry_after = Some(1);
                e
            }
            DbError::Query(_) => {
                tracing::error!("{err}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal database error")
            }
        }
    }
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> ApiError {
        ApiError::new(err.status, err.message)
    }
}

impl From<LoginError> for ApiError {
    fn from(err: LoginError) -> ApiError {
        match err {
            LoginError::Wrong => ApiError::new(StatusCode::UNAUTHORIZED, err.to_string()),
            LoginError::Throttled(seconds) => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: err.to_string(),
                retry_after: Some(seconds),
            },
            LoginError::Busy => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: err.to_string(),
                retry_after: Some(1),
            },
            LoginError::Db(db) => db.into(),
            LoginError::Internal(e) => {
                tracing::error!("{e}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

type ApiResult = Result<Response, ApiError>;

/// The API's routes, to be nested under `/api`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/posts", get(list_posts).post(create_post))
        .route(
            "/posts/{id}",
            get(get_post).put(update_post).delete(delete_post),
        )
        .route("/settings", get(get_settings).put(put_settings))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint") })
}

fn post_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("no post with id `{raw}`")))
}

fn not_found(id: u64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no post with id {id}"))
}

/// The body of `POST /api/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginInput {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ApiJson(input): ApiJson<LoginInput>,
) -> ApiResult {
    let username = input::username("username", &input.username)?;
    let password = input::password("password", &input.password)?;
    let cookie = session::login(&state, client, &username, &password, &headers).await?;
    Ok((
        [(SET_COOKIE, cookie)],
        axum::Json(json!({ "username": username })),
    )
        .into_response())
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    let cookie = session::logout(&state, &headers).await?;
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, cookie)]).into_response())
}

/// `?page=N` of the post lists.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// 1-based page number.
    page: Option<String>,
}

impl PageQuery {
    /// The page number, or a message naming the parameter.
    pub fn page(&self) -> Result<u32, String> {
        match &self.page {
            None => Ok(1),
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err(format!(
                    "parameter `page` must be a whole number from 1 to 1000000, not `{raw}`"
                )),
            },
        }
    }
}

async fn list_posts(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let page = query
        .page()
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let per_page = state.settings.posts_per_page;
    let (posts, more) = model::list_posts(&state.db, user.is_none(), page, per_page).await?;
    let next = more.then_some(page + 1);
    Ok(axum::Json(json!({ "posts": posts, "page": page, "next_page": next })).into_response())
}

async fn create_post(
    State(state): State<AppState>,
    ApiUser(user): ApiUser,
    IdempotencyKey(client_key): IdempotencyKey,
    ApiJson(input): ApiJson<PostInput>,
) -> ApiResult {
    let input = input.checked(state.settings.max_body_bytes)?;
    let fields = (input.title.as_str(), input.body.as_str(), input.published);
    let key = client_key.map(|k| model::create_key("api", &user.username, &k, fields));
    let post =
        model::create_post(&state.db, key, &input.title, &input.body, input.published).await?;
    let location = HeaderValue::from_str(&format!("/api/posts/{}", post.id))
        .unwrap_or_else(|_| HeaderValue::from_static("/api/posts"));
    Ok(purges_pages(
        (
            StatusCode::CREATED,
            [(LOCATION, location)],
            axum::Json(post),
        )
            .into_response(),
    ))
}

async fn get_post(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(raw): Path<String>,
) -> ApiResult {
    let id = post_id(&raw)?;
    let post = model::get_post(&state.db, id, user.is_none())
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(axum::Json(post).into_response())
}

async fn update_post(
    State(state): State<AppState>,
    _: ApiUser,
    Path(raw): Path<String>,
    ApiJson(input): ApiJson<PostInput>,
) -> ApiResult {
    let id = post_id(&raw)?;
    let input = input.checked(state.settings.max_body_bytes)?;
    let post = model::update_post(&state.db, id, &input.title, &input.body, input.published)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(purges_pages(axum::Json(post).into_response()))
}

async fn delete_post(
    State(state): State<AppState>,
    _: ApiUser,
    Path(raw): Path<String>,
) -> ApiResult {
    let id = post_id(&raw)?;
    if model::delete_post(&state.db, id).await? {
        Ok(purges_pages(StatusCode::NO_CONTENT.into_response()))
    } else {
        Err(not_found(id))
    }
}

async fn get_settings(State(state): State<AppState>) -> ApiResult {
    Ok(axum::Json(model::settings(&state.db).await?).into_response())
}

async fn put_settings(
    State(state): State<AppState>,
    _: ApiUser,
    ApiJson(input): ApiJson<SettingsInput>,
) -> ApiResult {
    let title = input::line("title", &input.title, input::MAX_TITLE, false)?;
    let description = input::line(
        "description",
        &input.description,
        input::MAX_DESCRIPTION,
        true,
    )?;
    model::set_settings(&state.db, &title, &description).await?;
    Ok(purges_pages(
        axum::Json(model::settings(&state.db).await?).into_response(),
    ))
}
