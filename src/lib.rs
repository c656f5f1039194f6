//! candle-darknet: the Darknet YOLO detectors on candle, mirroring the original C code layer by layer.
//!
//! The data flows one way: cfg text → typed layer configs ([`cfg`]) → network ([`network`], [`layers`]) →
//! raw head outputs → detections ([`detect`]) → metrics ([`eval`]); for training: dataset → augmented batch
//! ([`data`]) → network → yolo deltas → gradients → optimizer ([`train`]).

pub mod anchors;
pub mod cfg;
pub mod compare;
pub mod cpu;
pub mod data;
pub mod dataset;
pub mod detect;
pub mod eval;
pub mod export;
pub mod image;
pub mod inference;
pub mod layers;
pub mod limits;
pub mod models;
pub mod network;
pub mod plot;
pub mod train;
pub mod util;
pub mod weights;
