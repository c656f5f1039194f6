//! Differential tests of the training-data pipeline against Darknet's own `load_data_detection`
//! (shared/reference/augment, cases A-F): every rand() draw, y bit-exact, X exact.

mod common;
use common::shared_dir;

use candle_darknet::data::rand::{DarknetRand, GlibcRand};
use candle_darknet::data::reference::{compare_case, make_pub_root, read_case_spec, read_rand_log};
use std::path::PathBuf;

fn augment_dir() -> PathBuf {
    let d = shared_dir().join("reference/augment");
    assert!(
        d.join("README.md").exists(),
        "augment reference missing at {}",
        d.display()
    );
    d
}

/// The `pub/` root for the manifests' paths, built under the test's target tmp dir.
fn pub_root(tag: &str) -> PathBuf {
    let weights = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights");
    let dest = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("augment_root_{}_{tag}", std::process::id()));
    match make_pub_root(
        &shared_dir().join("darknet/data"),
        &weights,
        &augment_dir().join("labels_public_synthetic"),
        &dest,
    ) {
        Ok(p) => p,
        Err(e) => panic!("cannot build the pub/ image root: {e:#} (bus.jpg/zidane.jpg come from `make weights`: run make weights)"),
    }
}

const CASES: [(&str, usize); 6] = [
    ("A_nomosaic_lb0_n4", 93),
    ("B_nomosaic_lb1_n2", 48),
    ("C_nomosaic_lb0_n1_maxboxes4", 24),
    ("D_nomosaic_lb1_n1", 24),
    ("E_mosaic_n2", 191),
    ("F_mosaic_n1", 98),
];

fn check_case(name: &str, draws: usize) {
    let root = pub_root(name);
    let r =
        compare_case(&augment_dir().join(name), &root).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    println!("{}", serde_json::to_string(&r).unwrap());
    assert_eq!(r.draws_reference, draws, "{name}: README draw count");
    assert_eq!(r.draws_ours, draws, "{name}: our draw count");
    assert!(
        r.first_divergence.is_none(),
        "{name}: first divergent draw {:?}",
        r.first_divergence
    );
    assert_eq!(
        r.tag_mismatches, 0,
        "{name}: draw meanings differ from the reference tags"
    );
    assert_eq!(
        r.y_differing, 0,
        "{name}: {} of {} y floats differ",
        r.y_differing, r.y_floats
    );
    assert_eq!(
        r.x_differing, 0,
        "{name}: {} of {} X floats differ (max |d| {})",
        r.x_differing, r.x_floats, r.x_max_abs_diff
    );
}

#[test]
fn case_a_nomosaic_lb0_n4() {
    check_case(CASES[0].0, CASES[0].1);
}
#[test]
fn case_b_nomosaic_lb1_n2() {
    check_case(CASES[1].0, CASES[1].1);
}
#[test]
fn case_c_nomosaic_lb0_n1_maxboxes4() {
    check_case(CASES[2].0, CASES[2].1);
}
#[test]
fn case_d_nomosaic_lb1_n1() {
    check_case(CASES[3].0, CASES[3].1);
}
#[test]
fn case_e_mosaic_n2() {
    check_case(CASES[4].0, CASES[4].1);
}
#[test]
fn case_f_mosaic_n1() {
    check_case(CASES[5].0, CASES[5].1);
}

/// glibc rand() equals every value of every case's rand_log.tsv (seeded from the manifest), and the
/// first values the README's generator description implies for srand(1).
#[test]
fn glibc_rand_matches_every_logged_value() {
    let mut g = GlibcRand::new(1);
    assert_eq!(
        [g.rand(), g.rand(), g.rand()],
        [1804289383, 846930886, 1681692777]
    );
    for (name, draws) in CASES {
        let dir = augment_dir().join(name);
        let spec = read_case_spec(&dir).unwrap();
        let log = read_rand_log(&dir).unwrap();
        assert_eq!(log.len(), draws, "{name}");
        let mut g = GlibcRand::new(spec.seed);
        for (i, (v, _)) in log.iter().enumerate() {
            assert_eq!(g.rand(), *v, "{name}: draw {i}");
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod real_glibc {
    use super::*;

    extern "C" {
        fn srand(seed: u32);
        fn rand() -> i32;
    }

    /// Our generator against this machine's own glibc `rand()`, for the seeds the reference README lists,
    /// 10,000 values each (the only test in this binary that touches the global libc stream).
    #[test]
    fn glibc_rand_equals_libc_rand_for_readme_seeds() {
        for seed in [0u32, 1, 7, 99, 2024, 4242, 12345, 31337, 4294967295] {
            let mut g = GlibcRand::new(seed);
            unsafe { srand(seed) };
            for i in 0..10_000 {
                let want = unsafe { rand() } as u32;
                assert_eq!(g.rand(), want, "seed {seed}, value {i}");
            }
        }
    }
}

/// Without bus.jpg / zidane.jpg (from `make weights`) the image root cannot be built and says why.
#[test]
fn missing_weights_images_say_run_make_weights() {
    let empty = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let e = make_pub_root(
        &shared_dir().join("darknet/data"),
        empty.path(),
        &augment_dir().join("labels_public_synthetic"),
        dest.path(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("run make weights"), "{e:#}");
}

/// The comparison can fail: one flipped bit in a copy of y.bin and one changed X value are reported.
#[test]
fn tampered_reference_is_detected() {
    let root = pub_root("tamper");
    let src = augment_dir().join("D_nomosaic_lb1_n1");
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "manifest.json",
        "rand_log.tsv",
        "events.jsonl",
        "X.bin",
        "y.bin",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut y = std::fs::read(dir.path().join("y.bin")).unwrap();
    y[0] ^= 1;
    std::fs::write(dir.path().join("y.bin"), y).unwrap();
    let mut x = std::fs::read(dir.path().join("X.bin")).unwrap();
    x[4..8].copy_from_slice(&0.5f32.to_le_bytes());
    std::fs::write(dir.path().join("X.bin"), x).unwrap();
    let r = compare_case(dir.path(), &root).unwrap();
    assert_eq!((r.y_differing, r.x_differing, r.pass), (1, 1, false));
}

/// `candle-darknet augment --reference` exits 0 with `"pass": true` on a real case.
#[test]
fn cli_reference_mode_passes_case_f() {
    let root = pub_root("cli");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_candle-darknet"))
        .args(["augment", "--json", "--reference"])
        .arg(augment_dir().join("F_mosaic_n1"))
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["pass"], true);
    assert_eq!(v["draws_ours"], 98);
}
