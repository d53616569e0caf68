//! The edge's log: `tracing` lines on stderr (the journal under systemd), `RUST_LOG` or `info`,
//! pingora's own `log` records bridged in — less the ones that report nothing wrong.

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Whether a record is one of pingora's that report nothing wrong, left out of the log.
///
/// `pingora_core::connectors` logs "failed to acquire reusable stream" at ERROR when a request
/// picks up a pooled connection to the app while the task that watched it idle has not yet let
/// go of it (a race between two threads, seen about once in ten proxied requests under load in
/// the image's two CPUs): the connector then opens a new connection and the request goes on. It is
/// the target's only ERROR; its WARN (data on an idle connection) stays.
fn reports_nothing_wrong(meta: &Metadata<'_>) -> bool {
    *meta.level() == Level::ERROR && meta.target() == "pingora_core::connectors"
}

/// The edge's subscriber, writing to `writer`: `filter`'s levels, less
/// [`reports_nothing_wrong`]. The `log` records of pingora reach it through `tracing-log`
/// (installed by `init`), with their own targets.
fn subscriber<W>(writer: W, ansi: bool, filter: EnvFilter) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        // The hint keeps `filter`'s maximum level the subscriber's (an `and` with no hint has
        // none): below it, `tracing` callsites and `log` records (the `log` crate's maximum
        // level is set from it) are skipped before any filter runs, as pingora's many `debug!`
        // on the request path must be.
        .with_filter(filter.and(
            filter_fn(|meta| !reports_nothing_wrong(meta)).with_max_level_hint(LevelFilter::TRACE),
        ));
    tracing_subscriber::registry().with(layer)
}

/// Sets the process's subscriber (stderr, colours on a terminal, `RUST_LOG` or `info`) and
/// bridges the `log` records into it.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    subscriber(std::io::stderr, ansi, filter).init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn pingoras_harmless_error_is_left_out_and_the_rest_kept() {
        // pingora logs through the `log` crate, as here; `init` bridges it the same way.
        let _ = tracing_log::LogTracer::init();
        let buffer = Buffer::default();
        let subscriber = subscriber(buffer.clone(), false, EnvFilter::new("info"));
        // What `init` sets the `log` crate's maximum level from: `info`, not "everything".
        assert_eq!(subscriber.max_level_hint(), Some(LevelFilter::INFO));
        tracing::subscriber::with_default(subscriber, || {
            log::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
            log::warn!(target: "pingora_core::connectors", "Unexpected data read in idle connection");
            log::error!(target: "pingora_proxy", "Fail to proxy: ConnectRefused");
            log::debug!(target: "pingora_proxy", "below the level");
        });
        let text = String::from_utf8_lossy(&buffer.0.lock().unwrap_or_else(|e| e.into_inner()))
            .into_owned();
        assert!(!text.contains("reusable stream"), "{text}");
        assert!(
            text.contains("Unexpected data read in idle connection"),
            "{text}"
        );
        assert!(text.contains("Fail to proxy: ConnectRefused"), "{text}");
        assert!(!text.contains("below the level"), "{text}");
    }
}
