#![no_main]
// COCO instances json (ground truth) and COCO results json.
use candle_darknet::eval::coco::parse_results;
use candle_darknet::eval::coco::CocoGt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = CocoGt::parse(&text);
    let _ = parse_results(&text);
});
