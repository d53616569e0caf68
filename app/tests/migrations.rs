//! Schema migrations at start: applied once, under a lock, stopping on failure with a truthful
//! recorded version.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;

const VERSIONS: u64 = 5;

/// How many versions `schema_migrations` records.
async fn applied(db: &TestDb) -> Option<u64> {
    db.value("SELECT COUNT(*) FROM schema_migrations").await
}

/// The highest version `schema_migrations` records.
async fn version(db: &TestDb) -> Option<u64> {
    db.value("SELECT MAX(version) FROM schema_migrations").await
}

/// What onebox-app printed when it refused to start on `db`; fails the test when it started.
fn failed_start(db: &TestDb) -> String {
    let dir = TempDir::new("fail");
    let config = write_config(&dir.0, "");
    App::try_start(&db.url, &config, &dir).expect_err("the start must fail")
}

#[tokio::test]
async fn a_fresh_database_gets_every_migration_once() {
    let db = TestDb::new().await;
    let app = App::start(&db, "");
    assert_eq!(applied(&db).await, Some(VERSIONS));
    assert_eq!(version(&db).await, Some(VERSIONS));
    drop(app);
    // A restart applies nothing again.
    let _app = App::start(&db, "");
    assert_eq!(applied(&db).await, Some(VERSIONS));
}

#[tokio::test]
async fn two_instances_starting_together_do_not_race() {
    for _ in 0..3 {
        let db = TestDb::new().await;
        let url = db.url.clone();
        let url2 = db.url.clone();
        let a = std::thread::spawn(move || App::start_url(&url, ""));
        let b = std::thread::spawn(move || App::start_url(&url2, ""));
        let (mut a, mut b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a.running() && b.running());
        assert_eq!(applied(&db).await, Some(VERSIONS));
        assert!(
            !a.stderr().contains("ERROR") && !b.stderr().contains("ERROR"),
            "{}{}",
            a.stderr(),
            b.stderr()
        );
    }
}

#[tokio::test]
async fn a_failing_migration_stops_the_start_and_keeps_the_version_truthful() {
    let db = TestDb::new().await;
    // Something in the way of migration 2 (sessions), but not of migration 1.
    db.exec("CREATE TABLE sessions (something_else INT)").await;
    let err = failed_start(&db);
    assert!(err.contains("0002_sessions.sql"), "{err}");
    assert!(err.contains("stays at version 1"), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(version(&db).await, Some(1));
    // Once the obstacle is gone, the next start carries on from version 1.
    db.exec("DROP TABLE sessions").await;
    let _app = App::start(&db, "");
    assert_eq!(version(&db).await, Some(VERSIONS));
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let db = TestDb::new().await;
    drop(App::start(&db, ""));
    db.exec("INSERT INTO schema_migrations (version, file) VALUES (999, '0999_future.sql')")
        .await;
    let err = failed_start(&db);
    assert!(err.contains("version 999"), "{err}");
}
