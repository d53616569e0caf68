//! The errors onebox-dns reports, each reading as a sentence.

use std::net::SocketAddr;
use std::path::PathBuf;

/// One problem in a zone file, located by file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ZoneError {
    /// The zone file the problem is in.
    pub file: PathBuf,
    /// 1-based line where the offending entry starts (0 when the problem is the file as a whole).
    pub line: usize,
    /// What is wrong, in words.
    pub message: String,
}

impl ZoneError {
    /// A problem at `line` of `file`.
    pub fn new(file: &std::path::Path, line: usize, message: impl Into<String>) -> Self {
        ZoneError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// A zone file (or several) could not be loaded; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ZoneErrors(pub Vec<ZoneError>);

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The site configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] onebox_site::ConfigError),
    /// The zone directory could not be listed.
    #[error("{}: cannot read the zone directory: {cause}", path.display())]
    ZoneDir {
        /// The directory that was asked for.
        path: PathBuf,
        /// What the operating system said (in the message: not a separate cause, so that it
        /// is not printed twice).
        cause: std::io::Error,
    },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({proto}): {cause}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// What the operating system said (in the message: not a separate cause, so that it
        /// is not printed twice).
        cause: std::io::Error,
    },
    /// The thread that serves a UDP socket could not be started.
    #[error("cannot start the UDP thread of {addr}: {cause}")]
    UdpThread {
        /// The listen address the socket is bound to.
        addr: SocketAddr,
        /// What the operating system said.
        cause: std::io::Error,
    },
    /// No listen address could be bound at all.
    #[error("no listen address could be bound")]
    NothingBound,
    /// The signal handler for SIGHUP could not be installed.
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
}
