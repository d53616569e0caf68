//! The JSON API against the real binary and a real MariaDB.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn login_sets_a_server_side_session_cookie() {
    let (db, app) = app_with_admin("").await;
    let c = client();
    let r = send(api_login(&c, &app, "admin", "wrong-password")).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("wrong"), "{body}");

    let r = send(api_login(&c, &app, "admin", "admin-password-1")).await;
    assert_eq!(r.status(), 200);
    let cookie = header(&r, "set-cookie");
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
    let https = api_login(&client(), &app, "admin", "admin-password-1")
        .header("X-Forwarded-Proto", "https");
    let cookie = header(&send(https).await, "set-cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");

    // The session lives in MySQL: with its row gone, the cookie no longer works.
    assert_eq!(status(api_new_post(&c, &app, "t", "b", false)).await, 201);
    db.exec("DELETE FROM sessions").await;
    assert_eq!(status(api_new_post(&c, &app, "t", "b", false)).await, 401);
}

#[tokio::test]
async fn sessions_survive_an_app_restart_and_end_at_logout() {
    let (db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    drop(app);
    let app = App::start(&db, "");
    assert_eq!(
        status(api_new_post(&c, &app, "t", "b", true)).await,
        201,
        "the session is in MySQL, not in the process"
    );
    let r = send(c.post(app.url("/api/logout"))).await;
    assert_eq!(r.status(), 204);
    assert!(header(&r, "set-cookie").contains("Max-Age=0"));
    assert_eq!(
        db.value::<u64>("SELECT COUNT(*) FROM sessions").await,
        Some(0)
    );
    assert_eq!(status(api_new_post(&c, &app, "t", "b", true)).await, 401);
}

#[tokio::test]
async fn writes_need_a_session() {
    let (_db, app) = app_with_admin("").await;
    let admin = admin_client(&app).await;
    let post = create_post(&admin, &app, "mine", "body", true).await;
    let id = post["id"].as_u64().unwrap();
    let c = client();
    let one = app.url(&format!("/api/posts/{id}"));
    let answers = [
        send(api_new_post(&c, &app, "x", "y", true)).await,
        send(
            c.put(&one)
                .json(&json!({"title": "x", "body": "y", "published": true})),
        )
        .await,
        send(c.delete(&one)).await,
        send(
            c.put(app.url("/api/settings"))
                .json(&json!({"title": "x", "description": "y"})),
        )
        .await,
    ];
    for r in answers {
        assert_eq!(r.status(), 401, "{}", r.url());
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].is_string(), "{v}");
    }
    // Nothing changed.
    assert_eq!(json(c.get(&one)).await["title"], "mine");
}

#[tokio::test]
async fn posts_create_read_update_delete() {
    let (_db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    let r = send(api_new_post(&c, &app, "First", "Hello *world*", false)).await;
    assert_eq!(r.status(), 201);
    let location = header(&r, "location");
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_u64().unwrap();
    let one = app.url(&format!("/api/posts/{id}"));
    assert_eq!(location, format!("/api/posts/{id}"));
    assert_eq!(created["title"], "First");
    assert_eq!(created["body"], "Hello *world*");
    assert_eq!(created["published"], false);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    // A draft: the admin sees it, the public does not.
    let anon = client();
    assert_eq!(status(anon.get(&one)).await, 404);
    let list = json(anon.get(app.url("/api/posts"))).await;
    assert_eq!(list["posts"].as_array().unwrap().len(), 0);
    let list = json(c.get(app.url("/api/posts"))).await;
    assert_eq!(list["posts"].as_array().unwrap().len(), 1);

    let r = send(
        c.put(&one)
            .json(&json!({"title": "First!", "body": "changed", "published": true})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let updated: Value = r.json().await.unwrap();
    assert_eq!(updated["title"], "First!");
    assert_eq!(updated["published"], true);
    assert_eq!(json(anon.get(&one)).await["body"], "changed");
    let list = json(anon.get(app.url("/api/posts"))).await;
    assert_eq!(list["posts"][0]["id"].as_u64(), Some(id));
    assert_eq!(list["page"], 1);
    assert!(list["next_page"].is_null());

    assert_eq!(status(c.delete(&one)).await, 204);
    assert_eq!(status(c.get(&one)).await, 404);
    assert_eq!(status(c.delete(&one)).await, 404);
}

#[tokio::test]
async fn api_lists_newest_first_with_pages() {
    let (_db, app) = app_with_admin("posts_per_page = 2").await;
    let c = admin_client(&app).await;
    for i in 1..=5 {
        create_post(&c, &app, &format!("post {i}"), "", true).await;
    }
    let anon = client();
    let page1 = json(anon.get(app.url("/api/posts"))).await;
    let titles: Vec<&str> = page1["posts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["post 5", "post 4"]);
    assert_eq!(page1["next_page"], 2);
    let page3 = json(anon.get(app.url("/api/posts?page=3"))).await;
    assert_eq!(page3["posts"][0]["title"], "post 1");
    assert!(page3["next_page"].is_null());
    let r = send(anon.get(app.url("/api/posts?page=zero"))).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`page`"));
}

#[tokio::test]
async fn unknown_posts_are_404() {
    let (_db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    let body = json!({"title": "x", "body": "y", "published": true});
    for path in ["/api/posts/999999", "/api/posts/abc", "/api/posts/-1"] {
        let r = send(c.get(app.url(path))).await;
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("no post"), "{v}");
        assert_eq!(
            status(c.put(app.url(path)).json(&body)).await,
            404,
            "{path}"
        );
        assert_eq!(status(c.delete(app.url(path))).await, 404, "{path}");
    }
    let r = send(c.get(app.url("/api/nothing-here"))).await;
    assert_eq!(r.status(), 404);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let (db, app) = app_with_admin("max_body_bytes = 4096").await;
    let c = admin_client(&app).await;
    let long_title = "t".repeat(201);
    let long_body = "b".repeat(5000);
    let huge = "b".repeat(200_000);
    // Each body posted as JSON to /api/posts, the status it gets and what its error names.
    let cases = [
        ("{not json".to_string(), 400, "not valid JSON"),
        (
            r#"{"title": 5, "body": "b", "published": true}"#.into(),
            400,
            "`title`",
        ),
        (r#"{"title": "t", "body": "b"}"#.into(), 400, "`published`"),
        (
            r#"{"title": "t", "body": "b", "published": "yes"}"#.into(),
            400,
            "`published`",
        ),
        (
            r#"{"title": "t", "body": "b", "published": true, "author": "x"}"#.into(),
            400,
            "`author`",
        ),
        (
            r#"{"title": "  ", "body": "b", "published": true}"#.into(),
            400,
            "`title`",
        ),
        (r#"[1, 2]"#.into(), 400, "object"),
        (
            json!({"title": long_title, "body": "b", "published": true}).to_string(),
            413,
            "`title`",
        ),
        (
            json!({"title": "t", "body": long_body, "published": true}).to_string(),
            413,
            "`body`",
        ),
        (
            json!({"title": "t", "body": huge, "published": true}).to_string(),
            413,
            "too large",
        ),
    ];
    for (body, want, names) in cases {
        let request = c
            .post(app.url("/api/posts"))
            .header("content-type", "application/json")
            .body(body);
        let (s, e) = error_of(send(request).await).await;
        assert_eq!((s, e.contains(names)), (want, true), "{e}");
    }
    let plain = c
        .post(app.url("/api/posts"))
        .header("content-type", "text/plain")
        .body("{}");
    let (s, e) = error_of(send(plain).await).await;
    assert_eq!((s, e.contains("application/json")), (415, true), "{e}");
    let settings = c
        .put(app.url("/api/settings"))
        .json(&json!({"title": "t", "description": 3}));
    let (s, e) = error_of(send(settings).await).await;
    assert_eq!((s, e.contains("`description`")), (400, true), "{e}");
    let login = c
        .post(app.url("/api/login"))
        .json(&json!({"username": "admin"}));
    let (s, e) = error_of(send(login).await).await;
    assert_eq!((s, e.contains("`password`")), (400, true), "{e}");
    // Nothing was stored.
    assert_eq!(db.value::<u64>("SELECT COUNT(*) FROM posts").await, Some(0));
}

/// A body declared larger than the limit gets its 413 at once, and the client can still send
/// the rest and read the answer: the app drains the connection before closing it (lingering
/// close) rather than resetting it under the client's writes, which clients report as a broken
/// connection instead of the 413 (reqwest did, in a CI run).
#[tokio::test]
async fn an_early_413_reaches_a_client_still_sending_its_body() {
    use std::io::{Read, Write};
    let (_db, app) = app_with_admin("max_body_bytes = 4096").await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let body_len = 4 << 20; // far more than the socket buffers hold
    for round in 0..5 {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let head = format!(
            "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).unwrap();
        let mut writer = conn.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let chunk = vec![b' '; 64 * 1024];
            (0..body_len / chunk.len()).try_for_each(|_| writer.write_all(&chunk))
        });
        let mut answer = Vec::new();
        let read = conn.read_to_end(&mut answer);
        let sent = sender.join().unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            sent.is_ok() && read.is_ok(),
            "round {round}: sending the body: {sent:?}, reading the answer: {read:?}; answer so far:\n{answer}"
        );
        assert!(
            answer.starts_with("HTTP/1.1 413 ") && answer.contains("too large"),
            "round {round}: {answer}"
        );
    }
}

#[tokio::test]
async fn sql_looking_input_is_stored_verbatim() {
    let (db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    let title = "Robert'); DROP TABLE posts; --";
    let body = "1' OR '1'='1\"; SELECT * FROM users WHERE ''='\\";
    let post = create_post(&c, &app, title, body, true).await;
    let id = post["id"].as_u64().unwrap();
    let got = json(client().get(app.url(&format!("/api/posts/{id}")))).await;
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
    let forged = api_login(&client(), &app, "admin' -- ", "' OR 1=1 -- ");
    assert_eq!(status(forged).await, 401);
}

#[tokio::test]
async fn logins_are_throttled() {
    let (db, app) = app_with_admin("login_max_failures = 3\nlogin_lockout_secs = 600").await;
    set_password(&db.url, "editor", "editor-password");
    let c = client();
    for _ in 0..3 {
        assert_eq!(status(api_login(&c, &app, "admin", "guess")).await, 401);
    }
    // Even the right password is refused now.
    let r = send(api_login(&c, &app, "admin", "admin-password-1")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!(retry > 0 && retry <= 600);
    assert!(r.headers().get("set-cookie").is_none());
    // Another user is not affected.
    assert_eq!(
        status(api_login(&c, &app, "editor", "editor-password")).await,
        200
    );
}

#[tokio::test]
async fn settings_are_read_and_written() {
    let (_db, app) = app_with_admin("").await;
    let anon = client();
    let s = json(anon.get(app.url("/api/settings"))).await;
    assert!(
        s["title"].is_string() && s["description"].is_string(),
        "{s}"
    );
    let c = admin_client(&app).await;
    let put = c
        .put(app.url("/api/settings"))
        .json(&json!({"title": "Foo & Bar", "description": "All about <foo>"}));
    assert_eq!(status(put).await, 200);
    let s = json(anon.get(app.url("/api/settings"))).await;
    assert_eq!(
        s,
        json!({"title": "Foo & Bar", "description": "All about <foo>"})
    );
    let home = text(anon.get(app.url("/"))).await;
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

/// A creation sent again with the same `Idempotency-Key` (a client that lost the first answer)
/// gets the same post, 201 with the same id and `Location`, and no second post; another key,
/// or the same key with other fields, makes another post, so does each request without one; the same key from another user is
/// that user's own; a key that is not 1-255 visible ASCII characters, or two of them, is a 400
/// naming the header, nothing made.
#[tokio::test]
async fn a_creation_sent_again_with_its_idempotency_key_makes_one_post() {
    let (db, app) = app_with_admin("").await;
    set_password(&db.url, "editor", "editor-password-1");
    let c = admin_client(&app).await;
    let posts = async || db.value::<u64>("SELECT COUNT(*) FROM posts").await.unwrap();
    let with_key = |c: &reqwest::Client, key: &str| {
        api_new_post(c, &app, "Once", "body", true).header("Idempotency-Key", key.to_string())
    };
    let first = send(with_key(&c, "6f1c2a5e-0b7d-4a35-9a53-1f3c0b9d2e47")).await;
    let again = send(with_key(&c, "6f1c2a5e-0b7d-4a35-9a53-1f3c0b9d2e47")).await;
    assert_eq!(
        (first.status().as_u16(), again.status().as_u16()),
        (201, 201)
    );
    assert_eq!(first.headers()["location"], again.headers()["location"]);
    let (a, b): (serde_json::Value, serde_json::Value) =
        (first.json().await.unwrap(), again.json().await.unwrap());
    assert_eq!(a["id"], b["id"]);
    assert_eq!(posts().await, 1);
    assert_eq!(status(with_key(&c, "another-key")).await, 201);
    assert_eq!(posts().await, 2);
    // The same key with other fields: another post (what was sent is not lost to the first).
    let other = api_new_post(&c, &app, "Other", "body", true)
        .header("Idempotency-Key", "6f1c2a5e-0b7d-4a35-9a53-1f3c0b9d2e47");
    let other: serde_json::Value = send(other).await.json().await.unwrap();
    assert_ne!(other["id"], a["id"]);
    assert_eq!(posts().await, 3);
    for _ in 0..2 {
        assert_eq!(
            status(api_new_post(&c, &app, "Keyless", "", true)).await,
            201
        );
    }
    assert_eq!(posts().await, 5);
    let editor = client();
    let r = send(api_login(&editor, &app, "editor", "editor-password-1")).await;
    assert_eq!(r.status(), 200);
    let theirs = send(with_key(&editor, "6f1c2a5e-0b7d-4a35-9a53-1f3c0b9d2e47")).await;
    assert_eq!(theirs.status(), 201);
    let theirs: serde_json::Value = theirs.json().await.unwrap();
    assert_ne!(theirs["id"], a["id"]);
    assert_eq!(posts().await, 6);
    let long = "k".repeat(256);
    for bad in ["", "with space", "ключ", long.as_str()] {
        let r = send(api_new_post(&c, &app, "Bad", "", true).header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        ))
        .await;
        let (code, message) = error_of(r).await;
        assert_eq!(code, 400, "{bad:?}: {message}");
        assert!(message.contains("Idempotency-Key"), "{message}");
    }
    let two = api_new_post(&c, &app, "Bad", "", true)
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b");
    assert_eq!(error_of(send(two).await).await.0, 400);
    assert_eq!(posts().await, 6);
}
