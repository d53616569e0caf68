//! A client of the app's JSON API as an operator's script would be: curl, with a cookie jar.

use super::site::fastrand_name;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The app's API at `127.0.0.1:port`, its session cookie kept in a jar file.
pub struct Api {
    base: String,
    jar: PathBuf,
}

impl Api {
    /// A client of the app on `app`, not logged in, its cookie jar a new file in `dir`.
    pub fn new(app: u16, dir: &Path) -> Api {
        Api {
            base: format!("http://127.0.0.1:{app}"),
            jar: dir.join(format!("cookies-{}", fastrand_name())),
        }
    }

    /// Logs in as `admin` with `password`: the status the app answers (0 if none).
    pub fn login_status(&self, password: &str) -> u16 {
        self.call("POST", "/api/login", Some(&login_body(password)))
            .0
    }

    /// A client logged in as `admin`, or the failed login's status and body.
    pub fn login(app: u16, dir: &Path, password: &str) -> Result<Api, String> {
        let api = Api::new(app, dir);
        let (code, out) = api.call("POST", "/api/login", Some(&login_body(password)));
        if code == 200 {
            Ok(api)
        } else {
            Err(format!("login: {code} {out}"))
        }
    }

    /// One request, a JSON `body` if given: the status (0 if no answer) and the body.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "--max-time",
            "10",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ])
        .arg("-b")
        .arg(&self.jar)
        .arg("-c")
        .arg(&self.jar)
        .arg(format!("{}{path}", self.base));
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Publishes a post titled `title`: its id, or `None` if the app did not create it.
    pub fn post(&self, title: &str) -> Option<u64> {
        let body =
            serde_json::json!({"title": title, "body": "text", "published": true}).to_string();
        let (code, out) = self.call("POST", "/api/posts", Some(&body));
        if code != 201 {
            return None;
        }
        serde_json::from_str::<serde_json::Value>(&out).ok()?["id"].as_u64()
    }

    /// Every post's title (all pages).
    pub fn titles(&self) -> Vec<String> {
        let mut titles = Vec::new();
        let mut page = 1;
        loop {
            let (code, out) = self.call("GET", &format!("/api/posts?page={page}"), None);
            assert_eq!(code, 200, "{out}");
            let v: serde_json::Value = serde_json::from_str(&out).expect("json");
            for p in v["posts"].as_array().expect("posts") {
                titles.push(p["title"].as_str().expect("title").to_string());
            }
            if v["next_page"].is_null() || page > 100 {
                break;
            }
            page += 1;
        }
        titles
    }
}

/// The login request's body for `admin`.
fn login_body(password: &str) -> String {
    serde_json::json!({"username": "admin", "password": password}).to_string()
}
