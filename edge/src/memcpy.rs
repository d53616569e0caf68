//! glibc's copies on AMD processors: vector loops, not `rep movsb`, as newer glibc chooses.
//!
//! Every byte the edge sends over TLS is copied once in user space: rustls copies a record's
//! plaintext into the buffer it then encrypts in place, 16 KiB at a time, with glibc's `memcpy`.
//! Debian 12's glibc (2.36) copies anything from 2 KiB up with `rep movsb` on processors that
//! announce fast `rep movsb` (ERMS), AMD's Zen 3 and later among them, which run it far slower
//! than the vector loop in many cases, and slowest when the destination sits a few bytes past
//! the source modulo 4 KiB (glibc bug 30994) — as a record's payload does, 5 bytes (the record
//! header) into a buffer aligned like the chunk it is copied from. Profiled on an AMD EPYC
//! serving a 1 MiB file over HTTP/1.1: that `memcpy` was 36% of the edge's CPU, three times the
//! AES-GCM encryption. glibc 2.40 and later never use `rep movsb` (nor `rep stosb` for
//! `memset`) on AMD processors; on glibc 2.36 its tunables say the same, and glibc reads them
//! once, as the program starts. So on an AMD processor [`prefer_vector_copies`] starts the edge
//! again in place (`execve` of its own file, same process id, name, arguments and environment) with
//! [`TUNABLES`] added to `GLIBC_TUNABLES`; nothing changes on other processors, or when
//! `GLIBC_TUNABLES` already sets either threshold (the administrator's choice stays).

use std::ffi::OsString;

/// What is added to `GLIBC_TUNABLES` on an AMD processor: the sizes from which glibc copies with
/// `rep movsb` and fills with `rep stosb`, both beyond any size (glibc 2.40's choice on AMD).
pub const TUNABLES: &str = "glibc.cpu.x86_rep_movsb_threshold=0x7fffffffffffffff:glibc.cpu.x86_rep_stosb_threshold=0x7fffffffffffffff";

/// Set in the environment of the edge started again, so that it is started again once at most:
/// a process glibc runs in secure mode (a binary given file capabilities with `setcap`, say)
/// may have `GLIBC_TUNABLES` dropped from its environment, and would otherwise start itself
/// again for ever.
pub const STARTED_AGAIN: &str = "ONEBOX_EDGE_GLIBC_TUNED";

/// The two tunables [`TUNABLES`] sets; either one already set leaves the environment alone.
const NAMES: [&str; 2] = [
    "glibc.cpu.x86_rep_movsb_threshold",
    "glibc.cpu.x86_rep_stosb_threshold",
];

/// Whether the processor is AMD's (or Hygon's, its licensed twin, which glibc counts as AMD).
pub fn amd_processor() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let id = std::arch::x86_64::__cpuid(0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&id.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&id.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&id.ecx.to_le_bytes());
        &vendor == b"AuthenticAMD" || &vendor == b"HygonGenuine"
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The `GLIBC_TUNABLES` value to start again with, given the current one (`None`: unset), or
/// `None` when the current one already sets either threshold.
pub fn tunables_for(current: Option<&str>) -> Option<String> {
    match current {
        None | Some("") => Some(TUNABLES.to_owned()),
        Some(set) => {
            let named = |name: &str| {
                set.split(':')
                    .any(|pair| pair.split('=').next() == Some(name))
            };
            if NAMES.iter().any(|name| named(name)) {
                None
            } else {
                Some(format!("{set}:{TUNABLES}"))
            }
        }
    }
}

/// On an AMD processor, starts this program again in place with [`TUNABLES`] and
/// [`STARTED_AGAIN`] (returning only if that `execve` failed, with its error); otherwise, or if
/// it was started again already, returns `Ok(())` at once. Call in `main` before any thread
/// starts.
pub fn prefer_vector_copies() -> std::io::Result<()> {
    if !cfg!(all(target_arch = "x86_64", target_env = "gnu"))
        || !amd_processor()
        || std::env::var_os(STARTED_AGAIN).is_some()
    {
        return Ok(());
    }
    let current = std::env::var_os("GLIBC_TUNABLES");
    let current = current.as_ref().map(|v| v.to_string_lossy());
    let Some(tunables) = tunables_for(current.as_deref()) else {
        return Ok(());
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("onebox-edge"));
    use std::os::unix::process::CommandExt;
    // The file by its path, not as /proc/self/exe: the kernel names a process (its `comm`, what
    // ps, pgrep and systemctl show) after the file name it was started by. A file replaced
    // since (`/proc/self/exe` then ends in " (deleted)") makes the `execve` fail: said, and the
    // edge serves as it is.
    let exe = std::env::current_exe()?;
    let err = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(STARTED_AGAIN, "1")
        .exec();
    Err(err)
}

/// What the edge's log says of glibc's copies once it runs (`None`: not an AMD processor, or no
/// `GLIBC_TUNABLES`). glibc rewrites the variable's original bytes as it parses them (a NUL at
/// each `:`), so `/proc/PID/environ` shows only its first tunable; the process's own
/// environment has it whole.
pub fn in_effect() -> Option<String> {
    if !amd_processor() {
        return None;
    }
    let set = std::env::var_os("GLIBC_TUNABLES")?;
    let set = set.to_string_lossy();
    Some(if set.ends_with(TUNABLES) {
        format!(
            "glibc copies with vector loops on this AMD processor, not rep movsb (GLIBC_TUNABLES={set})"
        )
    } else {
        format!("glibc copies as the GLIBC_TUNABLES the edge was started with say ({set})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunables_are_added_to_what_is_set_and_leave_the_administrators_alone() {
        assert_eq!(tunables_for(None).as_deref(), Some(TUNABLES));
        assert_eq!(tunables_for(Some("")).as_deref(), Some(TUNABLES));
        assert_eq!(
            tunables_for(Some("glibc.malloc.arena_max=2")),
            Some(format!("glibc.malloc.arena_max=2:{TUNABLES}"))
        );
        assert_eq!(
            tunables_for(Some("glibc.cpu.x86_rep_movsb_threshold=4096")),
            None
        );
        assert_eq!(
            tunables_for(Some(
                "glibc.malloc.arena_max=2:glibc.cpu.x86_rep_stosb_threshold=1"
            )),
            None
        );
        // A name that only starts like one of ours is another tunable.
        assert!(tunables_for(Some("glibc.cpu.x86_rep_movsb_threshold_x=1")).is_some());
    }
}
