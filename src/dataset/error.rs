//! The dataset module's error: which file, which line (when one line is at fault), and what is wrong.

use std::path::{Path, PathBuf};

/// An error reading a dataset file; callers can match on [`DatasetError::kind`].
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {kind}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DatasetError {
    pub file: PathBuf,
    /// 1-based line number, when one line is at fault.
    pub line: Option<usize>,
    pub kind: DatasetErrorKind,
}

/// What is wrong with a dataset file.
#[derive(Debug, thiserror::Error)]
pub enum DatasetErrorKind {
    #[error("cannot read it: {0}")]
    Io(std::io::Error),
    #[error("not UTF-8 (byte offset {0})")]
    NotUtf8(usize),
    #[error("expected key=value, got {0:?}")]
    ExpectedKeyValue(String),
    #[error("bad value {value:?} for key {key}")]
    BadValue { key: String, value: String },
    #[error("expected `class xc yc w h`, got {0:?}")]
    LabelFields(String),
    #[error("bad class id {0:?}")]
    BadClassId(String),
    #[error("class id {class} out of range 0..{classes}")]
    ClassOutOfRange { class: usize, classes: usize },
    #[error("bad number {0:?}")]
    BadNumber(String),
    #[error("non-finite number {0:?}")]
    NonFinite(String),
    #[error("no image paths")]
    EmptyList,
}

impl DatasetError {
    pub fn new(file: &Path, line: Option<usize>, kind: DatasetErrorKind) -> Self {
        DatasetError {
            file: file.to_path_buf(),
            line,
            kind,
        }
    }

    pub(crate) fn at(file: &Path, line: usize, kind: DatasetErrorKind) -> Self {
        Self::new(file, Some(line), kind)
    }

    pub(crate) fn io(file: &Path, e: std::io::Error) -> Self {
        Self::new(file, None, DatasetErrorKind::Io(e))
    }

    /// True when the file does not exist (as opposed to unreadable or malformed).
    pub fn is_not_found(&self) -> bool {
        matches!(&self.kind, DatasetErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The text of `path` as UTF-8.
pub(crate) fn read_text(path: &Path) -> Result<String, DatasetError> {
    let bytes = std::fs::read(path).map_err(|e| DatasetError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        DatasetError::new(
            path,
            None,
            DatasetErrorKind::NotUtf8(e.utf8_error().valid_up_to()),
        )
    })
}

/// `fgetl`-style lines: split on `\n`, a trailing `\r` removed; no entry after a final newline.
pub(crate) fn darknet_lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.is_empty();
    body.split('\n')
        .filter(move |_| !empty)
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}
