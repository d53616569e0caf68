//! No code: see this crate's `Cargo.toml`. It makes every workspace build turn on the features
//! the dev-dependencies turn on in crates the servers share with them, so that `cargo test`
//! reuses the crates `cargo build` compiled instead of compiling them again.
