//! onebox-edge: the onebox HTTP/HTTPS front door.

// mimalloc: glibc's malloc and free were an eighth of the edge's CPU time per proxied request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    onebox_edge::main()
}
