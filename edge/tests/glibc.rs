//! glibc's copies on AMD processors (`onebox_edge::memcpy`): the running edge has the tunables
//! that keep glibc 2.36 from copying with `rep movsb`, set by starting itself again in place,
//! and says so in its log; an administrator's own setting of them is left as it is.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::*;
use onebox_edge::memcpy;
use std::process::Command;

/// No ACME: these edges never ask a CA (nor resolve its name) for anything.
const NO_ACME: &str = "\n[edge.acme]\nca = \"off\"\n";

/// The edge of `site` started with `GLIBC_TUNABLES` set to `tunables` (`None`: unset),
/// listening; its log.
fn log_of_edge_started_with(site: &Site, tunables: Option<&str>) -> String {
    let mut cmd = Command::new(common::edge_binary());
    cmd.arg("--config").arg(site.config());
    cmd.env_remove(memcpy::STARTED_AGAIN);
    match tunables {
        Some(t) => cmd.env("GLIBC_TUNABLES", t),
        None => cmd.env_remove("GLIBC_TUNABLES"),
    };
    log_of(site, cmd)
}

/// The log of the edge of `site` started by `cmd`, once it listens and has served a file.
fn log_of(site: &Site, cmd: Command) -> String {
    let mut edge = spawn(cmd, &site.path("edge.log"));
    site.wait_listening(&mut edge);
    // Still named after its file (ps, pgrep and systemctl show this name).
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", edge.pid())).unwrap();
    assert_eq!(comm.trim_end(), "onebox-edge", "the edge's process name");
    // It serves as it would have.
    let out = site.curl(&["-k", "-i", &site.https("/a.txt")]);
    assert_eq!(
        status_of(&out),
        200,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    edge.log_text()
}

/// On an AMD processor the edge serves with glibc's `rep movsb` and `rep stosb` thresholds
/// beyond any size, in its own environment (the process the test started, which its log says);
/// on another processor its log says nothing of glibc. Without the restart: nothing said. Its
/// process keeps its name (as `/proc/self/exe` started again, it was "exe").
#[test]
fn on_an_amd_processor_the_edge_copies_with_vector_loops() {
    let up = Upstream::start();
    let site = Site::new(Ports::new(), up.port, NO_ACME);
    std::fs::write(site.www().join("a.txt"), "a\n").unwrap();
    let log = log_of_edge_started_with(&site, None);
    let said = format!(
        "glibc copies with vector loops on this AMD processor, not rep movsb (GLIBC_TUNABLES={})",
        memcpy::TUNABLES
    );
    if memcpy::amd_processor() {
        assert!(log.contains(&said), "no {said:?} in the edge's log:\n{log}");
    } else {
        assert!(!log.contains("glibc"), "the edge's log:\n{log}");
    }
}

/// Tunables already in the environment are kept, and ours added after them; a threshold the
/// administrator set is left as it is, ours not added. (Only on an AMD processor, where the
/// edge adds any: elsewhere the test above checks that it says nothing.)
#[test]
fn the_administrators_tunables_are_kept() {
    if !memcpy::amd_processor() {
        return;
    }
    let up = Upstream::start();
    let site = Site::new(Ports::new(), up.port, NO_ACME);
    std::fs::write(site.www().join("a.txt"), "a\n").unwrap();
    for (given, said) in [
        (
            "glibc.malloc.arena_max=2",
            format!(
                "not rep movsb (GLIBC_TUNABLES=glibc.malloc.arena_max=2:{})",
                memcpy::TUNABLES
            ),
        ),
        (
            "glibc.cpu.x86_rep_movsb_threshold=4096",
            "glibc copies as the GLIBC_TUNABLES the edge was started with say (glibc.cpu.x86_rep_movsb_threshold=4096)".to_owned(),
        ),
    ] {
        let log = log_of_edge_started_with(&site, Some(given));
        assert!(log.contains(&said), "started with {given:?}: no {said:?} in its log:\n{log}");
    }
}

/// An edge started again already is not started again, whatever its environment says: one
/// whose `GLIBC_TUNABLES` glibc dropped (secure mode: file capabilities) would otherwise start
/// itself again for ever. Without the guard it would restart here and say so.
#[test]
fn an_edge_started_again_is_not_started_again() {
    let up = Upstream::start();
    let site = Site::new(Ports::new(), up.port, NO_ACME);
    std::fs::write(site.www().join("a.txt"), "a\n").unwrap();
    let mut cmd = Command::new(common::edge_binary());
    cmd.arg("--config").arg(site.config());
    cmd.env_remove("GLIBC_TUNABLES")
        .env(memcpy::STARTED_AGAIN, "1");
    let log = log_of(&site, cmd);
    assert!(!log.contains("glibc copies"), "the edge's log:\n{log}");
}
