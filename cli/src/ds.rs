//! `onebox ds [--config FILE] [ZONE]`: the DS records to give the registrar, and the DNSKEY they
//! are made from, for a zone onebox-dns signs (by default the site's domain). The keys are read
//! from `[dns] state_dir` by the same code as `onebox-dns --config FILE ds ZONE`; onebox-dns
//! need not run, but it must have served the zone once (it makes the keys then).

use hickory_proto::rr::Name;
use std::path::PathBuf;

/// `onebox ds`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The site file (its `[dns] state_dir` holds the keys).
    #[arg(long, value_name = "FILE", default_value = crate::provision::SITE_FILE)]
    pub config: PathBuf,
    /// The zone; default: the site's domain (`[site] domain`).
    pub zone: Option<String>,
}

/// Prints the DS and DNSKEY records of the zone.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let site = onebox_site::load(&args.config).map_err(|e| crate::Invalid(e.to_string()))?;
    // A relative state_dir is relative to the site file, as onebox-dns reads it.
    let state_dir = args.config.parent().map_or_else(
        || site.dns.state_dir.clone(),
        |p| p.join(&site.dns.state_dir),
    );
    let zone = args
        .zone
        .clone()
        .unwrap_or_else(|| site.site.domain.to_string());
    let mut name = Name::from_ascii(&zone)
        .map_err(|e| crate::Invalid(format!("`{zone}` is not a domain name: {e}")))?;
    name.set_fqdn(true);
    let apex = name.to_ascii();
    let signed = site.dns.zone.iter().any(|z| {
        z.dnssec
            && z.name
                .as_str()
                .eq_ignore_ascii_case(apex.trim_end_matches('.'))
    });
    let text = onebox_dns::dnssec::ds::text(&state_dir, &name).map_err(|e| {
        if signed {
            anyhow::anyhow!(e)
        } else {
            anyhow::anyhow!(
                "{e}\n{} has no [[dns.zone]] name = \"{}\" with dnssec = true: the zone is not signed",
                args.config.display(),
                apex.trim_end_matches('.')
            )
        }
    })?;
    if !signed {
        eprintln!(
            "onebox: note: {} does not sign {apex} ([[dns.zone]] dnssec = true): these keys are not in use",
            args.config.display()
        );
    }
    print!("{text}");
    Ok(())
}
