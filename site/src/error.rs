//! Errors from reading a site file.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A site file could not be used.
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
    /// The file was read but a value in it is not valid.
    #[error("{}:{line}:{column}: {}{message}", path.display(), key_prefix(key))]
    Invalid {
        /// The file the error is in.
        path: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column of the offending text.
        column: usize,
        /// The key, as a dotted path (`edge.limits.max_headers`, `dns.zone[0].name`); empty
        /// when the error is not about one key (a syntax error).
        key: String,
        /// What is wrong, in words.
        message: String,
    },
    /// A key the file does not set has a default that cannot be used on this machine (e.g. the
    /// default web root does not exist).
    #[error("{}: {key} (not set, so its default): {message}", path.display())]
    Default {
        /// The file.
        path: PathBuf,
        /// The key, as a dotted path.
        key: String,
        /// What is wrong, in words.
        message: String,
    },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// The 1-based line and column of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl ConfigError {
    /// Builds an [`ConfigError::Invalid`] from a `toml` error, turning its byte span into a line
    /// and column of `text` and naming the key there.
    pub(crate) fn from_toml(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map_or(0, |span| span.start);
        let (line, column) = line_column(text, offset);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            key: err
                .span()
                .and_then(|span| key_path_at(text, span))
                .unwrap_or_default(),
            message: err.message().trim().to_string(),
        }
    }
}

/// The dotted path of the key whose name or value is at `span.start` of the TOML `text`
/// (`edge.limits.max_headers`, `dns.zone[1].name`), if the text parses and one is.
pub fn key_path_at(text: &str, span: Range<usize>) -> Option<String> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(doc.get_ref(), span.start, &mut path).then(|| path.concat())
}

fn find_in_table(table: &toml::de::DeTable<'_>, at: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        let dot = if path.is_empty() { "" } else { "." };
        path.push(format!("{dot}{}", key.get_ref()));
        if key.span().contains(&at) || find_in_value(value, at, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn find_in_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    at: usize,
    path: &mut Vec<String>,
) -> bool {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => find_in_table(table, at, path),
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                if find_in_value(item, at, path) {
                    return true;
                }
                path.pop();
            }
            // An array of scalars: the array itself.
            value.span().contains(&at)
        }
        _ => value.span().contains(&at),
    }
}
