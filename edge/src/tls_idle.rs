//! A TLS connection that waits for its client gives back the buffer TLS reads records into.
//!
//! rustls reads every TLS record from the socket into a buffer of its own (4 KiB, written, so
//! resident) and keeps it for as long as the connection lives, also while the connection waits
//! idle for its client's next request: a fifth of what an idle HTTP/2 connection cost the edge
//! (21.4 KiB against nginx's 15.4 with 10,000 of them, `bench/edge/run`). nginx gives its
//! OpenSSL buffers back while it waits (`SSL_MODE_RELEASE_BUFFERS`).
//!
//! onebox's copy of rustls (`third_party/rustls`) adds `release_read_buffer`, which drops that
//! buffer when it holds no received byte; the next read makes it again. [`ReadBufferRelease`]
//! calls it once a connection has read nothing for [`READ_BUFFER_RELEASE`]: not at each wait for
//! the client, because making the buffer again (allocated and zeroed) at each of a busy
//! connection's reads cost a third more instructions per small request
//! (`bench/edge/callgrind /small.txt`: 19.0k → 28.1k).
//!
//! What looks at the connection once it has been idle that long depends on its protocol:
//! - **HTTP/1.1**: nothing wakes a connection that waits for its next request, so it has a timer
//!   of its own while in use, armed at its first wait for the client and set again at most once
//!   a period (not per request: a read that brings data only marks the period as busy). A
//!   connection idle for one to two periods has its buffer dropped and its timer with it, so it
//!   holds neither and is not woken again.
//! - **HTTP/2**: the h2 layer wakes an idle connection itself, [`H2_IDLE_BUFFERS_RELEASE`] after
//!   its last stream ended and its last frame was read (a PING or a SETTINGS acknowledgement may
//!   come after the stream), to give back its own buffers (`third_party/h2`), and its read then
//!   finds nothing: that wait releases TLS's buffer too, when the connection has read nothing
//!   for the period (the first wait after data notes the time: one clock read per busy spell).
//!   A timer of ours would wake it once more, after the h2 layer gave back its 8 KiB read
//!   buffer, and that read would make it again: 1,000 idle connections held 28.3 KiB each
//!   instead of 24.6 (`tests/connections.rs`).
//!
//! [`H2_IDLE_BUFFERS_RELEASE`]: crate::server::H2_IDLE_BUFFERS_RELEASE

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long a connection reads nothing before its TLS read buffer is given back: HTTP/2's own
/// idle time ([`crate::server::H2_IDLE_BUFFERS_RELEASE`]), whose wake-up is what releases an
/// HTTP/2 connection's buffer (with a longer one here, that wake-up would come too soon).
pub const READ_BUFFER_RELEASE: Duration = crate::server::H2_IDLE_BUFFERS_RELEASE;

/// When one connection gives its TLS read buffer back (see the module's documentation).
#[derive(Debug)]
pub struct ReadBufferRelease {
    /// The time without data after which the buffer goes ([`READ_BUFFER_RELEASE`]).
    period: Duration,
    /// How the connection comes to look again once it has been idle that long.
    wake: Wake,
}

/// How an idle connection is looked at again (see the module's documentation).
#[derive(Debug)]
enum Wake {
    /// HTTP/1.1: by a timer of its own.
    Timer {
        /// Armed while the connection holds its buffer; none once it is given back.
        timer: Option<Pin<Box<Sleep>>>,
        /// Data was read since the timer was last set.
        busy: bool,
    },
    /// HTTP/2: by the h2 layer's own idle wake-up.
    H2 {
        /// When the connection's reads last found nothing after data; none while it reads data.
        idle_since: Option<Instant>,
    },
}

impl ReadBufferRelease {
    /// The release of a connection that reads nothing for `period`: woken by a timer of its
    /// own, or, for HTTP/2 (`h2`), by the h2 layer's idle wake-up.
    pub fn new(period: Duration, h2: bool) -> Self {
        let wake = if h2 {
            Wake::H2 { idle_since: None }
        } else {
            Wake::Timer {
                timer: None,
                busy: false,
            }
        };
        ReadBufferRelease { period, wake }
    }

    /// A read brought data.
    #[inline]
    pub fn read(&mut self) {
        match &mut self.wake {
            Wake::Timer { busy, .. } => *busy = true,
            Wake::H2 { idle_since } => *idle_since = None,
        }
    }

    /// A read found nothing and will wake the task when data comes. Once the connection has
    /// read nothing for the period, calls `release`, which gives the buffer back and says
    /// whether the connection now holds none (false: part of a record waits in it). Otherwise,
    /// for HTTP/1.1, arms or sets the timer (tokio's) that wakes the task to look again.
    pub fn wait(&mut self, cx: &mut Context<'_>, release: impl FnOnce() -> bool) {
        match &mut self.wake {
            Wake::H2 { idle_since } => match *idle_since {
                None => *idle_since = Some(Instant::now()),
                Some(since) if since.elapsed() >= self.period => {
                    if release() {
                        // Looked at again after the next data's first wait, not at every wait.
                        *idle_since = None;
                    }
                }
                Some(_) => {}
            },
            Wake::Timer { timer, busy } => {
                let Some(armed) = timer.as_mut() else {
                    let mut armed = Box::pin(tokio::time::sleep(self.period));
                    let _ = armed.as_mut().poll(cx);
                    *timer = Some(armed);
                    *busy = false;
                    return;
                };
                if armed.as_mut().poll(cx).is_pending() {
                    return;
                }
                if !*busy && release() {
                    *timer = None;
                    return;
                }
                // Busy in the period that ended (or part of a record waits): another period.
                *busy = false;
                armed.as_mut().reset(Instant::now() + self.period);
                let _ = armed.as_mut().poll(cx);
            }
        }
    }

    /// Whether the connection is still being watched: HTTP/1.1's timer is armed, or an
    /// HTTP/2 connection's idle time is being counted (for the tests).
    #[cfg(test)]
    fn watching(&self) -> bool {
        match &self.wake {
            Wake::Timer { timer, .. } => timer.is_some(),
            Wake::H2 { idle_since } => idle_since.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Calls `wait` with a waker that does nothing (the tests sleep instead) and a release that
    /// counts its calls and answers `holds_none`.
    fn wait(r: &mut ReadBufferRelease, calls: &Cell<u32>, holds_none: bool) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        r.wait(&mut cx, || {
            calls.set(calls.get() + 1);
            holds_none
        });
    }

    /// Not released within the period, however often the connection waits.
    #[tokio::test]
    async fn kept_within_the_period() {
        for h2 in [false, true] {
            let calls = Cell::new(0);
            let mut r = ReadBufferRelease::new(Duration::from_secs(60), h2);
            r.read();
            for _ in 0..100 {
                wait(&mut r, &calls, true);
                tokio::task::yield_now().await;
            }
            assert_eq!(calls.get(), 0, "h2 {h2}");
            assert!(r.watching(), "h2 {h2}");
        }
    }

    /// Released at the first wait after a period without data, and no longer watched; watched
    /// again when the connection is next used.
    #[tokio::test]
    async fn released_after_a_period_without_data() {
        let period = Duration::from_millis(20);
        for h2 in [false, true] {
            let calls = Cell::new(0);
            let mut r = ReadBufferRelease::new(period, h2);
            r.read();
            wait(&mut r, &calls, true);
            for _ in 0..200 {
                if !r.watching() {
                    break;
                }
                tokio::time::sleep(period).await;
                wait(&mut r, &calls, true);
            }
            assert_eq!(calls.get(), 1, "h2 {h2}");
            assert!(!r.watching(), "h2 {h2}: still watched");
            r.read();
            wait(&mut r, &calls, true);
            assert!(r.watching(), "h2 {h2}: watched again from the next wait");
        }
    }

    /// Never released while every period brings data (each wait here follows a read).
    #[tokio::test]
    async fn kept_while_reads_bring_data() {
        let period = Duration::from_millis(10);
        for h2 in [false, true] {
            let calls = Cell::new(0);
            let mut r = ReadBufferRelease::new(period, h2);
            for _ in 0..20 {
                r.read();
                wait(&mut r, &calls, true);
                tokio::time::sleep(period).await;
            }
            assert_eq!(calls.get(), 0, "h2 {h2}");
            assert!(r.watching(), "h2 {h2}");
        }
    }

    /// Kept, and tried again at a later wait, when part of a record waits in the buffer.
    #[tokio::test]
    async fn kept_while_part_of_a_record_waits() {
        let period = Duration::from_millis(10);
        for h2 in [false, true] {
            let calls = Cell::new(0);
            let mut r = ReadBufferRelease::new(period, h2);
            wait(&mut r, &calls, false);
            while calls.get() < 2 {
                tokio::time::sleep(period).await;
                wait(&mut r, &calls, false);
            }
            assert!(r.watching(), "h2 {h2}: kept while part of a record waits");
            tokio::time::sleep(period * 2).await;
            wait(&mut r, &calls, true);
            assert_eq!(calls.get(), 3, "h2 {h2}");
            assert!(!r.watching(), "h2 {h2}");
        }
    }
}
