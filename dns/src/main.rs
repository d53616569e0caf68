//! onebox-dns: the onebox authoritative DNS server for the site's zones.

fn main() -> std::process::ExitCode {
    onebox_dns::main()
}
