#![no_main]
// safetensors bytes (8-byte header length, JSON header, metadata, tensors) for a fixed small cfg.
use std::path::Path;

use candle_darknet::weights::safetensors;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let cfg = common::small_cfg();
    if safetensors::looks_like_safetensors(data) {
        let _ = safetensors::from_bytes(&cfg, data, Path::new("fuzz.safetensors"));
    }
    let _ = safetensors::embedded_cfg(data);
});
