//! The app behind the real onebox-edge and its page cache (the edge binary is the workspace's
//! release build beside this test's onebox-app): the public pages are served from the cache,
//! a change made through the edge purges it at once, a logged-in admin never gets a cached
//! page nor fills the cache, and the admin area is never cached.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::edge::Edge;
use common::*;

const JSON: &str = "Content-Type: application/json";

#[tokio::test(flavor = "multi_thread")]
async fn changes_through_the_edge_show_at_once_and_admins_never_share_the_cache() {
    let (_db, app) = app_with_admin("").await;
    let edge = Edge::start(&app);

    // The home page: cached after one request, with the app's shared-cache lifetime.
    let first = edge.curl("/", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("cache-control"),
        Some("public, max-age=0, s-maxage=60")
    );
    let second = edge.curl("/", &[]);
    assert_eq!(second.cache(), "HIT", "{}", second.head);
    assert_eq!(second.body, first.body);
    let hits = edge.metric("onebox_edge_page_cache_hits_total");

    // The admin logs in and publishes a post through the edge: the answer purges the cache
    // (and the purge header does not reach the client).
    let login = edge.admin(
        "/api/login",
        &[
            "-H",
            JSON,
            "-d",
            r#"{"username":"admin","password":"admin-password-1"}"#,
        ],
    );
    assert_eq!(login.status, 200, "{}\n{}", login.head, login.body);
    assert_eq!(login.header("cache-control"), Some("no-store"));
    let created = edge.admin(
        "/api/posts",
        &[
            "-H",
            JSON,
            "-d",
            r#"{"title":"Fresh from the oven","body":"hot","published":true}"#,
        ],
    );
    assert_eq!(created.status, 201, "{}\n{}", created.head, created.body);
    assert_eq!(created.header("x-onebox-purge"), None);
    assert_eq!(edge.metric("onebox_edge_page_cache_purges_total"), 1.0);

    // The next anonymous request shows it at once.
    let after = edge.curl("/", &[]);
    assert_eq!(after.cache(), "MISS", "{}", after.head);
    assert!(after.body.contains("Fresh from the oven"), "{}", after.body);
    assert_eq!(edge.curl("/", &[]).cache(), "HIT");

    // The logged-in admin never gets the cached page, and the admin area is never cached:
    // an anonymous client asking for /admin after the admin gets the login form.
    let admin_home = edge.admin("/", &[]);
    assert_eq!(admin_home.cache(), "BYPASS", "{}", admin_home.head);
    let admin_area = edge.admin("/admin", &[]);
    assert!(admin_area.body.contains("Log out"), "{}", admin_area.body);
    assert_eq!(admin_area.header("cache-control"), Some("no-store"));
    for _ in 0..2 {
        let anonymous = edge.curl("/admin", &[]);
        assert!(!anonymous.body.contains("Log out"), "{}", anonymous.body);
        assert_ne!(anonymous.cache(), "HIT");
    }
    // A logged-in request for a page not cached yet does not fill it.
    let post_page = format!("/posts/{}", {
        let v: serde_json::Value = serde_json::from_str(&created.body).unwrap();
        v["id"].as_u64().unwrap()
    });
    assert_eq!(edge.admin(&post_page, &[]).cache(), "BYPASS");
    assert_eq!(edge.curl(&post_page, &[]).cache(), "MISS");
    assert_eq!(edge.curl(&post_page, &[]).cache(), "HIT");

    // A settings change through the API purges too.
    let settings = edge.admin(
        "/api/settings",
        &[
            "-X",
            "PUT",
            "-H",
            JSON,
            "-d",
            r#"{"title":"Renamed site","description":"d"}"#,
        ],
    );
    assert_eq!(settings.status, 200, "{}", settings.body);
    let renamed = edge.curl(&post_page, &[]);
    assert_eq!(renamed.cache(), "MISS");
    assert!(renamed.body.contains("Renamed site"), "{}", renamed.body);
    assert!(edge.metric("onebox_edge_page_cache_hits_total") > hits);
}
