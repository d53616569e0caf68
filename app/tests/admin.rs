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

/// A client logged in through the admin login form, and the dashboard's CSRF token.
async fn form_login(app: &App) -> (reqwest::Client, String) {
    let c = client();
    let r = c.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with("onebox_login_csrf=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"password\""), "{page}");
    let token = csrf(&page);
    let r = c
        .post(app.url("/admin/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("username", "admin"),
            ("password", "admin-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin");
    let page = c
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    let page = c
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf(&page);
    // No token, or another one: refused before the password is even looked at.
    for bad in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let r = c
            .post(app.url("/admin/login"))
            .form(&[
                ("csrf", bad),
                ("username", "admin"),
                ("password", "admin-password-1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "token {bad:?}");
    }
    // A form posted by another site, without this browser's cookie.
    let r = client()
        .post(app.url("/admin/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("username", "admin"),
            ("password", "admin-password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        db.value::<u64>("SELECT COUNT(*) FROM sessions").await,
        Some(0)
    );
    let r = c
        .post(app.url("/admin/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("username", "admin"),
            ("password", "nope"),
        ])
        .send()
        .await
        .unwrap();
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
        let r = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/admin");
    }
    let r = c
        .post(app.url("/admin/posts"))
        .form(&[("csrf", "x"), ("title", "t"), ("body", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn the_editor_creates_edits_publishes_unpublishes_and_deletes() {
    let (db, app) = app_with_admin("").await;
    let (c, token) = form_login(&app).await;
    let new = c
        .get(app.url("/admin/posts/new"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csrf(&new), token);
    let r = c
        .post(app.url("/admin/posts"))
        .form(&[
            ("csrf", token.as_str()),
            ("title", "From the form"),
            ("body", "Line one\r\n</textarea><script>x()</script>"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let id: u64 = db
        .value("SELECT id FROM posts WHERE title = 'From the form'")
        .await
        .unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("/admin/posts/{id}").as_str()
    );
    assert_eq!(
        db.value::<bool>("SELECT published FROM posts").await,
        Some(false),
        "no box ticked: a draft"
    );
    assert_eq!(
        db.value::<String>("SELECT body FROM posts").await.unwrap(),
        "Line one\n</textarea><script>x()</script>"
    );
    let editor = c
        .get(app.url(&format!("/admin/posts/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !editor.contains("<script>") && !editor.contains("</textarea><"),
        "{editor}"
    );

    let publish = |action: &'static str| {
        let c = c.clone();
        let url = app.url(&format!("/admin/posts/{id}/{action}"));
        let token = token.clone();
        async move {
            c.post(url)
                .form(&[("csrf", token.as_str())])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(publish("publish").await, 303);
    assert_eq!(
        db.value::<bool>("SELECT published FROM posts").await,
        Some(true)
    );
    assert!(
        client()
            .get(app.url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("From the form")
    );
    assert_eq!(publish("unpublish").await, 303);
    assert_eq!(
        db.value::<bool>("SELECT published FROM posts").await,
        Some(false)
    );

    let r = c
        .post(app.url(&format!("/admin/posts/{id}")))
        .form(&[
            ("csrf", token.as_str()),
            ("title", "Edited"),
            ("body", "new"),
            ("published", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        db.value::<String>("SELECT title FROM posts").await.unwrap(),
        "Edited"
    );
    assert_eq!(
        db.value::<bool>("SELECT published FROM posts").await,
        Some(true)
    );

    // A bad title keeps the text and says what is wrong.
    let r = c
        .post(app.url(&format!("/admin/posts/{id}")))
        .form(&[
            ("csrf", token.as_str()),
            ("title", " "),
            ("body", "kept text"),
            ("published", "1"),
        ])
        .send()
        .await
        .unwrap();
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
        let attempts = [
            c.post(app.url("/admin/posts"))
                .form(&[("csrf", bad), ("title", "forged"), ("body", "")])
                .send()
                .await
                .unwrap(),
            c.post(app.url(&format!("/admin/posts/{id}")))
                .form(&[("csrf", bad), ("title", "forged"), ("body", "")])
                .send()
                .await
                .unwrap(),
            c.post(app.url(&format!("/admin/posts/{id}/unpublish")))
                .form(&[("csrf", bad)])
                .send()
                .await
                .unwrap(),
            c.post(app.url(&format!("/admin/posts/{id}/delete")))
                .form(&[("csrf", bad)])
                .send()
                .await
                .unwrap(),
            c.post(app.url("/admin/settings"))
                .form(&[("csrf", bad), ("title", "forged"), ("description", "")])
                .send()
                .await
                .unwrap(),
            c.post(app.url("/admin/logout"))
                .form(&[("csrf", bad)])
                .send()
                .await
                .unwrap(),
        ];
        for r in attempts {
            assert_eq!(r.status(), 403, "{}", r.url());
        }
    }
    assert_eq!(
        db.value::<String>("SELECT title FROM posts").await.unwrap(),
        "Keep me"
    );
    assert_eq!(
        db.value::<bool>("SELECT published FROM posts").await,
        Some(true)
    );
    assert_eq!(db.value::<u64>("SELECT COUNT(*) FROM posts").await, Some(1));
    assert_ne!(
        db.value::<String>("SELECT title FROM settings")
            .await
            .unwrap(),
        "forged"
    );
    // The real token works, and logging out ends the session.
    let r = c
        .post(app.url("/admin/settings"))
        .form(&[
            ("csrf", token.as_str()),
            ("title", "New <title>"),
            ("description", "d"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        db.value::<String>("SELECT title FROM settings")
            .await
            .unwrap(),
        "New <title>"
    );
    let page = c
        .get(app.url("/admin/settings"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("New <title>"), "escaped: {page}");
    let r = c
        .post(app.url("/admin/logout"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = c
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"password\""));
}
