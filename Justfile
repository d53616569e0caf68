# onebox: one VM image that turns a fresh VPS into a complete web stack for a domain.
# `just` alone lists the recipes; `just ci` is exactly what CI runs.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @just --list --unsorted

# Install every Debian package and tool the project needs (idempotent)
[group('setup')]
deps:
    scripts/deps

# (The first build names --workspace so that its dependencies get the workspace's features and
# the second reuses them: built for onebox-app alone, 90 crates were compiled twice.)
# (target/dist: the shipped `onebox`, link-time optimised, each program's name hard-linked to it
# as in the image, and the test kit and the VM suite's onebox-app-expand-test, never shipped,
# linked from the release build. The image, `just up`, the benchmarks and `just test-rust` run
# what is there.)
# Build the binaries: the release build's (cargo's tests) and the shipped one in target/dist
[group('setup')]
build:
    cargo build --release --workspace --locked --bin onebox-app --features onebox-app/expand-test-migration
    cp "${CARGO_TARGET_DIR:-target}/release/onebox-app" "${CARGO_TARGET_DIR:-target}/release/onebox-app-expand-test"
    cargo build --release --workspace --locked
    cargo build --profile dist --workspace --locked --bin onebox
    cd "${CARGO_TARGET_DIR:-target}/dist" && for p in onebox-dns onebox-edge onebox-app; do ln -f onebox "$p"; done && \
      for p in onebox-testkit onebox-app-expand-test; do ln -sfn "../release/$p" "$p"; done

# Run the local stack on loopback until Ctrl-C (DNS :5353, HTTP :8080, HTTPS :8443)
[group('run')]
up: deps build
    scripts/stack run

# Stop what `just up` (or `scripts/stack start`) started
[group('run')]
down:
    scripts/stack stop

# Build the bootable disk image: image/out/onebox.raw and onebox.qcow2
[group('run')]
build-image: deps build
    image/build

# Boot the image under QEMU with the site forwarded to loopback, until Ctrl-C (`just boot --bios`)
[group('run')]
boot *args: build-image
    image/boot {{args}}

# Run every test: the build, lints and local stack's acceptance beside the image's base tree, then the Rust tests beside the image and its VM suite
[group('test')]
test: deps
    scripts/alongside image-base 'image/build --base' just --no-deps build lint test-local
    scripts/alongside test-rust 'just --no-deps test-rust' just --no-deps build-image test-image

# Rust unit and integration tests (they start the shipped binaries, target/dist, on free loopback ports)
[group('test')]
test-rust: build
    ONEBOX_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/dist" cargo test --release --workspace --locked

# The dig + curl acceptance suite against the local stack
[group('test')]
test-local: build
    trap 'scripts/stack stop' EXIT; scripts/stack start && tests/acceptance local

# The acceptance suite against the booted image: UEFI, BIOS, and a BIOS boot without user-data
[group('test')]
test-image: build-image
    image/test

# The fast loop (minutes, no VM, no services): formatting, clippy, shellcheck and the unit tests
[group('test')]
check: lint
    cargo test --release --workspace --locked --lib --bins

# Check formatting, clippy lints, the shell scripts (shellcheck) and that tests build on the release build's crates
[group('test')]
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --locked --all-targets -- -D warnings
    scripts/shellcheck
    scripts/check-features

# Run benchmarks side by side with their peers: `just bench dns`
[group('bench')]
bench what="all": deps build
    bench/run {{what}}

# Fuzz the DNS request path and answer cache (dns/fuzz) for SECONDS; needs nightly and cargo-fuzz; not part of `just test`
[group('test')]
fuzz-dns seconds="600":
    @command -v cargo-fuzz >/dev/null || { echo "fuzz-dns: cargo-fuzz is missing: cargo +nightly install cargo-fuzz --locked" >&2; exit 1; }
    cd dns/fuzz && cargo +nightly fuzz run -O request -- -max_total_time={{seconds}} -max_len=1024

# What CI runs: every test from a clean clone
[group('ci')]
ci: test
