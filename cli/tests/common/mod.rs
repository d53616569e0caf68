//! What every test of the `onebox` command needs: the command itself, the workspace's other
//! release binaries beside it, and a failed command's output for an assertion message.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `onebox` binary under test (`onebox_testkit::program`: `$ONEBOX_BIN/onebox` under
/// `just test`).
pub fn onebox() -> Command {
    Command::new(onebox_path())
}

/// The path of the `onebox` binary under test.
pub fn onebox_path() -> PathBuf {
    onebox_testkit::program("onebox", env!("CARGO_BIN_EXE_onebox"))
}

/// A binary of the workspace (onebox-dns, onebox-edge, onebox-app) beside this test's `onebox`:
/// the release build's, or the names `just build` links to the shipped `onebox` in `target/dist`.
pub fn bin(name: &str) -> PathBuf {
    let path = onebox_path().parent().expect("bin dir").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --release)",
        path.display()
    );
    path
}

/// A command's exit status and output, for an assertion's message.
pub fn text(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
pub mod api;
pub mod site;
