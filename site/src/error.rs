//! Errors from reading a site configuration file.

use std::path::PathBuf;

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file was read but its contents are not a valid configuration.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file the error is in.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// What is wrong, in words.
        message: String,
    },
}

impl ConfigError {
    /// Builds an [`ConfigError::Invalid`] from a `toml` error, turning its byte span into a line
    /// and column of `text`.
    pub(crate) fn from_toml(path: &std::path::Path, text: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map_or(0, |span| span.start).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: err.message().trim().to_string(),
        }
    }
}
