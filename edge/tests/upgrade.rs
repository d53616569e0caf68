//! Zero-downtime upgrade: a new process started with `-u` takes over the listening sockets when
//! the old one gets SIGQUIT; requests under bounded load see no failure.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
fn graceful_upgrade_under_load_loses_no_request() {
    let upstream = Upstream::start();
    let site = Site::new(
        Ports::new(),
        upstream.port,
        // A CA's directory that is never contacted: the cached certificate is not due.
        "\n[edge.upgrade]\ngrace_period_secs = 1\nshutdown_timeout_secs = 5\n\n[edge.acme]\nca = \"custom\"\ndirectory_url = \"https://127.0.0.1:9/dir\"\n",
    );
    std::fs::write(site.www().join("hello.txt"), "hello\n").unwrap();
    // The certificate both processes serve, from a CA curl trusts: a handshake with anything
    // else (the self-signed stand-in while a process has not read the cache yet) fails.
    let (names, cert_file) = site.cert_cache("https://127.0.0.1:9/dir");
    let ca = TestCa::new();
    ca.seed(&cert_file, &names, now() - DAY, now() + 89 * DAY);
    let root = ca.write_root(site.path("ca.pem"));
    let mut old = site.start_edge("old.log");
    let old_pid = old.pid();

    // Bounded load: 3 clients, each a fresh curl (new connection, verified certificate) per
    // request, static and proxied.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for i in 0..3 {
        let (stop, ok, failed, root) = (stop.clone(), ok.clone(), failed.clone(), root.clone());
        let https = site.ports.https;
        let path = if i % 2 == 0 { "/hello.txt" } else { "/api/x" };
        clients.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let out = Command::new("curl")
                    .args([
                        "-s",
                        "--max-time",
                        "5",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code} exit %{exitcode}: %{errormsg}",
                    ])
                    .arg("--cacert")
                    .arg(&root)
                    .arg("--resolve")
                    .arg(format!("www.foobar.com:{https}:127.0.0.1"))
                    .arg(format!("https://www.foobar.com:{https}{path}"))
                    .stderr(Stdio::null())
                    .output()
                    .unwrap();
                let code = String::from_utf8_lossy(&out.stdout).into_owned();
                if code == "200 exit 0: " {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.lock().unwrap().push(format!("{path}: {code}"));
                }
            }
        }));
    }
    wait_until(10, "some requests before the upgrade", || {
        ok.load(Ordering::Relaxed) >= 20
    });
    let before = ok.load(Ordering::Relaxed);

    // The new process asks for the sockets; the old one hands them over on SIGQUIT.
    let mut cmd = Command::new(common::edge_binary());
    cmd.arg("--config").arg(site.config()).arg("-u");
    let mut new = spawn(cmd, &site.path("new.log"));
    std::thread::sleep(Duration::from_millis(500));
    signal(old_pid, "QUIT");
    // The old process finishes its in-flight requests and exits on its own.
    wait_until(20, "the old process to exit", || old.exited().is_some());
    assert!(new.running(), "the new process died: {}", new.log_text());
    let at_exit = ok.load(Ordering::Relaxed);
    wait_until(20, "requests served by the new process", || {
        ok.load(Ordering::Relaxed) >= at_exit + 20
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    let total = ok.load(Ordering::Relaxed);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across the upgrade: {:?}\nold log:\n{}\nnew log:\n{}",
        failed.len(),
        total + failed.len(),
        &failed[..failed.len().min(10)],
        old.log_text(),
        new.log_text()
    );
    assert!(total > before, "no request completed after the upgrade");
    // The new process serves the access log now.
    assert!(new.log_text().contains("\"GET "), "{}", new.log_text());
    // It looked for the sockets before they were sent (the 500 ms above): pingora's ERROR for
    // that, on every reload, is left out of the log (src/logging.rs), its taking over is not.
    assert!(
        !new.log_text().contains("No incoming socket transfer"),
        "{}",
        new.log_text()
    );
    assert!(
        new.log_text().contains("Bootstrap done"),
        "{}",
        new.log_text()
    );
    new.kill();
}
