//! The `[app]` section of the site file and the settings the server runs with.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// The whole site file as onebox-app reads it: its own `[app]` section, the shared `[site]`, and
/// the other services' sections kept opaque (a misspelt section name is still an error).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The other sections are only checked, never used.
pub struct SiteFile {
    /// The `[site]` section shared by every service.
    pub site: onebox_site::Site,
    /// The `[app]` section: this service's own settings.
    pub app: Option<AppConfig>,
    /// The `[dns]` section, read by onebox-dns.
    pub dns: Option<toml::Value>,
    /// The `[edge]` section, read by onebox-edge.
    pub edge: Option<toml::Value>,
}

/// The `[app]` section of the site file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Address and port to serve HTTP on. Default: `127.0.0.1:8000` (the edge forwards to it).
    pub listen: Option<SocketAddr>,
    /// Where the database is, e.g. `mysql://onebox@localhost/onebox?socket=/run/mysqld/mysqld.sock`
    /// (unix socket, MariaDB `unix_socket` authentication, no password) or
    /// `mysql://user:password@127.0.0.1:3306/onebox`. Default: the database `onebox` as the
    /// current system user over `/run/mysqld/mysqld.sock`.
    pub database_url: Option<String>,
    /// Published posts per page on the home page and in `GET /api/posts`. Default: 20.
    pub posts_per_page: Option<u32>,
    /// Largest accepted request body in bytes; a post body may use all of it. Default: 1 MiB.
    pub max_body_bytes: Option<usize>,
    /// How long a login session lasts, in hours. Default: 336 (two weeks).
    pub session_hours: Option<u32>,
    /// Failed logins for one user name before further attempts are refused. Default: 5.
    pub login_max_failures: Option<u32>,
    /// How long, in seconds, failed logins are remembered and further attempts refused once the
    /// limit is reached. Default: 300.
    pub login_lockout_seconds: Option<u64>,
}

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
    /// Session lifetime in hours.
    pub session_hours: u32,
    /// Failed logins before refusing.
    pub login_max_failures: u32,
    /// Seconds failures are remembered and refusals last.
    pub login_lockout_seconds: u64,
}

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The site file could not be read or parsed.
    #[error(transparent)]
    File(#[from] onebox_site::ConfigError),
    /// A value is out of its allowed range.
    #[error("{path}: [app] {key} {problem}")]
    Range {
        /// The file.
        path: String,
        /// The key in `[app]`.
        key: &'static str,
        /// What is wrong with its value.
        problem: &'static str,
    },
}

impl Settings {
    /// Builds the settings from an optional site file and the command-line overrides.
    pub fn load(
        file: Option<&Path>,
        listen: Option<SocketAddr>,
        database_url: Option<String>,
    ) -> Result<Settings, ConfigError> {
        let app = match file {
            Some(path) => onebox_site::load::<SiteFile>(path)?.app.unwrap_or_default(),
            None => AppConfig::default(),
        };
        let where_ = file.map_or_else(|| "command line".to_string(), |p| p.display().to_string());
        let range = |key, problem| ConfigError::Range {
            path: where_.clone(),
            key,
            problem,
        };
        let posts_per_page = app.posts_per_page.unwrap_or(20);
        if !(1..=500).contains(&posts_per_page) {
            return Err(range("posts_per_page", "must be between 1 and 500"));
        }
        let max_body_bytes = app.max_body_bytes.unwrap_or(1 << 20);
        if !(1024..=64 << 20).contains(&max_body_bytes) {
            return Err(range("max_body_bytes", "must be between 1024 and 67108864"));
        }
        let session_hours = app.session_hours.unwrap_or(336);
        if !(1..=24 * 366).contains(&session_hours) {
            return Err(range("session_hours", "must be between 1 and 8784"));
        }
        let login_max_failures = app.login_max_failures.unwrap_or(5);
        if login_max_failures == 0 {
            return Err(range("login_max_failures", "must be at least 1"));
        }
        let login_lockout_seconds = app.login_lockout_seconds.unwrap_or(300);
        if login_lockout_seconds == 0 {
            return Err(range("login_lockout_seconds", "must be at least 1"));
        }
        Ok(Settings {
            listen: listen
                .or(app.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000))),
            database_url: database_url
                .or(app.database_url)
                .unwrap_or_else(default_database_url),
            posts_per_page,
            max_body_bytes,
            session_hours,
            login_max_failures,
            login_lockout_seconds,
        })
    }
}

/// The database `onebox` as the current system user over Debian's MariaDB socket.
fn default_database_url() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".to_string());
    format!("mysql://{user}@localhost/onebox?socket=/run/mysqld/mysqld.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SiteFile, onebox_site::ConfigError> {
        onebox_site::parse(Path::new("site.toml"), text)
    }

    #[test]
    fn reads_the_app_section() {
        let file = parse(
            "[site]\ndomain = \"foobar.com\"\n[app]\nlisten = \"127.0.0.1:9000\"\nposts_per_page = 7\n[edge]\nanything = 1\n",
        )
        .expect("valid file");
        let app = file.app.expect("app section");
        assert_eq!(app.listen, Some(SocketAddr::from(([127, 0, 0, 1], 9000))));
        assert_eq!(app.posts_per_page, Some(7));
    }

    #[test]
    fn unknown_key_in_app_names_line() {
        let err = parse("[site]\ndomain = \"foobar.com\"\n[app]\nlisten_on = \"x\"\n")
            .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("site.toml:4:"), "{text}");
        assert!(text.contains("listen_on"), "{text}");
    }

    #[test]
    fn misspelt_section_is_an_error() {
        let err = parse("[site]\ndomain = \"foobar.com\"\n[ap]\n").expect_err("unknown section");
        assert!(err.to_string().contains("ap"), "{err}");
    }
}
