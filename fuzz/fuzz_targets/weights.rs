#![no_main]
// .weights bytes (header, layers, trailing bytes) for a fixed small cfg, then the non-finite check.
use std::path::Path;

use candle_darknet::weights::darknet;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let cfg = common::small_cfg();
    let p = Path::new("fuzz.weights");
    if let Ok(w) = darknet::from_bytes(&cfg, data, p) {
        let _ = w.check_finite(p);
    }
    let _ = darknet::from_bytes_partial(&cfg, data, p, 1);
});
