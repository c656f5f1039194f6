//! The error of reading a cfg: where (file and line) and what ([`CfgErrorKind`]), so that callers can match
//! on the kind and a person reads `file:line: message`, as every other cfg message of this crate.

use std::path::{Path, PathBuf};

/// A cfg that cannot be read, parsed, or built: the file, the line (of the key, or of the `[section]` header
/// when the problem is the section as a whole; 0 for the file as a whole) and the kind.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", self.location())]
pub struct CfgError {
    pub file: PathBuf,
    pub line: usize,
    pub kind: CfgErrorKind,
}

/// What went wrong. The messages are those the CLI prints after `file:line: `.
#[derive(Debug, thiserror::Error)]
pub enum CfgErrorKind {
    /// The file cannot be read.
    #[error("reading cfg: {0}")]
    Io(#[source] std::io::Error),
    /// `[name` without `]`.
    #[error("section header without ']': {0:?}")]
    UnclosedSection(String),
    /// A line that is neither `key=value` nor `[section]` (Darknet prints a message and goes on).
    #[error("expected 'key=value' or '[section]', found {0:?}")]
    NotKeyValue(String),
    #[error("option {0:?} before the first [section]")]
    OptionBeforeSection(String),
    #[error("the cfg has no sections")]
    NoSections,
    #[error("first section must be [net] or [network], found [{0}]")]
    FirstSectionNotNet(String),
    #[error("the cfg has no layers after [net]")]
    NoLayers,
    /// A value with no numeric prefix where `atoi`/`atof` would read one.
    #[error("[{section}] {key}={value:?} is not {expected}")]
    BadValue {
        section: String,
        key: String,
        value: String,
        expected: &'static str,
    },
    /// A Darknet layer type this crate does not implement (`[crnn]`, `[lstm]`, ...).
    #[error("layer type [{section}] (layer {index}) is not supported by candle-darknet")]
    UnsupportedLayer { section: String, index: usize },
    /// A section name Darknet does not know either.
    #[error("unknown layer type [{section}] (layer {index})")]
    UnknownLayer { section: String, index: usize },
    /// An option that changes the arithmetic in a way we do not implement (`xnor=1`, ...).
    #[error("[{section}] option '{key}={value}' is not supported by candle-darknet")]
    UnsupportedOption {
        section: String,
        key: String,
        value: String,
    },
    /// A layer reference (`layers=`, `from=`, `share_index=`) that does not point to an earlier layer.
    #[error("[{section}] (layer {index}) {key} refers to layer {raw} (absolute {abs}), which is not an earlier layer")]
    BadReference {
        section: String,
        index: usize,
        key: String,
        raw: i64,
        abs: i64,
    },
    /// A value out of range or options that contradict each other, within one section.
    #[error("[{section}] {message}")]
    Invalid { section: String, message: String },
    /// The layer cannot be built on its input (`make_X_layer`'s shape arithmetic fails).
    #[error("[{layer_type}] (layer {index}): {message}")]
    Shape {
        layer_type: &'static str,
        index: usize,
        message: String,
    },
}

/// The result of every cfg function.
pub type CfgResult<T> = std::result::Result<T, CfgError>;

impl CfgError {
    pub fn new(file: &Path, line: usize, kind: CfgErrorKind) -> Self {
        CfgError {
            file: file.to_path_buf(),
            line,
            kind,
        }
    }

    /// `file:line`, or `file` for an error about the whole file.
    pub fn location(&self) -> String {
        match self.line {
            0 => self.file.display().to_string(),
            line => format!("{}:{line}", self.file.display()),
        }
    }
}
