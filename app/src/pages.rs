//! The public pages: the home page with the newest published posts, and one post.

use crate::api::PageQuery;
use crate::db::DbError;
use crate::filters;
use crate::markdown;
use crate::model::{self, SiteSettings};
use crate::state::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// Characters of a post's body shown on the home page.
pub const EXCERPT_CHARS: usize = 280;

/// `Cache-Control` of the public HTML pages (a `200` to a `GET`/`HEAD` outside `/admin` and
/// `/api/`, without `Set-Cookie`): a shared cache (onebox-edge's page cache) may keep them 60
/// seconds, browsers check each time. The edge is told at once when they change
/// ([`purges_pages`]); 60 s bounds how long a change made elsewhere (a hand-edited database)
/// takes to show.
pub const PUBLIC_CACHE_CONTROL: &str = "public, max-age=0, s-maxage=60";

/// The header that asks the edge in front to purge its page cache (onebox-edge strips it).
pub const PURGE_HEADER: &str = "x-onebox-purge";

/// `response`, the successful answer to a change of a post or the settings, asking the edge to
/// purge its cached pages, so that the change shows on the next request.
pub fn purges_pages(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(PURGE_HEADER, HeaderValue::from_static("all"));
    response
}

/// A post as listed on the home page.
pub struct Summary {
    /// The post's id.
    pub id: u64,
    /// The title.
    pub title: String,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// The start of the body's text as a reader sees it.
    pub excerpt: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    site: SiteSettings,
    posts: Vec<Summary>,
    newer: Option<u32>,
    older: Option<u32>,
}

#[derive(Template)]
#[template(path = "post.html")]
struct PostPage {
    site: SiteSettings,
    title: String,
    created_at: String,
    body_html: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    site: SiteSettings,
    status: String,
    message: String,
}

/// An error answered with an HTML page.
#[derive(Debug)]
pub struct PageError {
    /// The status.
    pub status: StatusCode,
    /// What to tell the reader.
    pub message: String,
}

impl PageError {
    /// An error page with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
        }
    }
}

impl From<DbError> for PageError {
    fn from(err: DbError) -> PageError {
        match err {
            DbError::Unavailable(_) => {
                tracing::warn!("{err}");
                PageError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The site's database is unavailable right now. Please try again in a moment.",
                )
            }
            DbError::Query(_) => {
                tracing::error!("{err}");
                PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side.",
                )
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        // The settings are not read again here: the database may be what failed.
        let site = SiteSettings {
            title: "Error".into(),
            description: String::new(),
        };
        let page = ErrorPage {
            site,
            status: self.status.to_string(),
            message: self.message,
        };
        let mut response = (self.status, render(&page)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(1));
        }
        response
    }
}

/// Renders `template`, or a plain error page when rendering fails.
pub fn render<T: Template>(template: &T) -> Html<String> {
    match template.render() {
        Ok(html) => Html(html),
        Err(err) => {
            tracing::error!("cannot render a page: {err}");
            Html("<!doctype html><title>Error</title><p>The page could not be rendered.".into())
        }
    }
}

/// The public routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/posts/{id}", get(show_post))
}

/// The home page's excerpt of a Markdown `body`: the start of the text a reader sees of it,
/// at most [`EXCERPT_CHARS`] characters, with `…` when cut.
pub fn excerpt(body: &str) -> String {
    markdown::plain_text(body, EXCERPT_CHARS)
}

async fn home(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let Query(query) = query.map_err(|e| PageError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let page = query
        .page()
        .map_err(|m| PageError::new(StatusCode::BAD_REQUEST, m))?;
    let (site, posts, more) = model::home(&state.db, page, state.settings.posts_per_page).await?;
    if posts.is_empty() && page > 1 {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("There is no page {page}."),
        ));
    }
    let posts = posts
        .into_iter()
        .map(|p| Summary {
            id: p.id,
            excerpt: excerpt(&p.body),
            title: p.title,
            created_at: p.created_at,
        })
        .collect();
    let page = HomePage {
        site,
        posts,
        newer: (page > 1).then(|| page - 1),
        older: more.then_some(page + 1),
    };
    Ok(render(&page).into_response())
}

async fn show_post(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, PageError> {
    let missing = || PageError::new(StatusCode::NOT_FOUND, "There is no such post.");
    let id: u64 = raw.parse().map_err(|_| missing())?;
    let (site, post) = model::site_and_post(&state.db, id).await?;
    let post = post.ok_or_else(missing)?;
    let page = PostPage {
        site,
        body_html: markdown::render(&post.body),
        title: post.title,
        created_at: post.created_at,
    };
    Ok(render(&page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_text_cut_at_characters() {
        assert_eq!(excerpt("short"), "short");
        assert_eq!(excerpt("# Title\n\n**bold** `x`"), "Title bold x");
        let long = "é".repeat(EXCERPT_CHARS + 5);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn templates_escape() {
        let site = SiteSettings {
            title: "<b>T</b>".into(),
            description: "\"d\"".into(),
        };
        let page = HomePage {
            site,
            posts: vec![Summary {
                id: 1,
                title: "<script>x</script>".into(),
                created_at: "2026-11-29T18:08:45Z".into(),
                excerpt: "<i>".into(),
            }],
            newer: None,
            older: Some(2),
        };
        let html = page.render().expect("render");
        assert!(!html.contains("<script>x"), "{html}");
        assert!(!html.contains("<b>T"), "{html}");
        assert!(!html.contains("<i>"), "{html}");
        assert!(html.contains("/?page=2"), "{html}");
        assert!(
            html.contains("<time datetime=\"2026-11-29T18:08:45Z\">29 November 2026</time>"),
            "{html}"
        );
    }
}
