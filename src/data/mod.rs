//! Darknet's detector training data pipeline, reproduced draw for draw: glibc `rand()` and Darknet's
//! random helpers ([`rand`]), JPEG decoding as OpenCV `imread` ([`decode`]), labels ([`truth`]), the
//! OpenCV 8-bit pixel ops ([`augment`]) and `load_data_detection` ([`detection`]).
//! Each op is documented in docs/augmentation/.

// The parity tests are written as in Darknet (`random_gen() % 2 == 0`) so they read like the C code.
#![allow(clippy::manual_is_multiple_of)]

pub mod augment;
pub mod bench;
pub mod decode;
pub mod detection;
pub mod loader;
pub mod rand;
pub mod truth;

pub use detection::{
    load_data_detection, load_data_detection_timed, AugmentConfig, DetectionBatch, Sources,
    StageTimes,
};
pub use rand::{DarknetRand, FastRand, GlibcRand};
pub mod reference;
