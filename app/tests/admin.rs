//! The admin area: login form, post editor, publish/unpublish/delete, settings, CSRF checks.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;

/// The CSRF token in a page's forms.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 64].to_string()
}

/// Whether the (only) post is published.
async fn published(db: &TestDb) -> Option<bool> {
    db.value("SELECT published FROM posts").await
}

/// The admin login form posted from `c` with CSRF token `token` (not sent yet).
fn login_form(
    c: &reqwest::Client,
    app: &App,
    token: &str,
    password: &str,
) -> reqwest::RequestBuilder {
    let fields = [
        ("csrf", token),
        ("username", "admin"),
        ("password", password),
    ];
    post_form(c, app, "/admin/login", &fields)
}

/// A client logged in through the admin login form, and the dashboard's CSRF token.
async fn form_login(app: &App) -> (reqwest::Client, String) {
    let c = client();
    let r = send(c.get(app.url("/admin"))).await;
    assert_eq!(r.status(), 200);
    let cookie = header(&r, "set-cookie");
    assert!(
        cookie.starts_with("onebox_login_csrf=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"password\""), "{page}");
    let token = csrf(&page);
    let r = send(login_form(&c, app, &token, "admin-password-1")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin");
    let page = text(c.get(app.url("/admin"))).await;
    assert!(
        page.contains("Logged in as <strong>admin</strong>"),
        "{page}"
    );
    let token = csrf(&page);
    (c, token)
}

#[tokio::test]
async fn login_form_needs_its_csrf_token_and_the_right_password() {
    let (db, app) = app_with_admin("").await;
    let c = client();
    let token = csrf(&text(c.get(app.url("/admin"))).await);
    // No token, or another one: refused before the password is even looked at.
    for bad in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let r = send(login_form(&c, &app, bad, "admin-password-1")).await;
        assert_eq!(r.status(), 403, "token {bad:?}");
    }
    // A form posted by another site, without this browser's cookie.
    let forged = login_form(&client(), &app, &token, "admin-password-1");
    assert_eq!(status(forged).await, 403);
    assert_eq!(
        db.value::<u64>("SELECT COUNT(*) FROM sessions").await,
        Some(0)
    );
    let r = send(login_form(&c, &app, &token, "nope")).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("wrong username or password")
    );
    drop(form_login(&app).await);
}

#[tokio::test]
async fn pages_need_a_login() {
    let (_db, app) = app_with_admin("").await;
    let c = client();
    for path in ["/admin/posts/new", "/admin/settings", "/admin/posts/1"] {
        let r = send(c.get(app.url(path))).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/admin");
    }
    let fields = [("csrf", "x"), ("title", "t"), ("body", "b")];
    assert_eq!(
        status(post_form(&c, &app, "/admin/posts", &fields)).await,
        303
    );
}

#[tokio::test]
async fn the_editor_creates_edits_publishes_unpublishes_and_deletes() {
    let (db, app) = app_with_admin("").await;
    let (c, token) = form_login(&app).await;
    let new = text(c.get(app.url("/admin/posts/new"))).await;
    assert_eq!(csrf(&new), token);
    let fields = [
        ("csrf", token.as_str()),
        ("title", "From the form"),
        ("body", "Line one\r\n</textarea><script>x()</script>"),
    ];
    let r = send(post_form(&c, &app, "/admin/posts", &fields)).await;
    assert_eq!(r.status(), 303);
    let id: u64 = db
        .value("SELECT id FROM posts WHERE title = 'From the form'")
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("/admin/posts/{id}").as_str()
    );
    assert_eq!(published(&db).await, Some(false), "no box ticked: a draft");
    assert_eq!(
        db.value::<String>("SELECT body FROM posts").await.unwrap(),
        "Line one\n</textarea><script>x()</script>"
    );
    let editor_path = format!("/admin/posts/{id}");
    let editor = text(c.get(app.url(&editor_path))).await;
    assert!(
        !editor.contains("<script>") && !editor.contains("</textarea><"),
        "{editor}"
    );

    let publish = |action: &str| {
        let path = format!("/admin/posts/{id}/{action}");
        status(post_form(&c, &app, &path, &[("csrf", token.as_str())]))
    };
    assert_eq!(publish("publish").await, 303);
    assert_eq!(published(&db).await, Some(true));
    assert!(
        text(client().get(app.url("/")))
            .await
            .contains("From the form")
    );
    assert_eq!(publish("unpublish").await, 303);
    assert_eq!(published(&db).await, Some(false));

    // The editor's form for a published post.
    let edit = |title: &str, body: &str| {
        let fields = [
            ("csrf", token.as_str()),
            ("title", title),
            ("body", body),
            ("published", "1"),
        ];
        send(post_form(&c, &app, &editor_path, &fields))
    };
    assert_eq!(edit("Edited", "new").await.status(), 303);
    assert_eq!(
        db.value::<String>("SELECT title FROM posts").await.unwrap(),
        "Edited"
    );
    assert_eq!(published(&db).await, Some(true));

    // A bad title keeps the text and says what is wrong.
    let r = edit(" ", "kept text").await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("`title`") && page.contains("kept text"),
        "{page}"
    );

    assert_eq!(publish("delete").await, 303);
    assert_eq!(db.value::<u64>("SELECT COUNT(*) FROM posts").await, Some(0));
    assert_eq!(publish("delete").await, 404);
}

#[tokio::test]
async fn forms_without_the_session_token_change_nothing() {
    let (db, app) = app_with_admin("").await;
    let (c, token) = form_login(&app).await;
    let api = admin_client(&app).await;
    let post = create_post(&api, &app, "Keep me", "body", true).await;
    let id = post["id"].as_u64().unwrap();
    let other = "f".repeat(64);
    for bad in [other.as_str(), ""] {
        let post_fields = [("csrf", bad), ("title", "forged"), ("body", "")];
        let settings_fields = [("csrf", bad), ("title", "forged"), ("description", "")];
        let attempts: [(String, &[(&str, &str)]); 6] = [
            ("/admin/posts".into(), &post_fields),
            (format!("/admin/posts/{id}"), &post_fields),
            (format!("/admin/posts/{id}/unpublish"), &[("csrf", bad)]),
            (format!("/admin/posts/{id}/delete"), &[("csrf", bad)]),
            ("/admin/settings".into(), &settings_fields),
            ("/admin/logout".into(), &[("csrf", bad)]),
        ];
        for (path, fields) in attempts {
            let r = send(post_form(&c, &app, &path, fields)).await;
            assert_eq!(r.status(), 403, "{}", r.url());
        }
    }
    assert_eq!(
        db.value::<String>("SELECT title FROM posts").await.unwrap(),
        "Keep me"
    );
    assert_eq!(published(&db).await, Some(true));
    assert_eq!(db.value::<u64>("SELECT COUNT(*) FROM posts").await, Some(1));
    assert_ne!(
        db.value::<String>("SELECT title FROM settings")
            .await
            .unwrap(),
        "forged"
    );
    // The real token works, and logging out ends the session.
    let fields = [
        ("csrf", token.as_str()),
        ("title", "New <title>"),
        ("description", "d"),
    ];
    assert_eq!(
        status(post_form(&c, &app, "/admin/settings", &fields)).await,
        303
    );
    assert_eq!(
        db.value::<String>("SELECT title FROM settings")
            .await
            .unwrap(),
        "New <title>"
    );
    let page = text(c.get(app.url("/admin/settings"))).await;
    assert!(!page.contains("New <title>"), "escaped: {page}");
    let logout = post_form(&c, &app, "/admin/logout", &[("csrf", token.as_str())]);
    assert_eq!(status(logout).await, 303);
    let page = text(c.get(app.url("/admin"))).await;
    assert!(page.contains("name=\"password\""));
}

/// Whether an answer asks the edge in front to purge its page cache.
fn purges(r: &reqwest::Response) -> bool {
    r.headers()
        .get("x-onebox-purge")
        .is_some_and(|v| v == "all")
}

#[tokio::test]
async fn every_change_of_a_post_or_the_settings_and_nothing_else_purges_the_edge_cache() {
    let (db, app) = app_with_admin("").await;
    let (c, token) = form_login(&app).await;
    let t = token.as_str();

    // The forms.
    let fields = [
        ("csrf", t),
        ("title", "Formed"),
        ("body", "b"),
        ("published", "1"),
    ];
    let r = send(post_form(&c, &app, "/admin/posts", &fields)).await;
    assert_eq!(r.status(), 303);
    assert!(purges(&r), "create");
    let id: u64 = db.value("SELECT id FROM posts").await.unwrap();
    let editor = format!("/admin/posts/{id}");
    let r = send(post_form(&c, &app, &editor, &fields)).await;
    assert!(r.status() == 303 && purges(&r), "edit");
    for action in ["unpublish", "publish", "delete"] {
        let r = send(post_form(
            &c,
            &app,
            &format!("{editor}/{action}"),
            &[("csrf", t)],
        ))
        .await;
        assert!(r.status() == 303 && purges(&r), "{action}");
    }
    let settings = [("csrf", t), ("title", "S"), ("description", "d")];
    let r = send(post_form(&c, &app, "/admin/settings", &settings)).await;
    assert!(r.status() == 303 && purges(&r), "settings");

    // Refused or failed changes, reads, logins and logouts do not.
    let forged = [("csrf", "f"), ("title", "x"), ("body", "")];
    let r = send(post_form(&c, &app, "/admin/posts", &forged)).await;
    assert!(r.status() == 403 && !purges(&r));
    let bad = [("csrf", t), ("title", " "), ("body", "")];
    let r = send(post_form(&c, &app, "/admin/posts", &bad)).await;
    assert!(r.status() == 400 && !purges(&r));
    let r = send(post_form(
        &c,
        &app,
        &format!("{editor}/delete"),
        &[("csrf", t)],
    ))
    .await;
    assert!(r.status() == 404 && !purges(&r));
    let bad_settings = [("csrf", t), ("title", " "), ("description", "")];
    let r = send(post_form(&c, &app, "/admin/settings", &bad_settings)).await;
    assert!(!r.status().is_success() && !purges(&r), "{}", r.status());
    for path in ["/", "/admin", "/admin/settings", "/api/posts"] {
        let r = send(c.get(app.url(path))).await;
        assert!(!purges(&r), "{path}");
    }

    // The API.
    let api = admin_client(&app).await;
    let r = send(api_new_post(&api, &app, "Api", "b", true)).await;
    assert!(r.status() == 201 && purges(&r), "api create");
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap();
    let url = app.url(&format!("/api/posts/{id}"));
    let body = serde_json::json!({"title": "Api2", "body": "b", "published": false});
    let r = send(api.put(&url).json(&body)).await;
    assert!(r.status() == 200 && purges(&r), "api update");
    let r = send(api.delete(&url)).await;
    assert!(r.status() == 204 && purges(&r), "api delete");
    let r = send(api.delete(&url)).await;
    assert!(r.status() == 404 && !purges(&r), "api delete again");
    let settings = serde_json::json!({"title": "T", "description": "d"});
    let r = send(api.put(app.url("/api/settings")).json(&settings)).await;
    assert!(r.status() == 200 && purges(&r), "api settings");
    let r = send(client().put(app.url("/api/settings")).json(&settings)).await;
    assert!(r.status() == 401 && !purges(&r), "no session");
    let r = send(api_new_post(&client(), &app, "Anon", "b", true)).await;
    assert!(r.status() == 401 && !purges(&r), "no session");
}

#[tokio::test]
async fn public_pages_may_be_kept_by_a_shared_cache_and_the_admin_area_never() {
    let (_db, app) = app_with_admin("").await;
    let api = admin_client(&app).await;
    let post = create_post(&api, &app, "Cached", "b", true).await;
    let id = post["id"].as_u64().unwrap();
    for path in ["/".to_string(), format!("/posts/{id}")] {
        let r = send(client().get(app.url(&path))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=0, s-maxage=60",
            "{path}"
        );
    }
    // Not found, the health check, the admin area and the API: not for a shared cache.
    let r = send(client().get(app.url("/posts/999999"))).await;
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("cache-control").is_none());
    let r = send(client().get(app.url("/healthz"))).await;
    assert!(r.headers().get("cache-control").is_none());
    for path in ["/admin", "/api/posts"] {
        let r = send(api.get(app.url(path))).await;
        assert_eq!(header(&r, "cache-control"), "no-store", "{path}");
    }
}

/// The key of a page's new-post form.
fn create_key(page: &str) -> String {
    let at = page
        .find("name=\"create_key\" value=\"")
        .expect("a new-post form with its key")
        + 25;
    page[at..at + 64].to_string()
}

/// The new-post form sent twice (a double click, the browser sending it again) makes one post,
/// both answers pointing at it; the same form with other fields makes another, and so does a new
/// form; a form without a key (a script's) makes a post each time; a key that is not one is
/// refused, nothing made.
#[tokio::test]
async fn the_same_new_post_form_sent_twice_makes_one_post() {
    let (db, app) = app_with_admin("").await;
    let (c, token) = form_login(&app).await;
    let posts = async || db.value::<u64>("SELECT COUNT(*) FROM posts").await.unwrap();
    let form = text(c.get(app.url("/admin/posts/new"))).await;
    let key = create_key(&form);
    let fields = [
        ("csrf", token.as_str()),
        ("create_key", key.as_str()),
        ("title", "Twice"),
        ("body", "sent twice"),
    ];
    let first = send(post_form(&c, &app, "/admin/posts", &fields)).await;
    let again = send(post_form(&c, &app, "/admin/posts", &fields)).await;
    assert_eq!(
        (first.status().as_u16(), again.status().as_u16()),
        (303, 303)
    );
    assert_eq!(first.headers()["location"], again.headers()["location"]);
    assert_eq!(posts().await, 1);
    // The same form sent back to, changed and sent again makes a new post: what was sent is
    // not lost to the first one.
    let changed = [
        ("csrf", token.as_str()),
        ("create_key", key.as_str()),
        ("title", "Twice, changed"),
        ("body", "sent twice"),
    ];
    let r = send(post_form(&c, &app, "/admin/posts", &changed)).await;
    assert_eq!(r.status(), 303);
    assert_ne!(r.headers()["location"], first.headers()["location"]);
    assert_eq!(posts().await, 2);
    // The edit form has no key; the next new form has another.
    let edit = text(c.get(app.url(first.headers()["location"].to_str().unwrap()))).await;
    assert!(!edit.contains("create_key"), "{edit}");
    let other = create_key(&text(c.get(app.url("/admin/posts/new"))).await);
    assert_ne!(other, key);
    let fields = [
        ("csrf", token.as_str()),
        ("create_key", other.as_str()),
        ("title", "Twice"),
        ("body", "sent twice"),
    ];
    assert_eq!(
        status(post_form(&c, &app, "/admin/posts", &fields)).await,
        303
    );
    assert_eq!(posts().await, 3);
    let keyless = [("csrf", token.as_str()), ("title", "Keyless"), ("body", "")];
    for _ in 0..2 {
        assert_eq!(
            status(post_form(&c, &app, "/admin/posts", &keyless)).await,
            303
        );
    }
    assert_eq!(posts().await, 5);
    let bad = [
        ("csrf", token.as_str()),
        ("create_key", "not-a-key"),
        ("title", "Bad key"),
        ("body", ""),
    ];
    assert_eq!(status(post_form(&c, &app, "/admin/posts", &bad)).await, 400);
    assert_eq!(posts().await, 5);
    // A form shown again with an error keeps its key.
    let fields = [
        ("csrf", token.as_str()),
        ("create_key", key.as_str()),
        ("title", ""),
        ("body", "no title"),
    ];
    let r = send(post_form(&c, &app, "/admin/posts", &fields)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(create_key(&r.text().await.unwrap()), key);
}
