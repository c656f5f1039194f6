//! The fast subset of the hostile-input probe (tools/probe, `--quick`: about 60 cases in six families) against
//! the binary built for this test run: any panic, abort or hang fails (docs/limits.md).

mod common;

#[test]
fn quick_probe_has_no_panic_abort_or_hang() {
    let work = common::root().join("target/probe_quick");
    let out = std::process::Command::new(common::python())
        .arg(common::root().join("tools/probe/probe.py"))
        .args(["--quick", "--jobs", "2", "--timeout", "30", "--bin"])
        .arg(env!("CARGO_BIN_EXE_candle-darknet"))
        .arg("--work")
        .arg(&work)
        .arg("--shared")
        .arg(common::shared_dir())
        .output()
        .expect("running tools/probe/probe.py");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "probe failed:\n{text}");
    // The table's TOTAL row: a real run of at least 50 cases, none of them panic/abort/hang.
    let total = text
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .expect("the probe prints its table");
    let n: Vec<usize> = total
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(n.len(), 9, "{total}");
    assert_eq!(&n[5..8], &[0, 0, 0], "panic/abort/hang: {total}");
    assert!(n[8] >= 50, "only {} cases ran: {total}", n[8]);
}
