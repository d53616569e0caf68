//! The edge's log: `tracing` lines on stderr (the journal under systemd), `RUST_LOG` or `info`,
//! pingora's own `log` records bridged in — less the ones that report nothing wrong.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter};
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

/// Whether an ERROR record of `target` saying `message` is one of pingora's that report nothing
/// wrong, left out of the log.
///
/// On every reload (`systemctl reload onebox-edge`, edge-reload) the new process binds the
/// upgrade socket and looks for the old process's connection at once, before the old process can
/// have been told to send its sockets (SIGQUIT, once the socket is there), and pingora then logs
/// "No incoming socket transfer, sleep 1s and try again" at ERROR and tries again a second later,
/// when the sockets are there: what pingora's bootstrap itself expects ("if we called load_fds
/// first, we would be guaranteeing a timeout"). The target's real failures ("Giving up reading
/// socket", "Error accepting socket transfer") stay.
fn waits_as_expected(target: &str, message: &str) -> bool {
    target == "pingora_core::server::transfer_fd"
        && message.starts_with("No incoming socket transfer")
}

/// The per-layer filter that leaves out [`reports_nothing_wrong`] and [`waits_as_expected`].
struct Harmless;

impl<S> Filter<S> for Harmless {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        !reports_nothing_wrong(meta)
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        // Only an ERROR is looked into: its message is written out to be read.
        if *event.metadata().level() != Level::ERROR {
            return true;
        }
        let Some(meta) = event.normalized_metadata() else {
            return true;
        };
        let mut message = Message::default();
        event.record(&mut message);
        !waits_as_expected(meta.target(), &message.0)
    }

    // Keeps the filter it is combined with the subscriber's maximum level (an `and` where one
    // side has no hint has none): below it, `tracing` callsites and `log` records (the `log`
    // crate's maximum level is set from it) are skipped before any filter runs, as pingora's
    // many `debug!` on the request path must be.
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

/// An event's `message` field, written out.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// The edge's subscriber, writing to `writer`: `filter`'s levels, less [`Harmless`]'s. The `log`
/// records of pingora reach it through `tracing-log` (installed by `init`), with their own targets.
fn subscriber<W>(writer: W, ansi: bool, filter: EnvFilter) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_filter(filter.and(Harmless));
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
            log::error!(
                target: "pingora_core::server::transfer_fd",
                "No incoming socket transfer, sleep {:?} and try again",
                std::time::Duration::from_secs(1)
            );
            log::error!(
                target: "pingora_core::server::transfer_fd",
                "Giving up reading socket from: /run/upgrade.sock, error: EAGAIN"
            );
            log::info!(target: "pingora_core::server::transfer_fd", "No incoming socket transfer");
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
        assert!(!text.contains("sleep 1s and try again"), "{text}");
        assert!(text.contains("Giving up reading socket"), "{text}");
        // Only the ERROR is left out: the same words at another level are not pingora's wait.
        assert!(
            text.contains("INFO pingora_core::server::transfer_fd: No incoming"),
            "{text}"
        );
        assert!(!text.contains("below the level"), "{text}");
    }
}
