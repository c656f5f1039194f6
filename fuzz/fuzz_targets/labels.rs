#![no_main]
// Darknet label files (`class xc yc w h` lines), with and without a class count.
use std::path::Path;

use candle_darknet::dataset::parse_labels;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_labels(&text, Path::new("fuzz.txt"), Some(3));
    let _ = parse_labels(&text, Path::new("fuzz.txt"), None);
});
