//! The first admin password: set by the app's own command (the app owns its tables and
//! migrations), kept root-only in `/root/onebox-admin-password`, shown on the serial console —
//! never on standard output or error, which a unit sends to the journal.

use crate::database::DbPlan;
use crate::provision::{ADMIN_PASSWORD, Plan, SITE_FILE};
use crate::rootfs::{Outcome, Perm, Root};
use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Sets the password of `admin` unless it exists already: a generated one when no password file
/// is kept, the kept one when the file is there but the account is not (a new database).
pub async fn first_password(plan: &Plan, root: &Root, db: &DbPlan) -> anyhow::Result<()> {
    let file = Path::new(ADMIN_PASSWORD);
    let shown = root.host_path(Path::new(ADMIN_PASSWORD.trim_start_matches('/')));
    let exists = db.user_exists("admin").await?;
    let kept = root.exists(file)?;
    match (exists, kept) {
        (true, true) => println!("kept the admin account and {}", shown.display()),
        (true, false) => println!(
            "the admin account exists: its password is not shown (`onebox-app --config {SITE_FILE} admin set-password admin` sets a new one)"
        ),
        (false, true) => {
            let password = root.read(file)?;
            set_password(plan, Some(password.trim_end_matches('\n')))?;
            println!("set the admin password kept in {}", shown.display());
        }
        (false, false) => {
            let password = set_password(plan, None)?;
            let dir = Perm {
                mode: 0o700,
                owner: Some((0, 0)),
            };
            let perm = Perm {
                mode: 0o600,
                owner: Some((0, 0)),
            };
            let outcome = root.write_new(file, format!("{password}\n").as_bytes(), perm, dir)?;
            if outcome == Outcome::Kept {
                anyhow::bail!("{} appeared while the password was set", shown.display());
            }
            if plan.rooted {
                println!("the admin password is in {}", shown.display());
            } else {
                show_on_console("the site's admin password", &password, &shown);
            }
        }
    }
    Ok(())
}

/// Runs `onebox-app --config SITE admin set-password admin`, as the app's database user when
/// this runs as root (its unix_socket identity); returns the password (generated, or `given`).
fn set_password(plan: &Plan, given: Option<&str>) -> anyhow::Result<String> {
    let site = plan.root.join(SITE_FILE.trim_start_matches('/'));
    let app_user = plan
        .database
        .as_ref()
        .map(|d| (d.app_user.clone(), d.admin_user.clone()));
    let mut cmd = match app_user {
        Some((app, admin)) if rustix::process::geteuid().is_root() && app != admin => {
            let mut c = Command::new("runuser");
            c.args(["-u", &app, "--"]).arg(&plan.app_bin);
            c
        }
        _ => Command::new(&plan.app_bin),
    };
    cmd.arg("--config")
        .arg(&site)
        .args(["admin", "set-password", "admin"]);
    if given.is_none() {
        cmd.arg("--generate");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", plan.app_bin.display()))?;
    if let (Some(mut stdin), Some(password)) = (child.stdin.take(), given) {
        stdin.write_all(format!("{password}\n").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{} admin set-password admin failed ({}): {}",
            plan.app_bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    match given {
        Some(p) => Ok(p.to_string()),
        None => {
            let password = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if password.is_empty() {
                anyhow::bail!("{} printed no password", plan.app_bin.display());
            }
            Ok(password)
        }
    }
}

/// `len` random letters and digits (from the kernel's CSPRNG).
pub fn random_password(len: usize) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        // Rejection sampling: no bias towards the first letters.
        let limit = 256 - 256 % ALPHABET.len();
        for b in bytes {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(out)
}

/// Shows `what` (a secret) on the serial console; standard output only says where it is kept.
pub fn show_on_console(what: &str, password: &str, kept: &Path) {
    let line = format!(
        "\r\nonebox: {what} is: {password} (kept in {})\r\n",
        kept.display()
    );
    // O_NOCTTY: the console must not become this process's controlling terminal.
    let written = rustix::fs::open(
        "/dev/console",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .and_then(|fd| std::fs::File::from(fd).write_all(line.as_bytes()));
    match written {
        Ok(()) => println!("{what} is on the console and in {}", kept.display()),
        Err(e) => println!(
            "{what} is in {} (not shown on /dev/console: {e})",
            kept.display()
        ),
    }
}
