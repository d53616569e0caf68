//! What the workspace's build settings (`.cargo/config.toml`) put into the binaries.
#![allow(clippy::panic)]

mod common;

use std::path::Path;

/// A symbol every build of AWS-LC with its CPU jitter entropy source carries (prefixed with
/// the aws-lc-sys version: `aws_lc_0_47_0_jent_entropy_init_ex`). The release binaries keep
/// their symbol tables, so its absence means the source is not compiled in.
const JITTER_SYMBOL: &[u8] = b"jent_entropy_init";

fn carries(path: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// AWS-LC's CPU jitter entropy costs each process 25-35 ms of CPU (0.6-0.8 s under QEMU's TCG)
/// at its first random number: the first boot's edge, DNS server and provisioning each paid it.
/// `AWS_LC_SYS_NO_JITTER_ENTROPY` in `.cargo/config.toml` leaves it out of the build; a build
/// without that setting (another environment overriding it, a moved config) fails here.
#[test]
fn no_binary_carries_aws_lc_jitter_entropy() {
    let onebox = common::onebox_path();
    for path in [
        onebox,
        common::bin("onebox-dns"),
        common::bin("onebox-edge"),
        common::bin("onebox-app"),
    ] {
        assert!(
            !carries(&path, JITTER_SYMBOL),
            "{} carries AWS-LC's CPU jitter entropy ({}): build with \
             AWS_LC_SYS_NO_JITTER_ENTROPY=1 (.cargo/config.toml)",
            path.display(),
            String::from_utf8_lossy(JITTER_SYMBOL)
        );
    }
}

/// The check above looks at the right bytes: a file holding the symbol is caught.
#[test]
fn the_jitter_check_finds_the_symbol() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bin");
    std::fs::write(&file, b"\x7fELF...aws_lc_0_47_0_jent_entropy_init_ex\0...").expect("write");
    assert!(carries(&file, JITTER_SYMBOL));
}
