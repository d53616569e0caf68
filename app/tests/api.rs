//! The JSON API against the real binary and a real MariaDB.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn login_sets_a_server_side_session_cookie() {
    let (db, app) = app_with_admin("").await;
    let c = client();
    let r = c
        .post(app.url("/api/login"))
        .json(&json!({"username": "admin", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("wrong"), "{body}");

    let r = c
        .post(app.url("/api/login"))
        .json(&json!({"username": "admin", "password": "admin-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("onebox_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP gets no Secure: {cookie}"
    );
    assert_eq!(
        db.value::<u64>("SELECT COUNT(*) FROM sessions").await,
        Some(1)
    );
    let hash: String = db
        .value("SELECT password_hash FROM users WHERE username = 'admin'")
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    // Behind the edge over HTTPS the cookie is Secure.
    let r = client()
        .post(app.url("/api/login"))
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"username": "admin", "password": "admin-password-1"}))
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // The session lives in MySQL: with its row gone, the cookie no longer works.
    let created = c
        .post(app.url("/api/posts"))
        .json(&json!({"title": "t", "body": "b", "published": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    db.exec("DELETE FROM sessions").await;
    let r = c
        .post(app.url("/api/posts"))
        .json(&json!({"title": "t", "body": "b", "published": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn sessions_survive_an_app_restart_and_end_at_logout() {
    let (db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    drop(app);
    let app = App::start(&db, "");
    let r = c
        .post(app.url("/api/posts"))
        .json(&json!({"title": "t", "body": "b", "published": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "the session is in MySQL, not in the process"
    );
    let r = c.post(app.url("/api/logout")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        r.headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        db.value::<u64>("SELECT COUNT(*) FROM sessions").await,
        Some(0)
    );
    let r = c
        .post(app.url("/api/posts"))
        .json(&json!({"title": "t", "body": "b", "published": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn writes_need_a_session() {
    let (_db, app) = app_with_admin("").await;
    let admin = admin_client(&app).await;
    let post = create_post(&admin, &app, "mine", "body", true).await;
    let id = post["id"].as_u64().unwrap();
    let c = client();
    let body = json!({"title": "x", "body": "y", "published": true});
    let answers = [
        c.post(app.url("/api/posts"))
            .json(&body)
            .send()
            .await
            .unwrap(),
        c.put(app.url(&format!("/api/posts/{id}")))
            .json(&body)
            .send()
            .await
            .unwrap(),
        c.delete(app.url(&format!("/api/posts/{id}")))
            .send()
            .await
            .unwrap(),
        c.put(app.url("/api/settings"))
            .json(&json!({"title": "x", "description": "y"}))
            .send()
            .await
            .unwrap(),
    ];
    for r in answers {
        assert_eq!(r.status(), 401, "{}", r.url());
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{v}");
    }
    // Nothing changed.
    let r: Value = c
        .get(app.url(&format!("/api/posts/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["title"], "mine");
}

#[tokio::test]
async fn posts_create_read_update_delete() {
    let (_db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    let r = c
        .post(app.url("/api/posts"))
        .json(&json!({"title": "First", "body": "Hello *world*", "published": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_u64().unwrap();
    assert_eq!(location, format!("/api/posts/{id}"));
    assert_eq!(created["title"], "First");
    assert_eq!(created["body"], "Hello *world*");
    assert_eq!(created["published"], false);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    // A draft: the admin sees it, the public does not.
    let anon = client();
    assert_eq!(
        anon.get(app.url(&format!("/api/posts/{id}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let list: Value = anon
        .get(app.url("/api/posts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["posts"].as_array().unwrap().len(), 0);
    let list: Value = c
        .get(app.url("/api/posts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["posts"].as_array().unwrap().len(), 1);

    let r = c
        .put(app.url(&format!("/api/posts/{id}")))
        .json(&json!({"title": "First!", "body": "changed", "published": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["title"], "First!");
    assert_eq!(updated["published"], true);
    let got: Value = anon
        .get(app.url(&format!("/api/posts/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["body"], "changed");
    let list: Value = anon
        .get(app.url("/api/posts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["posts"][0]["id"].as_u64(), Some(id));
    assert_eq!(list["page"], 1);
    assert!(list["next_page"].is_null());

    assert_eq!(
        c.delete(app.url(&format!("/api/posts/{id}")))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(app.url(&format!("/api/posts/{id}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.delete(app.url(&format!("/api/posts/{id}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn api_lists_newest_first_with_pages() {
    let (_db, app) = app_with_admin("posts_per_page = 2").await;
    let c = admin_client(&app).await;
    for i in 1..=5 {
        create_post(&c, &app, &format!("post {i}"), "", true).await;
    }
    let anon = client();
    let page1: Value = anon
        .get(app.url("/api/posts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = page1["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["post 5", "post 4"]);
    assert_eq!(page1["next_page"], 2);
    let page3: Value = anon
        .get(app.url("/api/posts?page=3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page3["posts"][0]["title"], "post 1");
    assert!(page3["next_page"].is_null());
    let r = anon
        .get(app.url("/api/posts?page=zero"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`page`"));
}

#[tokio::test]
async fn unknown_posts_are_404() {
    let (_db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    let body = json!({"title": "x", "body": "y", "published": true});
    for path in ["/api/posts/999999", "/api/posts/abc", "/api/posts/-1"] {
        let r = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("no post"), "{v}");
        assert_eq!(
            c.put(app.url(path))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            404,
            "{path}"
        );
        assert_eq!(
            c.delete(app.url(path)).send().await.unwrap().status(),
            404,
            "{path}"
        );
    }
    let r = c.get(app.url("/api/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
}

async fn error_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (status, v["error"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let (db, app) = app_with_admin("max_body_bytes = 4096").await;
    let c = admin_client(&app).await;
    let send = |body: String| {
        c.post(app.url("/api/posts"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (s, e) = error_of(send("{not json".into()).await.unwrap()).await;
    assert_eq!(s, 400, "{e}");
    assert!(e.contains("not valid JSON"), "{e}");
    let (s, e) = error_of(
        send(r#"{"title": 5, "body": "b", "published": true}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.contains("`title`")), (400, true), "{e}");
    let (s, e) = error_of(send(r#"{"title": "t", "body": "b"}"#.into()).await.unwrap()).await;
    assert_eq!((s, e.contains("`published`")), (400, true), "{e}");
    let (s, e) = error_of(
        send(r#"{"title": "t", "body": "b", "published": "yes"}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.contains("`published`")), (400, true), "{e}");
    let (s, e) = error_of(
        send(r#"{"title": "t", "body": "b", "published": true, "author": "x"}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.contains("`author`")), (400, true), "{e}");
    let (s, e) = error_of(
        send(r#"{"title": "  ", "body": "b", "published": true}"#.into())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.contains("`title`")), (400, true), "{e}");
    let (s, e) = error_of(send(r#"[1, 2]"#.into()).await.unwrap()).await;
    assert_eq!((s, e.contains("object")), (400, true), "{e}");
    let long_title = "t".repeat(201);
    let (s, e) = error_of(
        send(json!({"title": long_title, "body": "b", "published": true}).to_string())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.contains("`title`")), (413, true), "{e}");
    let long_body = "b".repeat(5000);
    let (s, e) = error_of(
        send(json!({"title": "t", "body": long_body, "published": true}).to_string())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.contains("`body`")), (413, true), "{e}");
    let huge = "b".repeat(200_000);
    let (s, e) = error_of(
        send(json!({"title": "t", "body": huge, "published": true}).to_string())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e.contains("too large")), (413, true), "{e}");
    let r = c
        .post(app.url("/api/posts"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(r).await;
    assert_eq!((s, e.contains("application/json")), (415, true), "{e}");
    let r = c
        .put(app.url("/api/settings"))
        .json(&json!({"title": "t", "description": 3}))
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(r).await;
    assert_eq!((s, e.contains("`description`")), (400, true), "{e}");
    let r = c
        .post(app.url("/api/login"))
        .json(&json!({"username": "admin"}))
        .send()
        .await
        .unwrap();
    let (s, e) = error_of(r).await;
    assert_eq!((s, e.contains("`password`")), (400, true), "{e}");
    // Nothing was stored.
    assert_eq!(db.value::<u64>("SELECT COUNT(*) FROM posts").await, Some(0));
}

#[tokio::test]
async fn sql_looking_input_is_stored_verbatim() {
    let (db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    let title = "Robert'); DROP TABLE posts; --";
    let body = "1' OR '1'='1\"; SELECT * FROM users WHERE ''='\\";
    let post = create_post(&c, &app, title, body, true).await;
    let id = post["id"].as_u64().unwrap();
    let got: Value = client()
        .get(app.url(&format!("/api/posts/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["title"], title);
    assert_eq!(got["body"], body);
    assert_eq!(db.value::<u64>("SELECT COUNT(*) FROM posts").await, Some(1));
    assert_eq!(
        db.value::<String>("SELECT title FROM posts")
            .await
            .as_deref(),
        Some(title)
    );
    // In a login, too.
    let r = client()
        .post(app.url("/api/login"))
        .json(&json!({"username": "admin' -- ", "password": "' OR 1=1 -- "}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn logins_are_throttled() {
    let (_db, app) = app_with_admin("login_max_failures = 3\nlogin_lockout_seconds = 600").await;
    set_password_other(&app);
    let c = client();
    for _ in 0..3 {
        let r = c
            .post(app.url("/api/login"))
            .json(&json!({"username": "admin", "password": "guess"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Even the right password is refused now.
    let r = c
        .post(app.url("/api/login"))
        .json(&json!({"username": "admin", "password": "admin-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 600);
    assert!(r.headers().get("set-cookie").is_none());
    // Another user is not affected.
    let r = c
        .post(app.url("/api/login"))
        .json(&json!({"username": "editor", "password": "editor-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn set_password_other(app: &App) {
    let text = std::fs::read_to_string(&app.config).unwrap();
    assert!(text.contains("[app]"));
    let url = app_database_url(app);
    set_password(&url, "editor", "editor-password");
}

fn app_database_url(app: &App) -> String {
    // The URL the app was started with is on its command line.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", app.child.id())).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let i = args.iter().position(|a| a == "--database-url").unwrap();
    args[i + 1].clone()
}

#[tokio::test]
async fn settings_are_read_and_written() {
    let (_db, app) = app_with_admin("").await;
    let anon = client();
    let s: Value = anon
        .get(app.url("/api/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        s["title"].is_string() && s["description"].is_string(),
        "{s}"
    );
    let c = admin_client(&app).await;
    let r = c
        .put(app.url("/api/settings"))
        .json(&json!({"title": "Foo & Bar", "description": "All about <foo>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = anon
        .get(app.url("/api/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        s,
        json!({"title": "Foo & Bar", "description": "All about <foo>"})
    );
    let home = anon
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("<title>Foo &#38; Bar</title>")
            || home.contains("<title>Foo &amp; Bar</title>"),
        "{home}"
    );
    assert!(
        home.contains("All about &#60;foo&#62;") || home.contains("All about &lt;foo&gt;"),
        "{home}"
    );
}
