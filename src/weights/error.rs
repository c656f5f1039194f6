//! The error of reading or writing a Darknet `.weights` file: which file, and what ([`WeightsErrorKind`]) — for
//! a short file, the layer and byte offset where it ran out.

use std::path::PathBuf;

/// What a read ran out in: the header, or one part of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// e.g. `the header (major, minor, revision)`.
    Header(&'static str),
    /// Part `part` (`biases`, `weights`, ...) of layer `index`.
    Layer { index: usize, part: &'static str },
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Header(what) => f.write_str(what),
            Part::Layer { index, part } => write!(f, "layer {index} (convolutional) {part}"),
        }
    }
}

/// A `.weights` file that cannot be read or written for its cfg: the file and the kind.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", file.display())]
pub struct WeightsError {
    pub file: PathBuf,
    pub kind: WeightsErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsErrorKind {
    #[error("reading weights: {0}")]
    Io(#[source] std::io::Error),
    /// The file ends inside `part` (Darknet silently stops reading).
    #[error("truncated weights file: {part} needs {needed} bytes at byte offset {offset}, but only {remaining} remain (file size {size})")]
    Truncated {
        part: Part,
        needed: usize,
        offset: usize,
        remaining: usize,
        size: usize,
    },
    /// Bytes after the last layer (Darknet ignores them).
    #[error("{count} trailing bytes after the last layer (byte offset {offset} of {size}): the weights do not match the cfg {cfg} (more layers, or different filters/classes)")]
    TrailingBytes {
        count: usize,
        offset: usize,
        size: usize,
        cfg: String,
    },
    #[error(
        "bad weights header at byte offset 0: version {major}.{minor}.{revision} is not one Darknet writes (0.1 or 0.2; major 0..=1, minor < 1000): not a Darknet .weights file?"
    )]
    BadHeader {
        major: i32,
        minor: i32,
        revision: i32,
    },
    #[error("the weights do not list the same convolutional layers as the cfg {cfg}")]
    LayerMismatch { cfg: String },
    #[error("'seen' does not fit the 32-bit field of this header version")]
    SeenOverflow,
}

pub type WeightsResult<T> = std::result::Result<T, WeightsError>;
