//! Batched UDP I/O on dedicated threads, as NSD and Knot serve UDP: one thread per UDP socket
//! (the SO_REUSEPORT sockets of [`crate::server`]), no async runtime on this path. Each thread
//! blocks in `recvmmsg` (`MSG_WAITFORONE`: it returns as soon as one datagram is there, with
//! up to [`BATCH`] of those waiting), answers each request with [`Engine::respond_into`] in
//! the order received, and sends the answers with one `sendmmsg` call. Then, when its recent
//! arrival rate says a short wait will gather several datagrams, it sleeps before it reads
//! again, at most `[dns] udp_batch_wait_us` (adaptive batching, as a NIC moderates its
//! interrupts: see [`Pacer`]); at low rates it never waits.
//!
//! Everything a batch needs is allocated once per thread and reused: the request buffers, the
//! message headers and address slots of both calls, and one reply buffer per datagram (a
//! cached answer is written into it: no allocation per answer). What `sendmmsg` does not send
//! (a full socket buffer, an address it refuses) is sent one by one; a `recvmmsg` that fails is
//! followed by one `recvfrom`, as a single-datagram loop would do.
//!
//! Every answer goes through [`Engine::respond_into`], so rate limiting sees each one, the
//! metrics count each one, and each request is answered from the catalog stored at that moment
//! (a reload is seen by the next request).

use crate::answer::Transport;
use crate::query::Engine;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Datagrams taken per `recvmmsg` call.
pub const BATCH: usize = 32;

/// Each datagram's buffer: the largest UDP payload, so that no request is cut short.
const BUF: usize = 65_535;

/// The address of a datagram's sender, if it is an IP address.
fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// Starts the thread that serves `socket` (made blocking here) until the process ends; it is
/// named `name`, and `cap` is its `udp_batch_wait_us` (the longest wait of its [`Pacer`]).
pub fn spawn_udp(
    socket: UdpSocket,
    engine: Arc<Engine>,
    name: String,
    cap: Duration,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    std::thread::Builder::new()
        .name(name)
        .spawn(move || serve_udp(&socket, &engine, cap))?;
    Ok(())
}

/// The time constant of the arrival rate's estimate: datagrams older than this count less and
/// less (e^-1 at this age, e^-6 at six times it), so the rate is that of the last few dozen
/// milliseconds and an idle spell clears it.
const RATE_WINDOW: Duration = Duration::from_millis(16);

/// The batch a wait aims for: it lasts until this many datagrams are expected since the last
/// read (at most the cap).
const GATHER: f64 = (BATCH / 2) as f64;

/// The fewest datagrams a wait of the whole cap must be expected to gather: below this rate
/// (4 per `udp_batch_wait_us`; 8,000 per second per socket at 500 µs) a thread never waits.
const MIN_GATHER: f64 = 4.0;

/// A wait shorter than this is not taken (not worth a timer).
const MIN_WAIT: Duration = Duration::from_micros(10);

/// Reads without a wait after the first time waits are found useless, doubling (up to
/// [`MAX_BACKOFF`]) each time they are found useless again.
const MIN_BACKOFF: u32 = 32;

/// The longest pause of the waits, in reads.
const MAX_BACKOFF: u32 = 4096;

/// Useless waits in a row that pause the waits.
const USELESS_IN_A_ROW: u32 = 2;

/// Decides, for one UDP thread, whether to wait after a batch before reading again, and how
/// long: adaptive batching.
///
/// It keeps an estimate of the socket's arrival rate: an exponentially decaying count of the
/// datagrams read (time constant [`RATE_WINDOW`]), so a steady rate is estimated as itself, a
/// burst of N datagrams counts as N per `RATE_WINDOW`, and an idle spell takes it to nothing.
/// After a batch it waits only if
///
/// - waits are on (`cap` above 0) and the batch did not fill [`BATCH`] (the socket may hold
///   more: it is read again at once);
/// - the rate would bring at least [`MIN_GATHER`] datagrams in `cap` (a lightly loaded or
///   idle thread answers every query at once);
/// - the time to gather [`GATHER`] datagrams since the last read, at that rate, has not passed
///   yet: the wait is what is left of it, at most `cap` (a thread whose answering took that
///   long reads again at once; a busier socket waits less), and at least [`MIN_WAIT`];
/// - waits have not been found useless lately: a wait is useless when the read after it takes
///   fewer than 2 datagrams, or under half the datagrams the rate promised (a client that sends
///   its next query only after its answer, whose rate a wait only lowers). After
///   [`USELESS_IN_A_ROW`] useless waits in a row the thread reads without waiting for
///   [`MIN_BACKOFF`] reads, twice as many each time it happens again (up to [`MAX_BACKOFF`]);
///   a useful wait resets that.
///
/// What arrives during a wait queues in the socket: at most about [`GATHER`] datagrams at the
/// estimated rate, or `cap` times a rate that jumped meanwhile.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// The longest wait (`udp_batch_wait_us`); zero: never waits.
    cap: Duration,
    /// Datagrams per second, as of `last_read`.
    rate: f64,
    /// When the last read returned datagrams.
    last_read: Option<Instant>,
    /// The datagrams the last wait was expected to gather (since the read before it), if the
    /// last batch was followed by a wait.
    promised: Option<f64>,
    /// Useless waits in a row.
    useless: u32,
    /// Reads left before waits resume.
    paused: u32,
    /// The next pause, in reads.
    backoff: u32,
}

impl Pacer {
    /// A thread's pacer, with `cap` its longest wait (zero: it never waits).
    pub fn new(cap: Duration) -> Pacer {
        Pacer {
            cap,
            rate: 0.0,
            last_read: None,
            promised: None,
            useless: 0,
            paused: 0,
            backoff: MIN_BACKOFF,
        }
    }

    /// The estimated arrival rate, datagrams per second, as of the last read.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Records a read at `at` that took `taken` datagrams (a read that took none is ignored).
    pub fn read(&mut self, at: Instant, taken: usize) {
        if taken == 0 {
            return;
        }
        let window = RATE_WINDOW.as_secs_f64();
        let decay = self.last_read.map_or(0.0, |last| {
            (-(at.saturating_duration_since(last).as_secs_f64()) / window).exp()
        });
        self.rate = self.rate * decay + taken as f64 / window;
        self.last_read = Some(at);
        if let Some(promised) = self.promised.take() {
            let got = taken as f64;
            if got < 2.0 || got < promised / 2.0 {
                self.useless += 1;
                if self.useless >= USELESS_IN_A_ROW {
                    self.useless = 0;
                    self.paused = self.backoff;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            } else {
                self.useless = 0;
                self.backoff = MIN_BACKOFF;
            }
        } else {
            self.paused = self.paused.saturating_sub(1);
        }
    }

    /// How long to sleep at `now`, after the batch of `taken` datagrams last read, before
    /// reading again; `None`: read at once.
    pub fn wait(&mut self, now: Instant, taken: usize) -> Option<Duration> {
        let last = self.last_read?;
        if self.cap.is_zero()
            || taken >= BATCH
            || self.paused > 0
            || self.rate * self.cap.as_secs_f64() < MIN_GATHER
        {
            return None;
        }
        let since = now.saturating_duration_since(last);
        let gather = Duration::try_from_secs_f64(GATHER / self.rate).ok()?;
        let wait = gather.saturating_sub(since).min(self.cap);
        if wait < MIN_WAIT {
            return None;
        }
        self.promised = Some(self.rate * (since + wait).as_secs_f64());
        Some(wait)
    }
}

/// What one thread reuses from batch to batch.
struct Batch {
    /// The request buffers.
    bufs: Box<[Vec<u8>; BATCH]>,
    /// The headers and address slots of `recvmmsg`.
    recv_headers: MultiHeaders<SockaddrStorage>,
    /// The headers and address slots of `sendmmsg`.
    send_headers: MultiHeaders<SockaddrStorage>,
    /// The datagrams received: (buffer, length, sender).
    got: Vec<(usize, usize, SockaddrStorage)>,
    /// The answers, the first `replies` of them to send.
    out: Box<[Vec<u8>; BATCH]>,
    /// Where each answer goes.
    to: Box<[Option<SockaddrStorage>; BATCH]>,
}

/// Serves `socket` (blocking) until the process ends.
fn serve_udp(socket: &UdpSocket, engine: &Engine, cap: Duration) {
    let mut pacer = Pacer::new(cap);
    let metrics = engine.metrics().clone();
    let mut batch = Batch {
        bufs: Box::new(std::array::from_fn(|_| vec![0u8; BUF])),
        recv_headers: MultiHeaders::preallocate(BATCH, None),
        send_headers: MultiHeaders::preallocate(BATCH, None),
        got: Vec::with_capacity(BATCH),
        out: Box::new(std::array::from_fn(|_| Vec::with_capacity(512))),
        to: Box::new([None; BATCH]),
    };
    loop {
        receive(socket, &mut batch);
        let taken = batch.got.len();
        if taken > 0 {
            pacer.read(Instant::now(), taken);
            metrics.udp_read();
        }
        let mut replies = 0;
        for &(i, len, addr) in &batch.got {
            let (Some(request), Some(client)) =
                (batch.bufs.get(i).and_then(|b| b.get(..len)), to_std(&addr))
            else {
                continue;
            };
            let Some(out) = batch.out.get_mut(replies) else {
                break;
            };
            if engine.respond_into(request, Transport::Udp, client, out) {
                if let Some(to) = batch.to.get_mut(replies) {
                    *to = Some(addr);
                }
                replies += 1;
            }
        }
        if replies > 0 {
            send(socket, &mut batch, replies);
        }
        if let Some(pause) = pacer.wait(Instant::now(), taken) {
            metrics.udp_wait();
            std::thread::sleep(pause);
        }
    }
}

/// Fills `batch.got` with the next datagrams (waits for at least one).
fn receive(socket: &UdpSocket, batch: &mut Batch) {
    batch.got.clear();
    let mut iovs = batch
        .bufs
        .each_mut()
        .map(|b| [IoSliceMut::new(b.as_mut_slice())]);
    match recvmmsg(
        socket.as_raw_fd(),
        &mut batch.recv_headers,
        iovs.iter_mut(),
        MsgFlags::MSG_WAITFORONE,
        None,
    ) {
        Ok(results) => {
            for (i, msg) in results.enumerate() {
                if let Some(addr) = msg.address {
                    batch.got.push((i, msg.bytes, addr));
                }
            }
        }
        Err(nix::errno::Errno::EINTR) => {}
        Err(e) => {
            tracing::debug!("udp receive error (recvmmsg): {e}");
            // One datagram, then batches again.
            let Some(buf) = batch.bufs.first_mut() else {
                return;
            };
            match socket.recv_from(buf) {
                Ok((len, client)) => batch.got.push((0, len, SockaddrStorage::from(client))),
                Err(e) => tracing::debug!("udp receive error: {e}"),
            }
        }
    }
}

/// Sends the first `replies` answers of `batch` with one `sendmmsg` call; what it does not
/// send goes out one by one.
fn send(socket: &UdpSocket, batch: &mut Batch, replies: usize) {
    let slices = batch.out.each_ref().map(|b| [IoSlice::new(b)]);
    let no_cmsgs: [ControlMessage<'_>; 0] = [];
    let sent = match sendmmsg(
        socket.as_raw_fd(),
        &mut batch.send_headers,
        slices.get(..replies).unwrap_or_default(),
        batch.to.get(..replies).unwrap_or_default(),
        no_cmsgs,
        MsgFlags::empty(),
    ) {
        Ok(results) => results.count(),
        Err(e) => {
            tracing::debug!("udp send error (sendmmsg): {e}");
            0
        }
    };
    for (bytes, to) in batch
        .out
        .iter()
        .zip(batch.to.iter())
        .take(replies)
        .skip(sent)
    {
        let Some(client) = to.as_ref().and_then(to_std) else {
            continue;
        };
        if let Err(e) = socket.send_to(bytes, client) {
            tracing::debug!("udp send to {client} failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CAP: Duration = Duration::from_micros(250);

    /// The settings of a site file whose `[dns]` section is `line`.
    fn settings(line: &str) -> Result<crate::config::Settings, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("site.toml");
        std::fs::write(
            &config,
            format!("[site]\ndomain = \"example.test\"\n\n[dns]\n{line}\n"),
        )
        .unwrap();
        crate::config::Settings::from_args(&crate::cli::ServeArgs {
            listen: Vec::new(),
            zones: None,
            config: Some(config),
            query_log: false,
        })
        .map_err(|e| e.to_string())
    }

    /// A pacer fed `reads` reads of `per_read` datagrams at `rate` per second, evenly spaced
    /// from `start`; returns it and the time of its last read.
    fn steady(cap: Duration, rate: f64, per_read: usize, reads: u32) -> (Pacer, Instant) {
        let mut pacer = Pacer::new(cap);
        let gap = Duration::from_secs_f64(per_read as f64 / rate);
        let mut at = Instant::now();
        for _ in 0..reads {
            at += gap;
            pacer.read(at, per_read);
        }
        (pacer, at)
    }

    /// `udp_batch_wait_us` is the cap: 500 µs by default, 0 turns waits off, above 1000 is
    /// refused with the key named.
    #[test]
    fn udp_batch_wait_us_is_the_cap_500_us_by_default_bounded() {
        assert_eq!(
            settings("").unwrap().udp_batch_wait,
            Duration::from_micros(500)
        );
        assert_eq!(
            settings("udp_batch_wait_us = 1000").unwrap().udp_batch_wait,
            Duration::from_micros(1000)
        );
        assert!(
            settings("udp_batch_wait_us = 0")
                .unwrap()
                .udp_batch_wait
                .is_zero()
        );
        let err = settings("udp_batch_wait_us = 1001").unwrap_err();
        assert!(err.contains("udp_batch_wait_us"), "{err}");
    }

    /// The estimate of a steady rate is that rate; an idle spell takes it to nothing.
    #[test]
    fn the_rate_follows_arrivals_and_decays_when_idle() {
        for (rate, per_read) in [(1_000.0, 1), (20_000.0, 4), (200_000.0, 16)] {
            let (pacer, _) = steady(CAP, rate, per_read, 2000);
            let err = (pacer.rate() - rate).abs() / rate;
            assert!(err < 0.2, "{rate}/s estimated {}", pacer.rate());
        }
        let (mut pacer, at) = steady(CAP, 20_000.0, 4, 2000);
        pacer.read(at + Duration::from_millis(200), 1);
        assert!(pacer.rate() < 100.0, "{}", pacer.rate());
    }

    /// Rates to waits: none below 4 datagrams per cap (16,000/s at 250 µs), the cap up to
    /// where 16 datagrams arrive within it, shorter above, none when answering takes as long
    /// or the batch was full; never longer than the cap; never with a cap of 0.
    #[test]
    fn waits_follow_the_rate_within_the_cap() {
        let after = Duration::from_micros(5);
        let cases: [(f64, usize, Option<Duration>); 8] = [
            (100.0, 1, None),
            (1_000.0, 1, None),
            (10_000.0, 1, None),
            (14_000.0, 2, None),
            (20_000.0, 4, Some(CAP)),
            (50_000.0, 8, Some(CAP)),
            // 16 / 200,000 per s = 80 µs, 5 of which have passed.
            (200_000.0, 16, Some(Duration::from_micros(75))),
            // 16 arrive within 8 µs: the answering gathers the batch.
            (2_000_000.0, 16, None),
        ];
        for (rate, per_read, want) in cases {
            let (mut pacer, at) = steady(CAP, rate, per_read, 4000);
            let got = pacer.wait(at + after, per_read);
            match (got, want) {
                (Some(g), Some(w)) => {
                    let d = g.abs_diff(w);
                    assert!(d <= w / 10, "{rate}/s: waits {g:?}, want about {w:?}");
                }
                (g, w) => assert_eq!(g, w, "{rate}/s"),
            }
            let (mut off, at) = steady(Duration::ZERO, rate, per_read, 4000);
            assert_eq!(off.wait(at + after, per_read), None, "cap 0, {rate}/s");
        }
        let (mut full, at) = steady(CAP, 50_000.0, BATCH, 4000);
        assert_eq!(full.wait(at + after, BATCH), None, "a full batch");
        let mut rate = 500.0;
        while rate < 5_000_000.0 {
            for cap in [1u64, 50, 250, 1000] {
                let cap = Duration::from_micros(cap);
                let (mut pacer, at) = steady(cap, rate, 1, 4000);
                if let Some(wait) = pacer.wait(at + after, 1) {
                    assert!(wait <= cap, "{rate}/s, cap {cap:?}: {wait:?}");
                    assert!(rate * cap.as_secs_f64() >= 3.0, "{rate}/s, cap {cap:?}");
                }
            }
            rate *= 1.5;
        }
    }

    /// A burst of 500 datagrams within a millisecond makes the next small batch wait; the
    /// first query after an idle spell is not followed by one.
    #[test]
    fn a_burst_waits_an_idle_thread_does_not() {
        let mut pacer = Pacer::new(CAP);
        let mut at = Instant::now();
        for taken in [
            32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 20,
        ] {
            at += Duration::from_micros(60);
            pacer.read(at, taken);
        }
        assert!(pacer.wait(at, 20).is_some());
        let mut pacer = Pacer::new(CAP);
        pacer.read(at, 1);
        assert_eq!(pacer.wait(at, 1), None, "the first query");
        pacer.read(at + Duration::from_millis(100), 1);
        assert_eq!(pacer.wait(at + Duration::from_millis(100), 1), None);
    }

    /// A client that waits for each answer before its next query (30 µs a round trip without
    /// waits, 33,000 per second) makes every wait useless: after two, the thread stops waiting
    /// for longer and longer; an open-loop client at 20,000 per second keeps them.
    #[test]
    fn useless_waits_back_off_useful_ones_go_on() {
        let rtt = Duration::from_micros(30);
        let mut pacer = Pacer::new(CAP);
        let mut at = Instant::now();
        let mut waits = 0;
        for _ in 0..4000 {
            at += rtt;
            pacer.read(at, 1);
            if let Some(wait) = pacer.wait(at, 1) {
                waits += 1;
                at += wait;
            }
        }
        assert!(
            (1..=16).contains(&waits),
            "{waits} waits in 4000 round trips"
        );
        // Open loop: a datagram every 50 µs whatever the server does.
        let arrival = Duration::from_micros(50);
        let mut pacer = Pacer::new(CAP);
        let start = Instant::now();
        let (mut at, mut next, mut waits, mut reads) = (start, start, 0, 0);
        while reads < 4000 {
            // Blocked in the read until the next arrival, or after a wait: all that came.
            at = at.max(next);
            let mut taken = 0;
            while next <= at && taken < BATCH {
                taken += 1;
                next += arrival;
            }
            pacer.read(at, taken);
            reads += 1;
            at += Duration::from_micros(2) * u32::try_from(taken).unwrap();
            if let Some(wait) = pacer.wait(at, taken) {
                waits += 1;
                at += wait;
            }
        }
        assert!(waits > 3000, "{waits} waits in 4000 reads at 20,000/s");
    }
}
