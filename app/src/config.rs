//! The settings the server runs with: the site file's `[app]` section (its types are
//! `onebox_site`'s), overridden by the command line.

use onebox_site::AppConfig;
pub use onebox_site::ConfigError;
use std::net::SocketAddr;
use std::path::Path;

/// The settings the server runs with: the `[app]` section, command-line overrides and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The database URL.
    pub database_url: String,
    /// Posts per page.
    pub posts_per_page: u32,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Session lifetime in seconds.
    pub session_lifetime_secs: u64,
    /// Failed logins at one name from one client before refusing.
    pub login_max_failures: u32,
    /// Failed logins from one client before refusing.
    pub login_max_failures_per_client: u32,
    /// The peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where to serve the metrics, if anywhere (a loopback address).
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds failures are remembered and refusals last.
    pub login_lockout_secs: u64,
    /// How long into a database outage requests wait for it to come back.
    pub database_wait: std::time::Duration,
    /// How long requests in flight get to finish when the app stops.
    pub shutdown_timeout: std::time::Duration,
}

impl Settings {
    /// Builds the settings from an optional site file and the command-line overrides.
    pub fn load(
        file: Option<&Path>,
        listen: Option<SocketAddr>,
        database_url: Option<String>,
    ) -> Result<Settings, ConfigError> {
        let app = match file {
            Some(path) => onebox_site::load(path)?.app,
            None => AppConfig::default(),
        };
        Ok(Settings {
            listen: listen.unwrap_or(app.listen),
            database_url: database_url
                .unwrap_or_else(|| app.resolved_database_url().as_str().to_string()),
            posts_per_page: app.posts_per_page.as_u32(),
            max_body_bytes: app.max_body_bytes.as_usize(),
            session_lifetime_secs: app.session_lifetime_secs.get(),
            login_max_failures: app.login_max_failures.as_u32(),
            login_max_failures_per_client: app.login_max_failures_per_client.as_u32(),
            trusted_proxies: app.trusted_proxies.iter().map(|m| m.0).collect(),
            metrics_listen: app.metrics_listen.map(|a| a.get()),
            login_lockout_secs: app.login_lockout_secs.get(),
            database_wait: app.database_wait_secs.secs(),
            shutdown_timeout: app.shutdown_timeout_secs.secs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("site.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn reads_the_app_section() {
        let (_dir, path) = write(
            "[site]\ndomain = \"foobar.com\"\n[app]\nlisten = \"127.0.0.1:9000\"\nposts_per_page = 7\nsession_lifetime_secs = 3600\n",
        );
        let s = Settings::load(Some(&path), None, None).expect("valid file");
        assert_eq!(s.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(s.posts_per_page, 7);
        assert_eq!(s.session_lifetime_secs, 3600);
        let s = Settings::load(
            Some(&path),
            Some(SocketAddr::from(([127, 0, 0, 1], 1))),
            None,
        )
        .expect("valid file");
        assert_eq!(s.listen.port(), 1, "the command line wins");
    }

    #[test]
    fn bad_values_name_the_line_and_key() {
        let (_dir, path) = write("[site]\ndomain = \"foobar.com\"\n[app]\nlisten_on = \"x\"\n");
        let text = Settings::load(Some(&path), None, None)
            .expect_err("unknown key")
            .to_string();
        assert!(text.contains("site.toml:4:1: app.listen_on:"), "{text}");
        let (_dir, path) = write("[site]\ndomain = \"foobar.com\"\n[app]\nposts_per_page = 0\n");
        let text = Settings::load(Some(&path), None, None)
            .expect_err("out of range")
            .to_string();
        assert!(
            text.contains("site.toml:4:18: app.posts_per_page:"),
            "{text}"
        );
    }
}
