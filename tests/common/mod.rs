//! Paths shared by the integration tests: the repository, ../shared (Darknet's cfgs, data and the reference
//! dumps, read in place) and the official files that `make weights` fetches.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared data (Darknet's cfgs and data, the reference dumps): `$CANDLE_DARKNET_SHARED` when set, else
/// `../shared` beside the checkout (a git worktree beside the main checkout finds the same folder).
pub fn shared_dir() -> PathBuf {
    candle_darknet::util::shared_dir(&root())
}

/// A reference directory under `shared/reference`, which must exist.
pub fn reference(rel: &str) -> PathBuf {
    let p = shared_dir().join("reference").join(rel);
    assert!(p.exists(), "reference data {} is missing", p.display());
    p
}

/// An official yolov4-tiny file from `make weights`; a loud failure when it is not there.
pub fn official(file: &str) -> PathBuf {
    let p = root().join("weights").join(file);
    assert!(
        p.exists(),
        "{} is missing: run `make weights` first",
        p.display()
    );
    p
}

/// The Python interpreter of the differential tests (`$PYTHON`, default `python3`).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Fails the test loudly when Python cannot import OpenCV and numpy (the OpenCV DNN reference needs them).
pub fn require_opencv() {
    let ok = std::process::Command::new(python())
        .args(["-c", "import cv2, numpy"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with cv2 and numpy is needed for this differential test: run `make pydeps`"
    );
}

/// A raw little-endian f32 file.
pub fn read_f32(path: &Path) -> Vec<f32> {
    candle_darknet::compare::read_f32_file(path).unwrap()
}

/// The tolerance of a check against OpenCV DNN with Winograd off (tools/opencv_reference.py's default): its
/// convolutions are GEMM/direct kernels picked by CPU dispatch (AVX-512 or AVX2), so the peer tolerance of that
/// class, as ONNX Runtime's and OpenVINO's in tests/export.rs (docs/export.md "Peer tolerance"): abs 1e-4 + rel
/// 1e-4 + 16 units of roundoff of the layer's largest value.
pub const OPENCV_DNN: candle_darknet::compare::Tolerance =
    candle_darknet::compare::Tolerance::peer(16.0);
