//! The database going away mid-run and coming back, on a private mariadbd of this test's own.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The tests here each run a private mariadbd; they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[tokio::test]
#[allow(clippy::await_holding_lock)] // Each test has a runtime (and a thread) of its own.
async fn answers_503_while_the_database_is_down_and_recovers_without_restart() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = PrivateMariadb::start();
    let db = TestDb::on(&server.url()).await;
    set_password(&db.url, "admin", "admin-password-1");
    let mut app = App::start(&db, "");
    let c = admin_client(&app).await;
    create_post(&c, &app, "Survivor", "still here", true).await;
    let anon = client();
    for _ in 0..3 {
        assert_eq!(anon.get(app.url("/")).send().await.unwrap().status(), 200);
    }

    server.kill();
    // Every kind of request is answered, with 503 (the client gives up after 20 s).
    let r = anon.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    for _ in 0..3 {
        let r = anon.get(app.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("unavailable"));
    }
    let r = anon.get(app.url("/api/posts")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("unavailable"), "{v}");
    let r = c
        .post(app.url("/api/posts"))
        .json(&serde_json::json!({"title": "t", "body": "", "published": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(app.running(), "the app keeps running");

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = anon.get(app.url("/healthz")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 60 s: {}",
            app.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once healthy, pages and the session (stored in MySQL) work again, in the same process.
    let home = anon.get(app.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("Survivor"));
    let r = c
        .post(app.url("/api/posts"))
        .json(&serde_json::json!({"title": "after", "body": "", "published": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(app.running());
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // Each test has a runtime (and a thread) of its own.
async fn a_frozen_database_is_503_too_and_recovers() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = PrivateMariadb::start();
    let db = TestDb::on(&server.url()).await;
    set_password(&db.url, "admin", "admin-password-1");
    let app = App::start(&db, "");
    let c = admin_client(&app).await;
    create_post(&c, &app, "Thawed", "body", true).await;
    let anon = client();
    assert_eq!(anon.get(app.url("/")).send().await.unwrap().status(), 200);

    // The server still accepts connections but answers nothing: requests must not hang (the
    // client gives up after 20 s, the app's own limit is 1 s per query).
    server.signal("STOP");
    let home = anon.get(app.url("/")).send().await;
    let health = anon.get(app.url("/healthz")).send().await;
    let api = anon.get(app.url("/api/posts")).send().await;
    server.signal("CONT");
    assert_eq!(home.unwrap().status(), 503);
    assert_eq!(health.unwrap().status(), 503);
    assert_eq!(api.unwrap().status(), 503);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = anon.get(app.url("/")).send().await.unwrap();
        if r.status() == 200 {
            assert!(r.text().await.unwrap().contains("Thawed"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 60 s: {}",
            app.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
