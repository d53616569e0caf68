//! Errors that stop onebox-edge from starting.

/// Why the edge cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The site file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] onebox_site::ConfigError),
    /// The state directory cannot be created.
    #[error("{}: cannot create the state directory: {source}", path.display())]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The web root cannot be resolved.
    #[error("{}: cannot use the web root: {source}", path.display())]
    WebRoot {
        /// The directory.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A listening address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address from the configuration.
        addr: std::net::SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// TLS or ACME set-up failed.
    #[error("{0}")]
    Tls(String),
    /// The upstream pool could not be built.
    #[error("the upstream pool cannot be built: {0}")]
    Upstreams(std::io::Error),
    /// The daemon could not report itself ready (`--daemon`).
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// pingora refused to set up the server.
    #[error("the server cannot start: {0}")]
    Server(String),
}
