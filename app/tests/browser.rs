//! The admin area as a person uses it, in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver, fantoccini). Log in, write a post, publish it, see it on the
//! home page, log out.
//!
//! Chromium runs with a fresh profile and every background service off, and resolves no name
//! but the app's loopback address: it reaches nothing but the app under test.
//! With `ONEBOX_SCREENSHOTS=DIR` the test also saves PNGs of the pages it visits there.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use onebox_testkit::{ChildGuard, Stop, free_port, temp_dir};
use std::process::Command;
use std::time::Duration;

/// The arguments that keep Chromium headless, root-capable and off the network.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
    "--metrics-recording-only",
    "--dns-prefetch-disable",
    "--disable-dev-shm-usage",
    "--window-size=1100,900",
    // Any name but the loopback address the app listens on fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

/// chromedriver on a free loopback port, and a WebDriver session of a fresh headless Chromium.
struct Browser {
    client: Client,
    // Dropped after the client: chromedriver and the Chromium it started (one process group).
    _driver: ChildGuard,
    _profile: onebox_testkit::tempfile::TempDir,
    shots: Option<std::path::PathBuf>,
}

impl Browser {
    async fn start() -> Browser {
        let profile = temp_dir("chromium-profile");
        let port = free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("HOME", profile.path());
        let mut driver = ChildGuard::spawn_with(
            cmd,
            profile.path().join("chromedriver.log"),
            true,
            Stop::Kill,
        )
        .expect("chromedriver (Debian package chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        driver.wait_until(30, "chromedriver listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            profile.path().join("data").display()
        ));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no WebDriver session from chromedriver: {e}\n{}",
                    driver.log_tail()
                )
            });
        let shots = std::env::var_os("ONEBOX_SCREENSHOTS").map(std::path::PathBuf::from);
        Browser {
            client,
            _driver: driver,
            _profile: profile,
            shots,
        }
    }

    /// The text of the element `css` on the current page.
    async fn text(&self, css: &str) -> String {
        let element = self.client.find(Locator::Css(css)).await;
        let element = element.unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"));
        element.text().await.unwrap()
    }

    /// Types `value` into the field `css`.
    async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks `css` (a link or a form's button) and waits until the next page replaced this one.
    async fn click(&self, css: &str) {
        let page = self.client.find(Locator::Css("html")).await.unwrap();
        let element = self.client.find(Locator::Css(css)).await;
        let element = element.unwrap_or_else(|e| panic!("no `{css}` to click: {e}"));
        element.click().await.unwrap();
        // The old page's root goes stale once the browser navigated away from it.
        for _ in 0..400 {
            if page.tag_name().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.client
            .wait()
            .for_element(Locator::Css("body"))
            .await
            .unwrap();
    }

    /// The current page's path.
    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    /// Saves a screenshot as `name`.png when `ONEBOX_SCREENSHOTS` names a directory.
    async fn shot(&self, name: &str) {
        if let Some(dir) = &self.shots {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }
}

#[tokio::test]
async fn an_admin_logs_in_writes_publishes_and_logs_out_in_a_browser() {
    let (_db, app) = app_with_admin("").await;
    let b = Browser::start().await;
    let result = tokio::time::timeout(Duration::from_secs(120), flow(&b, &app)).await;
    b.client.clone().close().await.unwrap();
    result.expect("the browser flow finished within two minutes");
}

async fn flow(b: &Browser, app: &App) {
    // The login form, and a wrong password first.
    b.client.goto(&app.url("/admin")).await.unwrap();
    assert_eq!(b.text("main h2").await, "Log in");
    b.fill("#username", "admin").await;
    b.fill("#password", "not-the-password").await;
    b.click("button[type=submit]").await;
    assert!(b.text(".error").await.contains("wrong"));
    b.fill("#password", "admin-password-1").await;
    b.click("button[type=submit]").await;
    assert_eq!(b.path().await, "/admin");
    assert_eq!(b.text("main .who strong").await, "admin");

    // Write a draft: a Markdown body with a heading, a list and a code block.
    b.click("a[href='/admin/posts/new']").await;
    b.fill("#title", "Hello from a browser").await;
    b.fill(
        "#body",
        "# A heading\n\nWritten in **Chromium**.\n\n- one\n- two\n\n```\ncode\n```\n",
    )
    .await;
    b.click("button[type=submit]").await;
    assert!(b.path().await.starts_with("/admin/posts/"));
    b.client.goto(&app.url("/")).await.unwrap();
    assert_eq!(
        b.text("main").await,
        "No posts yet.",
        "the draft is not public"
    );

    // Publish it from the post list; the home page shows it, its excerpt as text.
    b.client.goto(&app.url("/admin")).await.unwrap();
    assert_eq!(b.text("td:nth-child(2)").await, "draft");
    b.shot("admin").await;
    b.click("form[action$='/publish'] button").await;
    assert_eq!(b.text("td:nth-child(2)").await, "published");
    b.client.goto(&app.url("/")).await.unwrap();
    assert_eq!(b.text("article h2").await, "Hello from a browser");
    assert_eq!(
        b.text("article p:not(.meta)").await,
        "A heading Written in Chromium. one two code"
    );
    b.shot("home").await;
    b.click("article h2 a").await;
    assert_eq!(b.text("article h3").await, "A heading");
    b.shot("post").await;

    // Log out: the admin area asks for the password again.
    b.client.goto(&app.url("/admin")).await.unwrap();
    b.click("form[action='/admin/logout'] button").await;
    assert_eq!(b.text("main h2").await, "Log in");
    b.client.goto(&app.url("/admin/posts/new")).await.unwrap();
    assert_eq!(b.path().await, "/admin");
    assert_eq!(b.text("main h2").await, "Log in");
}
