//! onebox-edge (the workspace's release build beside this test's onebox-app) in front of an app:
//! self-signed, no ACME, the app as its only upstream.

use super::{App, TempDir, binary};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// onebox-edge, built beside onebox-app.
pub fn edge_binary() -> PathBuf {
    let path = binary().parent().unwrap().join("onebox-edge");
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --release)",
        path.display()
    );
    path
}

/// onebox-edge (self-signed, no ACME) in front of `app`, killed on drop.
pub struct Edge {
    _child: onebox_testkit::ChildGuard,
    https: u16,
    metrics: u16,
    dir: TempDir,
}

impl Edge {
    /// The edge, its app pool's health checked every second; returns once it reaches the app.
    pub fn start(app: &App) -> Edge {
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
    pub fn curl(&self, path: &str, args: &[&str]) -> Answer {
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

    /// The edge's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("edge.log")).unwrap_or_default()
    }

    /// curl with the admin's cookie jar.
    pub fn admin(&self, path: &str, args: &[&str]) -> Answer {
        let jar = self.dir.0.join("cookies").display().to_string();
        let mut all = vec!["-b", jar.as_str(), "-c", jar.as_str()];
        all.extend_from_slice(args);
        self.curl(path, &all)
    }

    /// The value of metric `name` on the edge's metrics listener (the test fails without it).
    pub fn metric(&self, name: &str) -> f64 {
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

/// An answer through the edge: its status, head and body.
pub struct Answer {
    /// The status code (0: no answer).
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    /// The edge's `X-Cache` (none: `none`).
    pub fn cache(&self) -> &str {
        self.header("x-cache").unwrap_or("none")
    }
}
