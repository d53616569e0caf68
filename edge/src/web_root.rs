//! The web root, resolved per request so that a publish that swaps a symlink (`onebox publish`:
//! the configured root is a symlink to one release directory, replaced in one `rename`) is
//! served from the next request on, each request whole from one release.
//!
//! The cost is one `readlink` of the configured path per static request; the canonical form is
//! recomputed only when the link's target changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The configured web root and its canonical form as last resolved.
#[derive(Debug)]
pub struct WebRoot {
    configured: PathBuf,
    /// (the link's target when resolved, or `None` when the root is not a symlink; canonical).
    resolved: Mutex<(Option<PathBuf>, Arc<Path>)>,
}

impl WebRoot {
    /// Resolves `configured` (it must exist).
    pub fn new(configured: &Path) -> std::io::Result<WebRoot> {
        let link = std::fs::read_link(configured).ok();
        let canonical: Arc<Path> = std::fs::canonicalize(configured)?.into();
        Ok(WebRoot {
            configured: configured.to_path_buf(),
            resolved: Mutex::new((link, canonical)),
        })
    }

    /// The web root as configured (the symlink a publish swaps, when it is one).
    pub fn configured(&self) -> &Path {
        &self.configured
    }

    /// The canonical web root for one request: the release the symlink names now. When the
    /// symlink cannot be resolved (a publish is in the middle of nothing: the rename is atomic,
    /// so only a removed root does this), the last resolution is kept.
    pub fn current(&self) -> Arc<Path> {
        let link = std::fs::read_link(&self.configured).ok();
        let mut resolved = self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if resolved.0 != link
            && let Ok(canonical) = std::fs::canonicalize(&self.configured)
        {
            *resolved = (link, canonical.into());
        }
        resolved.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_a_swapped_symlink() {
        let dir = tempfile::tempdir().expect("tmp");
        let base = std::fs::canonicalize(dir.path()).expect("canon");
        std::fs::create_dir_all(base.join("r1")).expect("mkdir");
        std::fs::create_dir_all(base.join("r2")).expect("mkdir");
        std::os::unix::fs::symlink("r1", base.join("www")).expect("ln");
        let root = WebRoot::new(&base.join("www")).expect("root");
        assert_eq!(&*root.current(), base.join("r1").as_path());
        std::os::unix::fs::symlink("r2", base.join("www.new")).expect("ln");
        std::fs::rename(base.join("www.new"), base.join("www")).expect("swap");
        assert_eq!(&*root.current(), base.join("r2").as_path());
        // A plain directory stays as it was resolved.
        let plain = WebRoot::new(&base.join("r1")).expect("root");
        assert_eq!(&*plain.current(), base.join("r1").as_path());
    }
}
