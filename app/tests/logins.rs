//! Login storms and throttling per client: a storm of wrong passwords keeps the app's memory
//! bounded and its pages answering, and locks out only the storming client.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use std::net::IpAddr;
use std::time::Duration;

/// An HTTP client whose connections come from the loopback address `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The process id of a child, whichever guard the common fixtures keep it in.
trait Pid {
    fn pid_of(&self) -> u32;
}

impl Pid for std::process::Child {
    fn pid_of(&self) -> u32 {
        self.id()
    }
}

impl Pid for onebox_testkit::ChildGuard {
    fn pid_of(&self) -> u32 {
        self.pid()
    }
}

/// A field of /proc/PID/status in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `POST /api/login` from `c`, with `X-Forwarded-For: xff` when given: the status.
async fn login_status(
    c: &reqwest::Client,
    app: &App,
    user: &str,
    password: &str,
    xff: Option<&str>,
) -> u16 {
    let mut request = api_login(c, app, user, password);
    if let Some(xff) = xff {
        request = request.header("x-forwarded-for", xff);
    }
    status(request).await.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_storm_keeps_memory_bounded_pages_up_and_other_clients_in() {
    let (_db, app) = app_with_admin("").await;
    let pid = app.child.pid_of();
    let storm = client_from("127.0.0.1");

    // 300 wrong logins for unknown users, 150 at a time, while a reader loads the home page.
    let reader = {
        let anon = client_from("127.0.0.2");
        let home = app.url("/");
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..20 {
                let r = anon.get(&home).send().await.unwrap();
                answers.push(r.status().as_u16());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answers
        })
    };
    let mut statuses = Vec::new();
    for wave in 0..2 {
        let attempts = (0..150).map(|i| {
            let c = storm.clone();
            let url = app.url("/api/login");
            tokio::spawn(async move {
                let body = serde_json::json!({
                    "username": format!("nobody-{wave}-{i}"),
                    "password": "wrong password",
                });
                c.post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        });
        let attempts: Vec<_> = attempts.collect();
        for a in attempts {
            statuses.push(a.await.unwrap());
        }
    }
    let pages = reader.await.unwrap();
    let peak_mib = status_kib(pid, "VmHWM") / 1024;
    let refused = statuses.iter().filter(|s| [429, 503].contains(s)).count();
    let wrong = statuses.iter().filter(|&&s| s == 401).count();
    eprintln!("storm: {wrong} × 401, {refused} × 429/503, peak RSS {peak_mib} MiB");
    assert_eq!(wrong + refused, 300, "only 401, 429 and 503: {statuses:?}");
    assert!(refused > 0, "some attempts were refused without hashing");
    assert!(peak_mib < 200, "peak RSS {peak_mib} MiB during the storm");
    assert!(
        pages.iter().all(|&s| s == 200),
        "the home page answered: {pages:?}"
    );

    // The storming address is locked out now (after at most 30 counted failures)...
    let mut locked = false;
    for i in 0..40 {
        let name = format!("someone-{i}");
        if login_status(&storm, &app, &name, "wrong password", None).await == 429 {
            locked = true;
            break;
        }
    }
    assert!(locked, "the storming client gets 429");
    assert_eq!(
        login_status(&storm, &app, "admin", "admin-password-1", None).await,
        429
    );
    // ... but not the admin from another address.
    let other = client_from("127.0.0.3");
    assert_eq!(
        login_status(&other, &app, "admin", "admin-password-1", None).await,
        200
    );
    // Through the edge (a trusted proxy on 127.0.0.1) the client is X-Forwarded-For's.
    let via_edge = login_status(
        &storm,
        &app,
        "admin",
        "admin-password-1",
        Some("198.51.100.7"),
    );
    assert_eq!(via_edge.await, 200);
}

#[tokio::test]
async fn failures_count_per_client_and_name_and_forwarded_headers_only_from_the_edge() {
    let (_db, app) = app_with_admin("login_max_failures = 3").await;
    // Three wrong passwords for admin from one address lock admin out there only.
    let guesser = client_from("127.0.0.5");
    for _ in 0..3 {
        assert_eq!(
            login_status(&guesser, &app, "admin", "guess", None).await,
            401
        );
    }
    let r = send(api_login(&guesser, &app, "admin", "admin-password-1")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // Another name from the same address is still checked.
    assert_eq!(
        login_status(&guesser, &app, "someone", "guess", None).await,
        401
    );
    // The admin from elsewhere is not locked out.
    let admin = client_from("127.0.0.6");
    assert_eq!(
        login_status(&admin, &app, "admin", "admin-password-1", None).await,
        200
    );

    // A client that is not the edge cannot choose its address with X-Forwarded-For.
    let spoofer = client_from("127.0.0.7");
    for i in 0..3 {
        let xff = format!("198.51.100.{i}");
        let s = login_status(&spoofer, &app, "admin", "guess", Some(&xff)).await;
        assert_eq!(s, 401);
    }
    let s = login_status(
        &spoofer,
        &app,
        "admin",
        "admin-password-1",
        Some("203.0.113.1"),
    )
    .await;
    assert_eq!(s, 429, "counted as 127.0.0.7 whatever its header says");
}

#[tokio::test]
async fn the_login_form_caps_the_user_name_as_the_api_does() {
    let (_db, app) = app_with_admin("").await;
    let c = client();
    let long = "u".repeat(65);
    let (s, e) = error_of(send(api_login(&c, &app, &long, "whatever-password")).await).await;
    assert_eq!((s, e.contains("`username`")), (400, true), "{e}");
    let page = text(c.get(app.url("/admin"))).await;
    assert!(page.contains("maxlength=\"64\""), "{page}");
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let token = page[at..at + 64].to_string();
    let fields = [
        ("csrf", token.as_str()),
        ("username", long.as_str()),
        ("password", "whatever-password"),
    ];
    let r = send(post_form(&c, &app, "/admin/login", &fields)).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`username`"));
}
