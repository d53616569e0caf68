//! onebox-dns: an authoritative-only DNS server for a directory of RFC 1035 zone files.
//!
//! The request path ([`query::Engine::respond`]) turns request bytes into response bytes from
//! an in-memory [`catalog::Catalog`]: [`query`] decodes and dispatches, [`lookup`] finds the
//! records in a zone, [`transfer`] answers AXFR/IXFR, [`answer`] assembles the wire message
//! (within the client's size), [`edns`] handles the OPT record. [`server`] owns the sockets;
//! [`reload`] swaps the catalog on SIGHUP; [`check`] validates zone files.
//!
//! Module dependencies go one way: `server` → `query` → `lookup`, `transfer` → `answer`,
//! `edns`; nothing below `query` calls back up.

pub mod answer;
pub mod batch;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod config;
pub mod dnssec;
pub mod edns;
pub mod error;
pub mod fastpath;
pub mod lookup;
pub mod metrics;
pub mod query;
pub mod reload;
pub mod rrl;
pub mod served;
pub mod server;
pub mod transfer;
pub mod xfr;
pub mod zone;
pub mod zonefile;

use config::Settings;
use query::Engine;
use std::sync::Arc;

/// The `onebox-dns` command: parses the arguments, then serves or runs the subcommand (the
/// `onebox-dns` binary, and the `onebox` binary when started under that name).
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    use cli::{Cli, Command};
    use std::process::ExitCode;

    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let serving_options =
        !cli.serve.listen.is_empty() || cli.serve.zones.is_some() || cli.serve.query_log;
    if cli.command.is_some() && serving_options {
        eprintln!(
            "onebox-dns: --listen, --zones and --query-log are for serving, not for a subcommand"
        );
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Some(Command::Check { path }) => crate::check::run(&path),
        Some(Command::Ds { zone }) => crate::dnssec::cli::ds(&cli.serve, &zone),
        Some(Command::KskRollover { zone }) => {
            crate::dnssec::cli::control(&cli.serve, &format!("ksk-rollover {zone}"))
        }
        Some(Command::KskSubmitted { zone, ds_ttl }) => {
            crate::dnssec::cli::control(&cli.serve, &format!("ksk-submitted {zone} {ds_ttl}"))
        }
        None => crate::config::Settings::from_args(&cli.serve)
            .map_err(anyhow::Error::from)
            .and_then(|settings| tokio::runtime::Runtime::new()?.block_on(crate::serve(settings))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onebox-dns: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until the process is killed: loads the zones, binds (and the metrics endpoint), and
/// reloads on SIGHUP.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let policy = settings.dnssec;
    if policy.signature_refresh >= policy.signature_lifetime {
        anyhow::bail!(
            "[dns] dnssec_signature_refresh_secs ({}) must be below \
             dnssec_signature_lifetime_secs ({})",
            policy.signature_refresh,
            policy.signature_lifetime
        );
    }
    let signer = Arc::new(dnssec::Signer::new(
        settings.state_dir.clone(),
        policy,
        &settings.zone,
    ));
    let mut loaded = reload::load(&settings.zones, None)?;
    // The serial policy across restarts, on the zones as their files give them.
    let zone_settings = xfr::ZoneSettings::new(&settings.zone);
    xfr::serial::Kept::new(&settings.state_dir).check_at_start(
        &loaded.catalog,
        &settings.zones,
        |zone| xfr::serial::applies(&zone_settings, signer.is_enabled(zone), zone),
    );
    // Signed zones are signed now, before anything is served: old signatures never go out.
    loaded.catalog = signer.sign_catalog(loaded.catalog, None, dnssec::now());
    reload::check_zone_settings(&settings.zone, &loaded.catalog);
    let rrl = rrl::RateLimiter::new(settings.rrl);
    match &rrl {
        Some(rrl) => tracing::info!(
            "response rate limiting is on, {} answers per second per client network and \
             answer, slip {}, window {} s, {} buckets",
            settings.rrl.responses_per_sec,
            settings.rrl.slip,
            settings.rrl.window_secs,
            rrl.buckets()
        ),
        None => tracing::info!("response rate limiting is off (rrl_responses_per_sec = 0)"),
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let engine = Engine::new(loaded.catalog)
        .with_transfers_out(settings.transfers_out_max)
        .with_query_log(settings.query_log)
        .with_answer_cache(settings.answer_cache)
        .with_metrics(metrics.clone())
        .with_rate_limiter(rrl);
    engine.set_zone_settings(&settings.zone);
    engine.set_tsig_keys(settings.tsig_keys.clone());
    // A secondary zone is never served from a file of the zone directory.
    let catalog = engine.xfr().secondaries.merge(
        engine.catalog().load_full().as_ref().clone(),
        &engine.zone_settings(),
    );
    engine.catalog().store(Arc::new(catalog));
    let engine = Arc::new(engine);
    if let Some(addr) = settings.metrics_listen {
        let listener = metrics::bind(addr)
            .await
            .map_err(|cause| error::ServeError::Bind {
                addr,
                proto: "tcp (metrics_listen)",
                cause,
            })?;
        let mut registry = metrics::registry(&metrics, engine.catalog().clone());
        registry.register_collector(Box::new(xfr::secondary::TimersCollector(engine.clone())));
        tokio::spawn(metrics::serve(listener, Arc::new(registry)));
        tracing::info!("metrics at http://{addr}/metrics");
    }
    server::spawn(&settings, server::TcpLimits::of(&settings), engine.clone())?;
    if settings.zone.iter().any(|z| z.dnssec) {
        dnssec::control::serve(signer.clone(), engine.clone())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open the control socket {}: {e} ([dns] state_dir)",
                    dnssec::control::socket_path(&settings.state_dir).display()
                )
            })?;
    }
    tokio::spawn(reload::resign(signer.clone(), engine.clone()));
    xfr::start(
        engine.clone(),
        signer.clone(),
        settings.state_dir.clone(),
        settings.transfers_in.clone(),
    );
    let site = settings
        .site_file
        .clone()
        .map(|(path, dns)| reload::SiteFile { path, dns });
    reload::on_sighup(settings.zones.clone(), site, engine, signer).await?;
    Ok(())
}
