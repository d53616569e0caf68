//! The `[edge]` section of the site file (its types are `onebox_site`'s), and the checks that
//! need this machine: the web root is a directory, the ACME directory's CA file parses.

use onebox_site::ConfigError;
pub use onebox_site::edge::*;
use std::path::{Path, PathBuf};

/// A loaded and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// The names the site serves (and gets certificates for), lower-case.
    pub names: Vec<String>,
    /// The `[edge]` section.
    pub edge: EdgeConfig,
}

impl Config {
    /// The port used in HTTP→HTTPS redirects.
    pub fn public_https_port(&self) -> u16 {
        self.edge.public_https_port()
    }
}

/// Reads the site file at `path` and checks what only this machine can tell.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = onebox_site::load(path)?;
    let edge = &file.edge;
    let root = edge.web_root.get();
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(file.error_at(
                edge.web_root.span(),
                "edge.web_root",
                format!("`{}` is not a directory", root.display()),
            ));
        }
        Err(e) => {
            return Err(file.error_at(
                edge.web_root.span(),
                "edge.web_root",
                format!("`{}` cannot be used: {e}", root.display()),
            ));
        }
    }
    if let Some(ca) = &edge.acme.directory_ca
        && let Err(message) = crate::acme::read_roots(ca.get())
    {
        return Err(file.error_at(ca.span(), "edge.acme.directory_ca", message));
    }
    Ok(Config {
        path: path.to_path_buf(),
        names: file.site.names(),
        edge: file.edge.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("site.toml");
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().display().to_string();
        let p = write(
            dir.path(),
            &format!("[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\n"),
        );
        let c = load(&p).expect("valid");
        assert_eq!(c.edge.https_listen.port(), 443);
        assert_eq!(
            c.edge.acme.directory().as_deref(),
            Some("https://acme-v02.api.letsencrypt.org/directory")
        );
        assert_eq!(c.names, vec!["foobar.com", "www.foobar.com"]);

        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\nlisten = 1\n"
            ),
        );
        let e = load(&p).expect_err("unknown key").to_string();
        assert!(e.contains("site.toml:5:"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().display().to_string();
        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\nmetrics_listen = \"0.0.0.0:9100\"\n"
            ),
        );
        let e = load(&p).expect_err("public metrics").to_string();
        assert!(e.contains("site.toml:5:") && e.contains("loopback"), "{e}");

        let p = write(
            dir.path(),
            "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"/nonexistent/x\"\n",
        );
        let e = load(&p).expect_err("missing root").to_string();
        assert!(e.contains("site.toml:4:12: edge.web_root:"), "{e}");

        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\n[edge.acme]\nca = \"custom\"\ndirectory_url = \"https://127.0.0.1:14000/dir\"\ndirectory_ca = \"{root}/site.toml\"\n"
            ),
        );
        let e = load(&p).expect_err("not a PEM").to_string();
        assert!(e.contains("site.toml:8:16: edge.acme.directory_ca:"), "{e}");

        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\n[edge.acme]\nca = \"custom\"\ndirectory_url = \"http://x/dir\"\n"
            ),
        );
        let e = load(&p).expect_err("http directory").to_string();
        assert!(e.contains("site.toml:7:") && e.contains("https://"), "{e}");

        let p = write(
            dir.path(),
            &format!(
                "[site]\ndomain = \"foobar.com\"\n[edge]\nweb_root = \"{root}\"\n[edge.acme]\nchallenge = \"dns-01\"\n"
            ),
        );
        let e = load(&p).expect_err("bad challenge").to_string();
        assert!(e.contains("site.toml:6:"), "{e}");
    }
}
