//! The site configuration shared by every onebox service.
//!
//! One TOML file describes a site. Its `[site]` section (this crate's [`Site`]) says what the
//! site is; the `[dns]`, `[edge]` and `[app]` sections belong to the service of that name, which
//! defines their types itself and reads the file with [`load`]. Every table denies unknown keys,
//! and every error names the file, line and column it comes from.
//!
//! ```toml
//! [site]
//! domain = "foobar.com"
//! public_ipv4 = "8.8.8.8"
//! ```

mod error;
mod site;

pub use error::ConfigError;
pub use site::Site;

use std::path::Path;

/// Reads and parses the TOML file at `path` into `T`.
///
/// Errors name the file and, for syntax and type errors, the line and column.
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses TOML `text`, which was read from `path`, into `T`.
pub fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|err| ConfigError::from_toml(path, text, &err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        site: Site,
    }

    #[test]
    fn reads_a_site() {
        let file: File = parse(
            Path::new("site.toml"),
            "[site]\ndomain = \"Foobar.COM.\"\npublic_ipv4 = \"8.8.8.8\"\n",
        )
        .expect("valid site");
        assert_eq!(file.site.domain(), "foobar.com");
        assert_eq!(
            file.site.names(),
            vec!["foobar.com".to_string(), "www.foobar.com".to_string()]
        );
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = parse::<File>(
            Path::new("/etc/onebox/site.toml"),
            "[site]\ndomain = \"foobar.com\"\ncolour = \"blue\"\n",
        )
        .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("/etc/onebox/site.toml:3:"), "{text}");
        assert!(text.contains("colour"), "{text}");
    }

    #[test]
    fn bad_domain_is_refused() {
        let err = parse::<File>(Path::new("s.toml"), "[site]\ndomain = \"no spaces.com\"\n")
            .expect_err("bad domain");
        assert!(err.to_string().starts_with("s.toml:2:"), "{err}");
    }
}
