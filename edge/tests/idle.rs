//! An idle edge is idle: once its requests are answered, pingora's timer thread (the one that
//! fires every read, write and idle timeout of its sessions) sleeps until a timer is due instead
//! of waking every 10 ms for the rest of the process's life (the patched pingora-timeout in
//! third_party/, PATCHES.md there); and its memory guard, which reads the edge's memory ten
//! times a second while a client connection is open, waits for one while none is.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use std::time::Duration;

/// The thread ids of `pid` named `name` (`/proc/PID/task/TID/comm`).
fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|tid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

/// How many times thread `tid` of `pid` has been switched out (voluntarily or not): its wake-ups.
fn switches(pid: u32, tid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| l.split_whitespace().last().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn an_idle_edge_does_not_wake_every_10_ms() {
    let (site, _upstream, edge) = edge("");
    // A static file and a request to the app, over HTTPS and HTTP: pingora's timeouts in use.
    let get = |url: String| String::from_utf8_lossy(&site.curl(&["-sk", &url]).stdout).into_owned();
    assert_eq!(get(site.https("/hello.txt")), "hello world\n");
    get(site.https("/api/ping"));
    get(site.http("/hello.txt"));
    let timer = threads_named(edge.pid(), "Timer thread");
    assert_eq!(timer.len(), 1, "pingora's timer thread: {timer:?}");
    let timer = timer[0];

    // Let the requests' short timers fire, then count for 2 s. The health check (every 2 s)
    // times its connection and answer: a few wake-ups. Unpatched, the thread woke 200 times.
    std::thread::sleep(Duration::from_millis(500));
    let before = switches(edge.pid(), timer);
    std::thread::sleep(Duration::from_secs(2));
    let woke = switches(edge.pid(), timer) - before;
    println!("pingora's timer thread woke {woke} times in 2 s of an idle edge");
    assert!(
        woke <= 20,
        "pingora's timer thread woke {woke} times in 2 s of an idle edge"
    );
    // and the edge still serves
    assert_eq!(get(site.https("/hello.txt")), "hello world\n");
}

#[test]
fn the_memory_guard_of_an_idle_edge_waits_for_a_connection() {
    let (site, _upstream, mut edge) = edge("max_memory_mib = 256");
    let get = |url: String| String::from_utf8_lossy(&site.curl(&["-sk", &url]).stdout).into_owned();
    assert_eq!(get(site.https("/hello.txt")), "hello world\n");
    // pingora names a background service's thread "BG " and the service's name (15 bytes kept).
    // It starts that thread on its own, beside the listeners the harness waits for: under CI's
    // load it came after the first answer (the test found no such thread).
    let pid = edge.pid();
    edge.wait_until(10, "the memory guard's thread", || {
        !threads_named(pid, "BG memory guard").is_empty()
    });
    let guard = threads_named(pid, "BG memory guard");
    assert_eq!(guard.len(), 1, "the memory guard's thread: {guard:?}");
    let guard = guard[0];
    let count = |secs: u64| {
        let before = switches(edge.pid(), guard);
        std::thread::sleep(Duration::from_secs(secs));
        switches(edge.pid(), guard) - before
    };

    // curl's connection is closed: no client connection open. It looked ten times a second.
    std::thread::sleep(Duration::from_millis(300));
    let idle = count(2);
    println!("the memory guard woke {idle} times in 2 s with no connection open");
    assert!(
        idle <= 4,
        "the memory guard woke {idle} times in 2 s of an idle edge"
    );

    // A connection open (HTTP, nothing sent yet): it looks ten times a second again, at once.
    let held = std::net::TcpStream::connect(("127.0.0.1", site.ports.http)).unwrap();
    let busy = count(1);
    println!("the memory guard woke {busy} times in 1 s with a connection open");
    assert!(
        busy >= 5,
        "the memory guard woke {busy} times in 1 s with a connection open"
    );
    drop(held);
    let m = site.metrics();
    assert!(metric(&m, "onebox_edge_memory_bytes") > 0.0, "{m}");
    assert_eq!(get(site.https("/hello.txt")), "hello world\n");
}
