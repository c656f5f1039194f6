//! The limits of docs/limits.md are generous enough for every real cfg: all cfgs shipped with Darknet
//! (shared/darknet/cfg) and our named models parse without a limit error, cspx-p7-mish also at 1536x1536, and
//! the training memory estimate at batch 64 is computed for each without overflow. The one shipped cfg with an
//! odd anchor count is refused at its line.

mod common;

use std::path::PathBuf;

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::limits::MemoryEstimate;

/// Messages of the limit checks (src/limits.rs, cfg integer range, anchor pairs).
fn is_limit_error(msg: &str) -> bool {
    msg.contains("beyond the limit")
        || msg.contains("int range")
        || msg.contains("(width, height) pairs")
}

fn cfgs() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in [
        common::shared_dir().join("darknet/cfg"),
        common::root().join("src/models/cfg"),
    ] {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "cfg") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn every_shipped_cfg_is_within_the_limits() {
    let all = cfgs();
    assert!(all.len() > 80, "only {} cfgs found", all.len());
    let mut parsed = 0;
    for p in &all {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        match NetworkConfig::from_file(p) {
            Ok(cfg) => {
                parsed += 1;
                let e = MemoryEstimate::of(&cfg, 64, true);
                assert!(e.total() > 0 && e.total() < u64::MAX / 2, "{name}: {e}");
            }
            Err(e) if name == "cspx-p7-mish_hp.cfg" => {
                // `61,45    61,45`: a missing comma leaves 31 anchor values for num=16.
                let m = e.to_string();
                assert!(
                    m.contains("cspx-p7-mish_hp.cfg:2351") && m.contains("31 values"),
                    "{m}"
                );
            }
            // Layer types we do not implement (rnn, lstm, ...) are refused for that reason, not a limit.
            Err(e) => assert!(!is_limit_error(&e.to_string()), "{name}: {e}"),
        }
    }
    assert!(parsed > 50, "only {parsed} cfgs parsed");
}

/// cspx-p7-mish.cfg itself is refused before any limit (its last `[yolo]` has mask 16 with num=16, an
/// out-of-range anchor Darknet reads past its array), so the largest cfg we run, yolov4-p6 (1280 native), is
/// checked at p7's 1536.
#[test]
fn p6_at_1536_and_batch_64_is_within_the_limits() {
    let p = common::shared_dir().join("darknet/cfg/yolov4-p6.cfg");
    let cfg = NetworkConfig::from_file(&p)
        .unwrap()
        .with_size(1536, 1536)
        .unwrap();
    let e = MemoryEstimate::of(&cfg, 64, true);
    // Tens of GB: refused on a small machine by the memory check, not by a static limit.
    assert!(e.total() > (8u64 << 30) && e.total() < (1u64 << 50), "{e}");
}

#[test]
fn absurd_cfg_values_name_their_line() {
    let base = "[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=8\nsize=3\n";
    for (bad, line) in [
        ("filters=99999999999", 6),
        ("filters=1000000000", 6),
        ("size=1001", 7),
    ] {
        let key = bad.split('=').next().unwrap();
        let text = base
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key}=")) {
                    bad
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let e = NetworkConfig::parse(&text, std::path::Path::new("x.cfg")).unwrap_err();
        assert_eq!(e.line, line, "{bad}: {e}");
        assert!(is_limit_error(&e.to_string()), "{bad}: {e}");
    }
    let e = NetworkConfig::parse(
        "[net]\nwidth=100000\nheight=64\nchannels=3\n[convolutional]\nfilters=8\n",
        std::path::Path::new("w.cfg"),
    )
    .unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

/// Fuzz-found (tests/data/fuzz/README.md): a corrupt PNG that makes stb_image_rust index out of bounds is an
/// error naming the image, not a crash.
#[test]
fn fuzz_found_png_is_an_error_not_a_crash() {
    let p = common::root().join("tests/data/fuzz/image_stb_zlib_dist_oob.png");
    let bytes = std::fs::read(&p).unwrap();
    let e = candle_darknet::image::decode_image(&bytes, 3, "crash.png").unwrap_err();
    assert!(format!("{e:#}").contains("crash.png"), "{e:#}");
}
