//! `onebox publish DIR` and `onebox publish --rollback`: the web root is a symlink to one
//! release directory of `<web_root>-releases/`; a publish copies DIR into a new release, then
//! replaces the symlink in one `rename` (the first time, when the web root is still a directory,
//! one `renameat2(RENAME_EXCHANGE)` swaps it for the symlink and the old directory becomes the
//! first release). The edge resolves the symlink once per request, so every answer comes whole
//! from one release. Earlier releases are kept for `--rollback` (the newest `--keep`).

use crate::backup::SiteArgs;
use crate::rootfs::{Perm, Root};
use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// `onebox publish`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to publish (its files become the site's static files).
    #[arg(value_name = "DIR", required_unless_present = "rollback")]
    pub dir: Option<PathBuf>,
    /// Serve the release before the current one again.
    #[arg(long, conflicts_with = "dir")]
    pub rollback: bool,
    /// Releases kept (the current one and the newest before it); older ones are removed.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub keep: u32,
    /// Where the site lives: `--root`, `--config`.
    #[command(flatten)]
    pub site: SiteArgs,
}

/// The releases directory of the web root `web_root` (a path from the root).
pub fn releases_dir(web_root: &Path) -> PathBuf {
    let name = web_root
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "www".into());
    web_root.with_file_name(format!("{name}-releases"))
}

/// The release names, oldest first.
fn list_releases(root: &Root, dir: &Path) -> anyhow::Result<Vec<String>> {
    let host = root.host_path(dir);
    if !root.exists(dir)? {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = std::fs::read_dir(&host)
        .with_context(|| format!("{}", host.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The release the web root points at, if it is a symlink into the releases directory.
fn current(root: &Root, web_root: &Path) -> Option<String> {
    let target = std::fs::read_link(root.host_path(web_root)).ok()?;
    let releases = releases_dir(web_root);
    let dir_name = releases.file_name()?;
    let mut parts = target.components();
    (parts.next()?.as_os_str() == dir_name).then_some(())?;
    Some(parts.next()?.as_os_str().to_string_lossy().to_string())
}

/// Runs `onebox publish`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let site = args.site.load()?;
    let root = Root::open(&site.root)?;
    let web_root = site.relative(site.file.edge.web_root.get())?;
    let releases = releases_dir(&web_root);
    let dir = Perm {
        mode: 0o755,
        owner: Some((0, 0)),
    };
    root.ensure_dir(&releases, dir)?;
    let target = if args.rollback {
        let all = list_releases(&root, &releases)?;
        let now = current(&root, &web_root).ok_or_else(|| {
            anyhow::anyhow!(
                "nothing to roll back: {} is not a published release",
                root.host_path(&web_root).display()
            )
        })?;
        let before = all
            .iter()
            .rev()
            .find(|r| r.as_str() < now.as_str())
            .ok_or_else(|| anyhow::anyhow!("no release before {now} to roll back to"))?;
        before.clone()
    } else {
        let source = args.dir.as_deref().unwrap_or(Path::new("."));
        let meta = std::fs::metadata(source).with_context(|| format!("{}", source.display()))?;
        if !meta.is_dir() {
            anyhow::bail!("{} is not a directory", source.display());
        }
        let name = release_name();
        let tmp = releases.join(format!(".{name}.onebox-tmp-{}", std::process::id()));
        if root.exists(&tmp)? {
            std::fs::remove_dir_all(root.host_path(&tmp))?;
        }
        root.ensure_dir(&tmp, dir)?;
        let mut files = 0u64;
        copy_tree(source, &root.host_path(&tmp), &mut files)
            .with_context(|| format!("copying {}", source.display()))?;
        root.swap_in(&tmp, &releases.join(&name), dir)?;
        println!("release {name}: {files} files from {}", source.display());
        name
    };
    point_at(&root, &web_root, &releases, &target, dir)?;
    println!(
        "{} now serves release {target}",
        root.host_path(&web_root).display()
    );
    prune(&root, &releases, &target, args.keep as usize)?;
    Ok(())
}

/// A release name that sorts by time: `20261129T213000.123456789Z`.
fn release_name() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:09}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond()
    )
}

/// Points the web root at `release` in one step.
fn point_at(
    root: &Root,
    web_root: &Path,
    releases: &Path,
    release: &str,
    dir: Perm,
) -> anyhow::Result<()> {
    let parent = web_root.parent().unwrap_or(Path::new(""));
    let link_target = Path::new(releases.file_name().unwrap_or_default()).join(release);
    let tmp = parent.join(format!(
        ".{}.onebox-tmp-{}",
        web_root.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let tmp_host = root.host_path(&tmp);
    if tmp_host.symlink_metadata().is_ok() {
        std::fs::remove_file(&tmp_host)?;
    }
    let parent_fd = root.dir_fd(parent)?;
    rustix::fs::symlinkat(
        &link_target,
        &parent_fd,
        tmp.file_name().unwrap_or_default(),
    )
    .with_context(|| format!("making the symlink {}", tmp_host.display()))?;
    let was_dir = root
        .host_path(web_root)
        .symlink_metadata()
        .is_ok_and(|m| m.is_dir());
    if was_dir {
        // The first publish: the directory and the new symlink change places at once, and the
        // directory becomes the oldest release.
        root.swap_in(&tmp, web_root, dir)?;
        let first = releases.join("00000000T000000.000000000Z-initial");
        root.swap_in(&tmp, &first, dir)?;
        println!("the previous web root is release {}", first.display());
    } else {
        rustix::fs::renameat(
            &parent_fd,
            tmp.file_name().unwrap_or_default(),
            &parent_fd,
            web_root.file_name().unwrap_or_default(),
        )
        .with_context(|| format!("replacing {}", root.host_path(web_root).display()))?;
        rustix::fs::fsync(&parent_fd)?;
    }
    Ok(())
}

/// Removes the oldest releases beyond `keep` (never the one served).
fn prune(root: &Root, releases: &Path, serving: &str, keep: usize) -> anyhow::Result<()> {
    let all = list_releases(root, releases)?;
    let excess = all.len().saturating_sub(keep);
    for old in all.iter().take(excess).filter(|r| r.as_str() != serving) {
        let path = root.host_path(&releases.join(old));
        std::fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        println!("removed the old release {old}");
    }
    Ok(())
}

/// Copies the tree `from` into the existing directory `to`: directories 0755, files 0644,
/// symlinks as symlinks (the edge serves only those that stay inside the web root).
fn copy_tree(from: &Path, to: &Path, files: &mut u64) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir(&dest)?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))?;
            copy_tree(&entry.path(), &dest, files)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("{}", entry.path().display()))?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644))?;
            *files += 1;
        }
    }
    Ok(())
}
