//! The app behind the real onebox-edge and its page cache (the edge binary is the workspace's
//! release build beside this test's onebox-app): the public pages are served from the cache,
//! a change made through the edge purges it at once, a logged-in admin never gets a cached
//! page nor fills the cache, and the admin area is never cached.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// onebox-edge, built beside onebox-app.
fn edge_binary() -> PathBuf {
    let path = Path::new(binary()).parent().unwrap().join("onebox-edge");
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --release)",
        path.display()
    );
    path
}

/// onebox-edge (self-signed, no ACME) in front of `app`, killed on drop.
struct Edge {
    _child: onebox_testkit::ChildGuard,
    https: u16,
    metrics: u16,
    dir: TempDir,
}

impl Edge {
    fn start(app: &App) -> Edge {
        let dir = TempDir::new("edge");
        let (http, https, metrics) = (
            onebox_testkit::free_port(),
            onebox_testkit::free_port(),
            onebox_testkit::free_port(),
        );
        let upstream = app.base.trim_start_matches("http://").to_string();
        std::fs::create_dir_all(dir.0.join("www")).unwrap();
        let site = dir.0.join("site.toml");
        std::fs::write(
            &site,
            format!(
                "[site]\ndomain = \"foobar.com\"\n\n[edge]\nhttp_listen = \"127.0.0.1:{http}\"\n\
                 https_listen = \"127.0.0.1:{https}\"\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\
                 web_root = \"{}\"\nstate_dir = \"{}\"\nthreads = 1\n\n[edge.acme]\nca = \"off\"\n\n\
                 [edge.upstream]\nservers = [\"{upstream}\"]\nhealth_interval_secs = 1\n",
                dir.0.join("www").display(),
                dir.0.join("state").display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(edge_binary());
        cmd.arg("--config").arg(&site);
        let mut child = onebox_testkit::ChildGuard::spawn(cmd, dir.0.join("edge.log")).unwrap();
        child.wait_until(20, "onebox-edge to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", https)).is_ok()
        });
        let edge = Edge {
            _child: child,
            https,
            metrics,
            dir,
        };
        // The pool's first health check marks the app up.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while edge.curl("/", &[]).status != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "the edge never reached the app"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        edge
    }

    /// curl through the edge's HTTPS listener: `args`, then the URL of `path`.
    fn curl(&self, path: &str, args: &[&str]) -> Answer {
        let url = format!("https://foobar.com:{}{path}", self.https);
        let out = Command::new("curl")
            .args(["-sS", "-k", "-i", "--max-time", "10", "--resolve"])
            .arg(format!("foobar.com:{}:127.0.0.1", self.https))
            .args(args)
            .arg(&url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head: head.to_string(),
            body: body.to_string(),
        }
    }

    /// curl with the admin's cookie jar.
    fn admin(&self, path: &str, args: &[&str]) -> Answer {
        let jar = self.dir.0.join("cookies").display().to_string();
        let mut all = vec!["-b", jar.as_str(), "-c", jar.as_str()];
        all.extend_from_slice(args);
        self.curl(path, &all)
    }

    fn metric(&self, name: &str) -> f64 {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}/metrics", self.metrics))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("none")
    }
}

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
