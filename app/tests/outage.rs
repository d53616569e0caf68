//! The database going away mid-run and coming back, on a private mariadbd of this test's own.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The tests here each run a private mariadbd; they take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The first answer 200 to `GET path`, asked every 200 ms; fails the test after 60 s without one.
async fn first_200(c: &reqwest::Client, app: &App, path: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = send(c.get(app.url(path))).await;
        if r.status() == 200 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 60 s: {}",
            app.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // Each test has a runtime (and a thread) of its own.
async fn answers_503_while_the_database_is_down_and_recovers_without_restart() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = PrivateMariadb::start();
    let port = onebox_testkit::free_port();
    // No waiting into the outage (database_wait_secs, tested in handover.rs): 503 at once.
    let metrics = format!("metrics_listen = \"127.0.0.1:{port}\"\ndatabase_wait_secs = 0");
    let (_db, mut app) = app_with_admin_on(&server.url(), &metrics).await;
    let c = admin_client(&app).await;
    create_post(&c, &app, "Survivor", "still here", true).await;
    let anon = client();
    for _ in 0..3 {
        assert_eq!(status(anon.get(app.url("/"))).await, 200);
    }

    server.kill();
    // Every kind of request is answered, with 503 (the client gives up after 20 s).
    let r = send(anon.get(app.url("/healthz"))).await;
    assert_eq!(r.status(), 503);
    // A fixed answer: the driver's error text goes to the log, never to the client.
    assert_eq!(r.text().await.unwrap(), "database unavailable\n");
    let log = app.stderr();
    assert!(
        log.contains("health check: the database is unavailable: "),
        "{log}"
    );
    for _ in 0..3 {
        let r = send(anon.get(app.url("/"))).await;
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("unavailable"));
    }
    let r = send(anon.get(app.url("/api/posts"))).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("unavailable"), "{v}");
    assert_eq!(status(api_new_post(&c, &app, "t", "", true)).await, 503);
    assert!(app.running(), "the app keeps running");
    // The metrics count the outage.
    let text = text(anon.get(format!("http://127.0.0.1:{port}/metrics"))).await;
    let unavailable = text
        .lines()
        .find_map(|l| l.strip_prefix("onebox_app_database_errors_total{kind=\"unavailable\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no unavailable count in {text}"));
    assert!(unavailable >= 6.0, "{text}");

    server.resume();
    first_200(&anon, &app, "/healthz").await;
    // Once healthy, pages and the session (stored in MySQL) work again, in the same process.
    let home = send(anon.get(app.url("/"))).await;
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("Survivor"));
    assert_eq!(status(api_new_post(&c, &app, "after", "", true)).await, 201);
    assert!(app.running());
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // Each test has a runtime (and a thread) of its own.
async fn a_frozen_database_is_503_too_and_recovers() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = PrivateMariadb::start();
    let (_db, app) = app_with_admin_on(&server.url(), "database_wait_secs = 0").await;
    let c = admin_client(&app).await;
    create_post(&c, &app, "Thawed", "body", true).await;
    let anon = client();
    assert_eq!(status(anon.get(app.url("/"))).await, 200);

    // The server still accepts connections but answers nothing: requests must not hang (the
    // client gives up after 20 s, the app's own limit is 1 s per query).
    // freeze() returns once every thread of mariadbd has stopped: right after `kill -STOP` a
    // thread not yet stopped could still answer.
    server.freeze().unwrap();
    let home = anon.get(app.url("/")).send().await;
    let health = anon.get(app.url("/healthz")).send().await;
    let api = anon.get(app.url("/api/posts")).send().await;
    server.thaw().unwrap();
    assert_eq!(home.unwrap().status(), 503);
    assert_eq!(health.unwrap().status(), 503);
    assert_eq!(api.unwrap().status(), 503);

    let home = first_200(&anon, &app, "/").await;
    assert!(home.text().await.unwrap().contains("Thawed"));
}

#[tokio::test]
#[allow(clippy::await_holding_lock)] // Each test has a runtime (and a thread) of its own.
async fn healthz_is_up_while_requests_wait_for_the_database_and_503_past_the_wait() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = PrivateMariadb::start();
    let (_db, app) = app_with_admin_on(&server.url(), "database_wait_secs = 3").await;
    let anon = client();
    assert_eq!(text(anon.get(app.url("/healthz"))).await, "ok\n");

    server.kill();
    // The check's own failure starts the outage: requests would wait for the database now, so
    // the app is up (an edge must not take it out of its pool for a restart).
    let r = send(anon.get(app.url("/healthz"))).await;
    let started = Instant::now();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "waiting for the database\n");
    let log = app.stderr();
    assert!(log.contains("requests wait for it"), "{log}");

    // Past database_wait_secs requests answer 503 at once, and so does the health check.
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(started.elapsed())).await;
    let r = send(anon.get(app.url("/healthz"))).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "database unavailable\n");
    assert_eq!(status(anon.get(app.url("/"))).await, 503);

    server.resume();
    let r = first_200(&anon, &app, "/healthz").await;
    assert_eq!(r.text().await.unwrap(), "ok\n");
}

/// A database outage shorter than `database_wait_secs`, through the real onebox-edge, whose
/// health check (every second; three failures in a row take the app out of its pool) sees all
/// of it: a request every 250 ms, each on its own connection, none fails.
#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::await_holding_lock)] // The lock only orders the tests with a private mariadbd.
async fn through_the_edge_an_outage_the_requests_wait_out_fails_none() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = PrivateMariadb::start();
    let (_db, app) = app_with_admin_on(&server.url(), "database_wait_secs = 30").await;
    let edge = common::edge::Edge::start(&app);
    // A cookie takes each request past the edge's page cache to the app; curl waits up to 60 s.
    let args = ["--max-time", "60", "-H", "Cookie: onebox-test=uncached"];
    let tick = Duration::from_millis(250);
    let answers = std::thread::scope(|s| {
        let mut requests = Vec::new();
        let load_for = |how_long: Duration, requests: &mut Vec<_>| {
            let until = Instant::now() + how_long;
            while Instant::now() < until {
                requests.push(s.spawn(|| edge.curl("/", &args)));
                std::thread::sleep(tick);
            }
        };
        load_for(Duration::from_secs(2), &mut requests);
        server.kill();
        load_for(Duration::from_secs(5), &mut requests);
        server.resume();
        load_for(Duration::from_secs(2), &mut requests);
        requests
            .into_iter()
            .map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });
    let log = app.stderr();
    // The edge's checks reached the app during the outage (five seconds: five checks or so).
    assert!(
        log.matches("health check: ").count() >= 3,
        "the health checks did not see the outage:\n{log}"
    );
    let failed: Vec<_> = answers
        .iter()
        .filter(|a| a.status != 200)
        .map(|a| format!("{} {}", a.status, a.body.lines().next().unwrap_or("")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\n{}\n{log}",
        failed.len(),
        answers.len(),
        edge.log()
    );
}

/// Posts written while the database goes away under them: 4 clients create posts through the
/// API, each waiting for its answer, while every connection the app holds is killed 30 times
/// (`KILL CONNECTION`, paced by the load: 8 new posts between rounds) and then mariadbd is
/// restarted. Every creation is answered 201 (a write in flight is tried again once the database
/// answers, within `database_wait_secs`), and the table holds each acknowledged post once and
/// nothing else (a try whose commit the kill left unknown made no second post).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::await_holding_lock)] // The lock only orders the tests with a private mariadbd.
async fn writes_ride_out_killed_connections_and_a_restart_each_made_once() {
    use mysql_async::prelude::Queryable;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = PrivateMariadb::start();
    let (db, app) = app_with_admin_on(&server.url(), "database_wait_secs = 30").await;
    let c = admin_client(&app).await;
    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (c, app, stop, made) = (c.clone(), app.clone(), stop.clone(), made.clone());
            let (acknowledged, failed) = (acknowledged.clone(), failed.clone());
            tokio::spawn(async move {
                // Bounded: at most 1,000 posts a writer, whatever happens.
                for i in 0..1000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let title = format!("w{w}-{i}");
                    let r = send(api_new_post(&c, &app, &title, "body", true)).await;
                    match r.status().as_u16() {
                        201 => acknowledged.lock().unwrap().push(title),
                        status => {
                            let body = r.text().await.unwrap_or_default();
                            failed
                                .lock()
                                .unwrap()
                                .push(format!("{title}: {status} {body}"));
                        }
                    }
                    made.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Waits until `more` creations more than now have been answered.
    let wait_for = |more: usize| {
        let target = made.load(Ordering::Relaxed) + more;
        let made = made.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while made.load(Ordering::Relaxed) < target {
                assert!(Instant::now() < deadline, "the writers stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(8).await;
    let mut admin = mysql_async::Conn::from_url(server.url()).await.unwrap();
    let mut killed = 0;
    for _ in 0..30 {
        killed += kill_connections(&mut admin).await;
        wait_for(8).await;
    }
    drop(admin);
    server.restart().unwrap();
    wait_for(8).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    println!(
        "{killed} connections killed, a restart: {} of {} creations failed",
        failed.len(),
        acknowledged.len() + failed.len()
    );
    assert!(killed > 0, "no connection of the app's was killed");
    assert!(
        failed.is_empty(),
        "{} of {} creations failed: {:?}\n{}",
        failed.len(),
        acknowledged.len() + failed.len(),
        failed.iter().take(5).collect::<Vec<_>>(),
        onebox_testkit::tail(&app.stderr(), 40)
    );
    let mut conn = db.conn().await;
    let mut stored: Vec<(String, u64)> = conn
        .query("SELECT title, COUNT(*) FROM posts GROUP BY title")
        .await
        .unwrap();
    stored.sort();
    let mut expected: Vec<(String, u64)> = acknowledged.into_iter().map(|t| (t, 1)).collect();
    expected.sort();
    assert_eq!(
        stored, expected,
        "the posts stored, each with how many times"
    );
}

/// A creation whose first try's outcome is lost: the insert outlasts the app's one-second query
/// limit (a trigger holds it 1.5 s) and commits after the app gave it up. The app tries again
/// and answers 201 with the post the first try made: one post, not two.
#[tokio::test]
async fn a_creation_tried_again_after_its_outcome_was_lost_makes_one_post() {
    let (db, app) = app_with_admin("database_wait_secs = 30").await;
    let c = admin_client(&app).await;
    db.exec(
        "CREATE TRIGGER slow_insert AFTER INSERT ON posts FOR EACH ROW \
         IF NEW.title = 'slow' THEN SET @slept = SLEEP(1.5); END IF",
    )
    .await;
    let began = Instant::now();
    let r = send(api_new_post(&c, &app, "slow", "lost", true)).await;
    assert_eq!(r.status(), 201, "{}", app.stderr());
    println!("the creation took {} ms", began.elapsed().as_millis());
    let post: Value = r.json().await.unwrap();
    let log = app.stderr();
    assert!(
        log.contains("did not answer within 1000 ms"),
        "the first try did not time out:\n{log}"
    );
    let count: Option<u64> = db
        .value("SELECT COUNT(*) FROM posts WHERE title = 'slow'")
        .await;
    assert_eq!(count, Some(1), "{log}");
    let id: Option<u64> = db.value("SELECT id FROM posts WHERE title = 'slow'").await;
    assert_eq!(Some(post["id"].as_u64().unwrap()), id);
}

/// Deletions whose first try outlasts the app's one-second query limit, so that the app gives
/// the `DELETE` up and tries again:
/// - a post that is there: a trigger holds its `DELETE` 1.5 s, which commits after the app gave
///   it up; the retry's `DELETE` waits for that row and finds nothing left to delete. Answered
///   204: the post was there before the `DELETE` that went out.
/// - an id that never was: the test holds `LOCK TABLES posts READ` for 1.5 s (reads go on, writes
///   wait). Answered 404, not taken for a post an earlier try deleted.
#[tokio::test]
async fn deletions_whose_first_try_was_given_up_answer_what_was_there() {
    use mysql_async::prelude::Queryable;
    let (db, app) = app_with_admin("database_wait_secs = 30").await;
    let c = admin_client(&app).await;
    let r = send(api_new_post(&c, &app, "doomed", "body", true)).await;
    assert_eq!(r.status(), 201, "{}", app.stderr());
    let id = r.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    db.exec(
        "CREATE TRIGGER slow_delete BEFORE DELETE ON posts FOR EACH ROW \
         IF OLD.title = 'doomed' THEN SET @slept = SLEEP(1.5); END IF",
    )
    .await;
    let r = send(c.delete(app.url(&format!("/api/posts/{id}")))).await;
    let log = app.stderr();
    assert_eq!(r.status(), 204, "DELETE of the post:\n{log}");
    assert!(
        log.contains("did not answer within 1000 ms"),
        "the first try did not time out:\n{log}"
    );
    let left: Option<u64> = db
        .value(&format!("SELECT COUNT(*) FROM posts WHERE id = {id}"))
        .await;
    assert_eq!(left, Some(0), "{log}");

    let never = format!("/api/posts/{}", id + 1000);
    let mut lock = db.conn().await;
    lock.query_drop("LOCK TABLES posts READ").await.unwrap();
    let unlock = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        lock.query_drop("UNLOCK TABLES").await.unwrap();
        lock.disconnect().await.unwrap();
    });
    let r = send(c.delete(app.url(&never))).await;
    unlock.await.unwrap();
    assert_eq!(r.status(), 404, "DELETE {never}:\n{}", app.stderr());
}
