//! Writing under a root directory without ever following a symlink.
//!
//! Every path is resolved from a directory descriptor of the root with `openat2` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: a symlink anywhere on the way (planted by a service
//! that can write a directory on it) is an error, never followed, and `..` cannot leave the root.
//! New files are written to a temporary name and renamed into place with `RENAME_NOREPLACE`, so
//! a file that exists is never replaced and a reader never sees half a file.

use rustix::fs::{AtFlags, Gid, Mode, OFlags, RenameFlags, ResolveFlags, Uid};
use rustix::io::Errno;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// Who owns a file or directory this writes, and its permission bits.
#[derive(Debug, Clone, Copy)]
pub struct Perm {
    /// Permission bits, e.g. `0o640`.
    pub mode: u32,
    /// Owner and group to give it; `None` keeps the writer's (when not running as root, always).
    pub owner: Option<(u32, u32)>,
}

#[cfg(test)]
impl Perm {
    /// `mode`, owned by whoever writes.
    pub fn mode(mode: u32) -> Perm {
        Perm { mode, owner: None }
    }
}

/// What [`Root::write_new`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file was written.
    Wrote,
    /// The file was there already and was left alone.
    Kept,
}

/// A directory that stands for `/`: every path given is relative to it.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
    is_root_user: bool,
}

/// The flags every resolution uses.
fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS
}

impl Root {
    /// Opens `path` (created if missing) as the root.
    pub fn open(path: &Path) -> anyhow::Result<Root> {
        std::fs::create_dir_all(path)
            .map_err(|e| anyhow::anyhow!("cannot create the root {}: {e}", path.display()))?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| anyhow::anyhow!("cannot open the root {}: {e}", path.display()))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            is_root_user: rustix::process::geteuid().is_root(),
        })
    }

    /// Where `rel` is on this machine (for messages and for the services).
    pub fn host_path(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// `rel` as given to the system calls: relative, with no `.`/`..`/root components.
    fn relative(rel: &Path) -> anyhow::Result<PathBuf> {
        let mut out = PathBuf::new();
        for c in rel.components() {
            match c {
                Component::Normal(part) => out.push(part),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    anyhow::bail!("{}: `..` is not allowed here", rel.display())
                }
            }
        }
        Ok(out)
    }

    fn explain(&self, rel: &Path, what: &str, e: Errno) -> anyhow::Error {
        let shown = self.host_path(rel);
        match e {
            Errno::LOOP => anyhow::anyhow!(
                "{}: a symlink is on the path; refusing to follow it ({what})",
                shown.display()
            ),
            Errno::XDEV => anyhow::anyhow!(
                "{}: the path leaves the root; refusing ({what})",
                shown.display()
            ),
            e => anyhow::anyhow!("{}: cannot {what}: {e}", shown.display()),
        }
    }

    /// Opens the directory `rel` (must exist), never through a symlink.
    fn open_dir(&self, rel: &Path) -> anyhow::Result<OwnedFd> {
        let rel = Self::relative(rel)?;
        let path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel.as_path()
        };
        rustix::fs::openat2(
            &self.fd,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            resolve(),
        )
        .map_err(|e| self.explain(&rel, "open the directory", e))
    }

    /// Creates the directory `rel` and any missing parent with `perm`; existing directories are
    /// left as they are (not chmod-ed, not chown-ed).
    pub fn ensure_dir(&self, rel: &Path, perm: Perm) -> anyhow::Result<()> {
        let rel = Self::relative(rel)?;
        let mut done = PathBuf::new();
        for part in rel.components() {
            let parent = self.open_dir(&done)?;
            done.push(part);
            match rustix::fs::openat2(
                &parent,
                part.as_os_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve(),
            ) {
                Ok(_) => continue,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(self.explain(&done, "open the directory", e)),
            }
            match rustix::fs::mkdirat(&parent, part.as_os_str(), Mode::from_raw_mode(perm.mode)) {
                Ok(()) => {}
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(self.explain(&done, "create the directory", e)),
            }
            let dir = self.open_dir(&done)?;
            self.set_perm(&dir, &done, perm)?;
        }
        Ok(())
    }

    fn set_perm(&self, fd: &OwnedFd, rel: &Path, perm: Perm) -> anyhow::Result<()> {
        if let Some((uid, gid)) = perm.owner
            && self.is_root_user
        {
            rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| self.explain(rel, "set the owner", e))?;
        }
        // After the chown, which may clear set-id bits; and regardless of the umask.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(perm.mode))
            .map_err(|e| self.explain(rel, "set the mode", e))
    }

    /// Whether `rel` exists (a symlink there is an error, not an answer).
    pub fn exists(&self, rel: &Path) -> anyhow::Result<bool> {
        let rel = Self::relative(rel)?;
        match rustix::fs::openat2(
            &self.fd,
            &rel,
            OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            resolve(),
        ) {
            Ok(fd) => {
                let stat =
                    rustix::fs::fstat(&fd).map_err(|e| self.explain(&rel, "look at it", e))?;
                if rustix::fs::FileType::from_raw_mode(stat.st_mode)
                    == rustix::fs::FileType::Symlink
                {
                    return Err(self.explain(&rel, "use it", Errno::LOOP));
                }
                Ok(true)
            }
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.explain(&rel, "look at it", e)),
        }
    }

    /// Opens the file `rel` for reading, never through a symlink.
    pub fn open_file(&self, rel: &Path) -> anyhow::Result<std::fs::File> {
        let rel = Self::relative(rel)?;
        let fd = rustix::fs::openat2(
            &self.fd,
            &rel,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            resolve(),
        )
        .map_err(|e| self.explain(&rel, "open", e))?;
        Ok(std::fs::File::from(fd))
    }

    /// Reads the regular file `rel`, never through a symlink.
    pub fn read(&self, rel: &Path) -> anyhow::Result<String> {
        std::io::read_to_string(self.open_file(rel)?)
            .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", self.host_path(rel).display()))
    }

    /// Writes `contents` to `rel` with `perm` unless a file is there already; parent
    /// directories are created with `dir_perm`. Atomic: a temporary file in the same directory,
    /// synced, then renamed into place without replacing anything.
    pub fn write_new(
        &self,
        rel: &Path,
        contents: &[u8],
        perm: Perm,
        dir_perm: Perm,
    ) -> anyhow::Result<Outcome> {
        self.write_atomic(rel, contents, perm, dir_perm, false)
    }

    /// [`Root::write_new`], or with `replace` a file there is replaced (atomically: a reader
    /// sees the old file or the new one).
    pub fn write_atomic(
        &self,
        rel: &Path,
        contents: &[u8],
        perm: Perm,
        dir_perm: Perm,
        replace: bool,
    ) -> anyhow::Result<Outcome> {
        let rel = Self::relative(rel)?;
        let (Some(dir), Some(name)) = (rel.parent(), rel.file_name()) else {
            anyhow::bail!("{}: not a file path", rel.display());
        };
        self.ensure_dir(dir, dir_perm)?;
        if !replace && self.exists(&rel)? {
            return Ok(Outcome::Kept);
        }
        let parent = self.open_dir(dir)?;
        let tmp = format!(
            ".{}.onebox-tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        );
        // A temporary file left by a run that was killed.
        match rustix::fs::unlinkat(&parent, tmp.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(self.explain(&dir.join(&tmp), "remove", e)),
        }
        let fd = rustix::fs::openat2(
            &parent,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
            resolve(),
        )
        .map_err(|e| self.explain(&dir.join(&tmp), "create", e))?;
        let written = (|| {
            self.set_perm(&fd, &rel, perm)?;
            let mut file = std::fs::File::from(fd);
            file.write_all(contents)
                .and_then(|()| file.sync_all())
                .map_err(|e| {
                    anyhow::anyhow!("{}: cannot write: {e}", self.host_path(&rel).display())
                })
        })();
        let renamed = written.and_then(|()| {
            let flags = if replace {
                RenameFlags::empty()
            } else {
                RenameFlags::NOREPLACE
            };
            rustix::fs::renameat_with(&parent, tmp.as_str(), &parent, name, flags)
                .or_else(|e| match e {
                    Errno::EXIST => Ok(()),
                    e => Err(e),
                })
                .map_err(|e| self.explain(&rel, "rename into place", e))
        });
        // Gone after a successful rename; removed after a failure or when the file appeared.
        let _ = rustix::fs::unlinkat(&parent, tmp.as_str(), AtFlags::empty());
        renamed?;
        rustix::fs::fsync(&parent).map_err(|e| self.explain(dir, "sync the directory", e))?;
        Ok(Outcome::Wrote)
    }
}

impl Root {
    /// Creates the new file `rel` (0600, the writer's), never through a symlink, and returns it
    /// open for writing. Its directory must exist.
    pub fn create_private(&self, rel: &Path) -> anyhow::Result<std::fs::File> {
        let rel = Self::relative(rel)?;
        let fd = rustix::fs::openat2(
            &self.fd,
            &rel,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
            resolve(),
        )
        .map_err(|e| self.explain(&rel, "create", e))?;
        Ok(std::fs::File::from(fd))
    }

    /// Opens the directory `rel` (never through a symlink) for the `*at` calls.
    pub fn dir_fd(&self, rel: &Path) -> anyhow::Result<OwnedFd> {
        self.open_dir(rel)
    }

    /// Moves `from` to `to` (both from the root, on one filesystem), never through a symlink on
    /// the way to either: atomically exchanged with what is at `to` (which is then at `from`),
    /// or renamed when nothing is there. Returns whether something was exchanged.
    pub fn swap_in(&self, from: &Path, to: &Path, dir_perm: Perm) -> anyhow::Result<bool> {
        let from = Self::relative(from)?;
        let to = Self::relative(to)?;
        let (Some(from_dir), Some(from_name)) = (from.parent(), from.file_name()) else {
            anyhow::bail!("{}: not a file path", from.display());
        };
        let (Some(to_dir), Some(to_name)) = (to.parent(), to.file_name()) else {
            anyhow::bail!("{}: not a file path", to.display());
        };
        self.ensure_dir(to_dir, dir_perm)?;
        let a = self.open_dir(from_dir)?;
        let b = self.open_dir(to_dir)?;
        let exchanged =
            match rustix::fs::renameat_with(&a, from_name, &b, to_name, RenameFlags::EXCHANGE) {
                Ok(()) => true,
                Err(Errno::NOENT) => {
                    rustix::fs::renameat_with(&a, from_name, &b, to_name, RenameFlags::NOREPLACE)
                        .map_err(|e| self.explain(&to, "move into place", e))?;
                    false
                }
                Err(e) => return Err(self.explain(&to, "swap into place", e)),
            };
        rustix::fs::fsync(&b).map_err(|e| self.explain(to_dir, "sync the directory", e))?;
        Ok(exchanged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_new_files_keeps_old_ones_and_refuses_symlinks() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = Root::open(dir.path()).expect("root");
        let p = Path::new("/etc/onebox/site.toml");
        let r = root
            .write_new(p, b"one", Perm::mode(0o640), Perm::mode(0o755))
            .expect("write");
        assert_eq!(r, Outcome::Wrote);
        let host = dir.path().join("etc/onebox/site.toml");
        assert_eq!(std::fs::read_to_string(&host).expect("read"), "one");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&host).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
        let r = root
            .write_new(p, b"two", Perm::mode(0o640), Perm::mode(0o755))
            .expect("write");
        assert_eq!(r, Outcome::Kept);
        assert_eq!(std::fs::read_to_string(&host).expect("read"), "one");

        // A symlinked directory on the way, and a symlink where the file goes.
        let outside = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("var")).expect("symlink");
        let e = root
            .write_new(
                Path::new("var/lib/x"),
                b"x",
                Perm::mode(0o644),
                Perm::mode(0o755),
            )
            .expect_err("through a symlink");
        assert!(e.to_string().contains("symlink"), "{e}");
        std::os::unix::fs::symlink(outside.path().join("f"), dir.path().join("etc/onebox/f"))
            .expect("symlink");
        let e = root
            .write_new(
                Path::new("etc/onebox/f"),
                b"x",
                Perm::mode(0o644),
                Perm::mode(0o755),
            )
            .expect_err("onto a symlink");
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(
            std::fs::read_dir(outside.path())
                .expect("ls")
                .next()
                .is_none(),
            "nothing written outside"
        );
        assert!(
            root.write_new(
                Path::new("../x"),
                b"x",
                Perm::mode(0o644),
                Perm::mode(0o755)
            )
            .is_err()
        );
    }
}
