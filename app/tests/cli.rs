//! The command line: `admin set-password`, the configuration file and its overrides.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use std::process::{Command, Stdio};

async fn login(app: &App, user: &str, password: &str) -> reqwest::StatusCode {
    status(api_login(&client(), app, user, password)).await
}

#[tokio::test]
async fn set_password_reads_stdin_or_generates_one() {
    let db = TestDb::new().await;
    set_password(&db.url, "admin", "first-password");
    let app = App::start(&db, "");
    assert_eq!(login(&app, "admin", "first-password").await, 200);

    let out = set_password_command(&db.url, "admin")
        .arg("--generate")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the password, once: {stdout:?}");
    let generated = lines[0];
    assert!(generated.len() >= 20);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(generated),
        "printed once only"
    );
    assert_eq!(login(&app, "admin", "first-password").await, 401);
    assert_eq!(login(&app, "admin", generated).await, 200);
}

#[tokio::test]
async fn changing_a_password_ends_the_sessions() {
    let (db, app) = app_with_admin("").await;
    let c = admin_client(&app).await;
    set_password(&db.url, "admin", "another-password");
    assert_eq!(status(api_new_post(&c, &app, "t", "", true)).await, 401);
}

#[tokio::test]
async fn short_passwords_are_refused() {
    let db = TestDb::new().await;
    let out = run_set_password(&db.url, "admin", "short");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
}

#[tokio::test]
async fn config_errors_name_file_and_line() {
    let dir = TempDir::new("cfg");
    let path = dir.0.join("site.toml");
    // onebox-app started on the site file `text`.
    let start_with = |text: &str| {
        std::fs::write(&path, text).unwrap();
        Command::new(binary())
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = start_with(
        "[site]\ndomain = \"foobar.com\"\n[app]\nlisten = \"127.0.0.1:0\"\ndatabase = \"x\"\n",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:5:", path.display())), "{err}");
    assert!(err.contains("database"), "{err}");

    let out = start_with("[site]\ndomain = \"foobar.com\"\n[app]\nposts_per_page = 0\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("posts_per_page"));
}

#[tokio::test]
async fn command_line_overrides_the_file() {
    let db = TestDb::new().await;
    // The file names a database that does not exist and a port in use; the flags win.
    let app = App::start(
        &db,
        "listen = \"127.0.0.1:1\"\ndatabase_url = \"mysql://nobody@localhost/nothing?socket=/nonexistent.sock\"",
    );
    assert_eq!(status(client().get(app.url("/healthz"))).await, 200);
    assert!(!app.base.ends_with(":1"));
}
