#![no_main]
// cfg text -> NetworkConfig (reader, every layer parser, shape inference, limits), then the memory estimate
// and the layer table: errors are fine, a panic or an unbounded allocation is a bug.
use std::path::Path;

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::limits::MemoryEstimate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(cfg) = NetworkConfig::parse(&text, Path::new("fuzz.cfg")) {
        let _ = MemoryEstimate::of(&cfg, 64, true).total();
        let _ = cfg.layer_table();
        let _ = cfg.with_size(64, 96);
    }
});
