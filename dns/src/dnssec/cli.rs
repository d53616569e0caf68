//! The DNSSEC subcommands: `ds` reads the state file; `ksk-rollover` and `ksk-submitted` ask
//! the running server through its control socket.

use crate::cli::ServeArgs;
use crate::config::Settings;
use hickory_proto::rr::Name;

/// The state directory of the site file given with `--config` (required: it says where the
/// keys are).
fn state_dir(args: &ServeArgs) -> anyhow::Result<std::path::PathBuf> {
    if args.config.is_none() {
        anyhow::bail!("--config FILE is needed: the site file's [dns] state_dir holds the keys");
    }
    Ok(Settings::from_args(args)?.state_dir)
}

/// A zone name as given on the command line.
fn zone_name(zone: &str) -> anyhow::Result<Name> {
    let mut name = Name::from_ascii(zone)
        .map_err(|e| anyhow::anyhow!("`{zone}` is not a domain name: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// `onebox-dns --config FILE ds ZONE`: prints the DS and DNSKEY records.
pub fn ds(args: &ServeArgs, zone: &str) -> anyhow::Result<()> {
    let text = super::ds::text(&state_dir(args)?, &zone_name(zone)?).map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(())
}

/// Sends `request` to the running server and prints its answer.
pub fn control(args: &ServeArgs, request: &str) -> anyhow::Result<()> {
    let text = super::control::request(&state_dir(args)?, request).map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(())
}
