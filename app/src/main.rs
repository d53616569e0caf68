//! onebox-app: the site's application server — users, posts and settings in MySQL.

fn main() -> std::process::ExitCode {
    onebox_app::main()
}
