//! `candle-darknet export` (src/export): the exported ONNX graphs run in ONNX Runtime, OpenVINO and ncnn (pnnx)
//! through tools/onnx_run.py and are compared at abs 1e-4 + rel 1e-4:
//! - yolov4-tiny (official weights): every layer against Darknet's dump (../shared/reference/yolov4-tiny-bus416),
//!   and the decoded heads + a consumer's NMS against Darknet's detections, in all three runtimes;
//! - yolov3-tiny (official weights; no Darknet dump exists for it): every layer and the detections against our
//!   network, which tests/yolov3_tiny.rs checks against OpenCV DNN layer by layer;
//! - tests/data/export/all_ops.cfg (random weights): every layer type, activation and option that `Network` runs,
//!   every layer in ONNX Runtime and in the Rust verifier;
//! - detector cfgs of ../shared/darknet/cfg (random weights, small size): the heads in ONNX Runtime. `make test`
//!   runs a subset that covers every layer type those cfgs use; `-- --ignored every_detector_cfg_exports` runs all
//!   of them and prints the table of docs/export.md.

mod common;
use common::{official, python, reference, root, shared_dir};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use candle_darknet::cfg::{LayerConfig, NetworkConfig};
use candle_darknet::compare::{diff_stats, read_f32_file, Manifest, Tolerance};
use candle_darknet::detect::{BoxF, Detection};
use candle_darknet::export::{self, Batch, ExportOptions, Heads};
use candle_darknet::image::{load_image, network_input};
use candle_darknet::inference::{DetectOptions, Detector};
use candle_darknet::network::Network;
use candle_darknet::weights::{darknet, NetWeights};

const ENGINES: [&str; 3] = ["onnxruntime", "openvino", "ncnn"];

/// Runs the CLI; panics with its output when it fails. Returns stdout.
fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_candle-darknet"))
        .args(args)
        .output()
        .unwrap();
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "candle-darknet {args:?} failed:\n{so}\n{se}"
    );
    so.into_owned()
}

/// The graph outputs of `onnx` run by `engine` on `input` (and the consumer's detections when `thresh` is given).
struct EngineRun {
    outputs: HashMap<String, Vec<f32>>,
    detections: Option<Vec<Vec<Vec<f32>>>>,
}

fn run_engine(
    engine: &str,
    onnx: &Path,
    input: &Path,
    dir: &Path,
    thresh: Option<f32>,
) -> EngineRun {
    let out = dir.join(format!("run-{engine}"));
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tools/onnx_run.py"))
        .args(["--engine", engine, "--onnx"])
        .arg(onnx)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(&out);
    if let Some(t) = thresh {
        cmd.args(["--thresh", &t.to_string(), "--nms", "0.45"]);
    }
    let r = cmd.output().unwrap();
    assert!(
        r.status.success(),
        "tools/onnx_run.py --engine {engine} failed (run `make bench-pydeps` for onnxruntime, openvino, ncnn, pnnx):\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("outputs.json")).unwrap()).unwrap();
    let mut outputs = HashMap::new();
    for o in info["outputs"].as_array().unwrap() {
        let f = out.join(o["file"].as_str().unwrap());
        outputs.insert(
            o["name"].as_str().unwrap().to_string(),
            read_f32_file(&f).unwrap(),
        );
    }
    let detections = thresh.map(|_| {
        serde_json::from_str(&std::fs::read_to_string(out.join("detections.json")).unwrap())
            .unwrap()
    });
    EngineRun {
        outputs,
        detections,
    }
}

fn write_f32(path: &Path, v: &[f32]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// Whether layer `i`'s output is an earlier layer's value (left out of `--all-outputs`).
fn is_alias(cfg: &NetworkConfig, i: usize) -> bool {
    match &cfg.layers[i].config {
        LayerConfig::Route(r) => r.layers.len() == 1 && r.groups == 1,
        LayerConfig::Dropout(_) | LayerConfig::Empty(_) => true,
        _ => false,
    }
}

/// Compares `got[name]` with `want` at abs 1e-4 + rel 1e-4; the message names the engine and output.
fn assert_close(engine: &str, name: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(
        got.len(),
        want.len(),
        "{engine}: {name}: {} values, expected {}",
        got.len(),
        want.len()
    );
    let s = diff_stats(got, want, Tolerance::default());
    assert_eq!(
        s.failing, 0,
        "{engine}: {name}: {} of {} values outside abs 1e-4 + rel 1e-4 (max abs {})",
        s.failing, s.count, s.max_abs
    );
    s.max_abs
}

/// (class, score, box) sorted by class then score, for matching two detection lists.
fn sorted(mut v: Vec<(usize, f32, BoxF)>) -> Vec<(usize, f32, BoxF)> {
    v.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.partial_cmp(&a.1).unwrap()));
    v
}

/// The consumer's detections of image 0 (tools/onnx_run.py's NMS on `boxes`/`scores`).
fn consumer_dets(run: &EngineRun) -> Vec<(usize, f32, BoxF)> {
    let d = &run.detections.as_ref().expect("detections")[0];
    sorted(
        d.iter()
            .map(|r| {
                let b = BoxF {
                    x: r[2],
                    y: r[3],
                    w: r[4],
                    h: r[5],
                };
                (r[0] as usize, r[1], b)
            })
            .collect(),
    )
}

fn assert_same_dets(engine: &str, got: &[(usize, f32, BoxF)], want: &[(usize, f32, BoxF)]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{engine}: {} detections, expected {}:\n{got:?}\n{want:?}",
        got.len(),
        want.len()
    );
    assert!(!want.is_empty(), "no detections to compare");
    for (g, w) in got.iter().zip(want) {
        let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 + 1e-4 * b.abs();
        assert!(
            g.0 == w.0
                && close(g.1, w.1)
                && close(g.2.x, w.2.x)
                && close(g.2.y, w.2.y)
                && close(g.2.w, w.2.w)
                && close(g.2.h, w.2.h),
            "{engine}: detection {g:?} differs from {w:?}"
        );
    }
}

#[test]
fn yolov4_tiny_export_reproduces_darknet_in_onnxruntime_openvino_ncnn() {
    let dir = reference("yolov4-tiny-bus416");
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("yolov4-tiny.onnx");
    let cfg_path = official("yolov4-tiny.cfg");
    let out = cli(&[
        "export",
        cfg_path.to_str().unwrap(),
        official("yolov4-tiny.weights").to_str().unwrap(),
        "-o",
        onnx.to_str().unwrap(),
        "--heads",
        "decoded",
        "--all-outputs",
    ]);
    assert!(out.contains("verified: 40 outputs"), "{out}");
    let manifest = Manifest::read(&dir).unwrap();
    let cfg = NetworkConfig::from_file(&cfg_path).unwrap();
    // Darknet's detections after its NMS (greedynms .45), one row per (box, class above .25).
    let dj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("detections.json")).unwrap())
            .unwrap();
    let mut darknet_dets = Vec::new();
    for d in dj["after_nms"].as_array().unwrap() {
        let b: Vec<f32> = d["bbox_rel_cxcywh"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        for (c, p) in d["probs"].as_object().unwrap() {
            let bx = BoxF {
                x: b[0],
                y: b[1],
                w: b[2],
                h: b[3],
            };
            darknet_dets.push((c.parse().unwrap(), p.as_f64().unwrap() as f32, bx));
        }
    }
    let darknet_dets = sorted(darknet_dets);
    for engine in ENGINES {
        let run = run_engine(
            engine,
            &onnx,
            &dir.join("input.bin"),
            tmp.path(),
            Some(0.25),
        );
        let mut compared = 0;
        let mut worst = 0f32;
        for l in &manifest.layers {
            let Some(file) = &l.file else { continue };
            let name = file.trim_end_matches(".bin");
            let Some(got) = run.outputs.get(name) else {
                assert!(is_alias(&cfg, l.index), "{engine}: no output {name}");
                continue;
            };
            let want = read_f32_file(&dir.join(file)).unwrap();
            worst = worst.max(assert_close(engine, name, got, &want));
            compared += 1;
        }
        assert_eq!(compared, 37, "{engine}: every layer but the alias route 31");
        assert_same_dets(engine, &consumer_dets(&run), &darknet_dets);
        println!(
            "{engine}: {compared} layers within abs 1e-4 + rel 1e-4 of Darknet (max abs {worst:.2e}); {} detections = Darknet's",
            darknet_dets.len()
        );
    }
}

#[test]
fn yolov3_tiny_export_reproduces_our_network_in_onnxruntime_openvino_ncnn() {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("yolov3-tiny.onnx");
    let cfg_path = official("yolov3-tiny.cfg");
    let weights = official("yolov3-tiny.weights");
    let out = cli(&[
        "export",
        cfg_path.to_str().unwrap(),
        weights.to_str().unwrap(),
        "-o",
        onnx.to_str().unwrap(),
        "--heads",
        "decoded",
        "--all-outputs",
    ]);
    // maxpool 2/1 (layer 11) pads its bottom/right edge: the Rust verifier runs that MaxPool itself.
    assert!(out.contains("with our kernels for MaxPool"), "{out}");
    let cfg = NetworkConfig::from_file(&cfg_path).unwrap();
    let w = darknet::read(&cfg, &weights).unwrap();
    let im = load_image(&official("bus.jpg"), 3).unwrap();
    let input = network_input(&im, 416, 416, false);
    let input_bin = tmp.path().join("input.bin");
    write_f32(&input_bin, &input.data);
    let net = Network::from_weights(&cfg, &w, &Device::Cpu, &Default::default()).unwrap();
    let x =
        candle_core::Tensor::from_vec(input.data.clone(), (1, 3, 416, 416), &Device::Cpu).unwrap();
    let ours: Vec<Vec<f32>> = net
        .forward_all(&x)
        .unwrap()
        .iter()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let opts = DetectOptions::default();
    let dets: Vec<Detection> = Detector::from_parts(cfg.clone(), &w, None, &Device::Cpu)
        .unwrap()
        .detect(&[im], &opts)
        .unwrap()
        .remove(0);
    let our_dets = sorted(
        dets.iter()
            .flat_map(|d| {
                d.prob
                    .iter()
                    .enumerate()
                    .filter(|(_, &p)| p > opts.thresh)
                    .map(|(c, &p)| (c, p, d.bbox))
            })
            .collect(),
    );
    for engine in ENGINES {
        let run = run_engine(engine, &onnx, &input_bin, tmp.path(), Some(opts.thresh));
        let mut compared = 0;
        for (i, spec) in cfg.layers.iter().enumerate() {
            let name = format!("layer_{i:03}_{}", spec.config.type_name());
            match run.outputs.get(&name) {
                Some(got) => {
                    assert_close(engine, &name, got, &ours[i]);
                    compared += 1;
                }
                None => assert!(is_alias(&cfg, i), "{engine}: no output {name}"),
            }
        }
        assert_eq!(
            compared,
            cfg.layers.len() - 1,
            "{engine}: every layer but route 18"
        );
        assert_same_dets(engine, &consumer_dets(&run), &our_dets);
        println!(
            "{engine}: {compared} layers and {} detections agree",
            our_dets.len()
        );
    }
}

/// Random weights for `cfg` at `size`, the network, and its export (verified in Rust unless `verify` is off).
fn export_random(cfg: &NetworkConfig, opts: &ExportOptions) -> (Network, export::Exported) {
    let w = NetWeights::random(cfg, 1);
    let net = Network::from_weights(cfg, &w, &Device::Cpu, &Default::default()).unwrap();
    let exported = export::export(&net, opts).unwrap();
    (net, exported)
}

#[test]
fn every_layer_type_and_option_exports_exactly() {
    let cfg = NetworkConfig::from_file(root().join("tests/data/export/all_ops.cfg")).unwrap();
    let opts = ExportOptions {
        all_outputs: true,
        ..Default::default()
    };
    let (net, exported) = export_random(&cfg, &opts);
    // The Rust verifier (candle-onnx plus our kernels for what it lacks).
    let report = export::verify(&net, &exported).unwrap();
    assert!(
        report.first_divergence().is_none(),
        "{:?}",
        report.first_divergence()
    );
    assert_eq!(report.checks.len(), cfg.layers.len());
    let own: Vec<&str> = report.fallback_ops.iter().map(String::as_str).collect();
    assert_eq!(
        own,
        ["AveragePool", "Elu", "GlobalAveragePool", "MaxPool", "Pad"]
    );
    // ONNX Runtime, every layer.
    let tmp = tempfile::tempdir().unwrap();
    let onnx = tmp.path().join("all_ops.onnx");
    exported.write(&onnx).unwrap();
    let x = export::verify_input(1, cfg.input_shape(), &Device::Cpu).unwrap();
    let input_bin = tmp.path().join("input.bin");
    write_f32(
        &input_bin,
        &x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let ours = net.forward_all(&x).unwrap();
    let run = run_engine("onnxruntime", &onnx, &input_bin, tmp.path(), None);
    let mut compared = 0;
    for (i, spec) in cfg.layers.iter().enumerate() {
        let name = format!("layer_{i:03}_{}", spec.config.type_name());
        match run.outputs.get(&name) {
            Some(got) => {
                let want = ours[i].flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_close("onnxruntime", &name, got, &want);
                compared += 1;
            }
            None => assert!(is_alias(&cfg, i), "no output {name}"),
        }
    }
    assert_eq!(
        compared,
        cfg.layers.len() - 5,
        "all but dropout, empty and three one-input routes"
    );
}

#[test]
fn fp16_weights_dynamic_batch_opsets_and_mish_op_verify() {
    let cfg = NetworkConfig::from_file(root().join("tests/data/export/all_ops.cfg")).unwrap();
    for opts in [
        ExportOptions {
            fp16_weights: true,
            ..Default::default()
        },
        ExportOptions {
            batch: Batch::Dynamic,
            opset: 13,
            ..Default::default()
        },
        ExportOptions {
            batch: Batch::Fixed(2),
            opset: 21,
            ..Default::default()
        },
        ExportOptions {
            opset: 18,
            mish_op: true,
            ..Default::default()
        },
    ] {
        let (net, exported) = export_random(&cfg, &opts);
        let report = export::verify(&net, &exported).unwrap();
        assert!(
            report.first_divergence().is_none(),
            "{opts:?}: {:?}",
            report.first_divergence()
        );
    }
}

#[test]
fn refusals_name_the_layer_and_reason() {
    // A [region] head cannot be decoded into `boxes`.
    let cfg = NetworkConfig::from_file(root().join("tests/data/export/all_ops.cfg")).unwrap();
    let w = NetWeights::random(&cfg, 1);
    let net = Network::from_weights(&cfg, &w, &Device::Cpu, &Default::default()).unwrap();
    let opts = ExportOptions {
        heads: Heads::Decoded,
        ..Default::default()
    };
    let e = export::export(&net, &opts).unwrap_err().to_string();
    assert!(
        e.contains("layer 39 [Gaussian_yolo]") && e.contains("--heads raw"),
        "{e}"
    );
    let e = export::export(
        &net,
        &ExportOptions {
            opset: 12,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("opset 12"), "{e}");
    // Binary (xnor) convolutions and a softmax tree have no exact ONNX form: refused, never approximated.
    for (file, want) in [
        (
            shared_dir().join("darknet/cfg/tiny-yolo_xnor.cfg"),
            "xnor=1",
        ),
        (root().join("tests/data/heads/cfg/region_tree.cfg"), "tree="),
    ] {
        let cfg = NetworkConfig::from_file(&file)
            .unwrap()
            .with_size(64, 64)
            .unwrap();
        let w = NetWeights::random(&cfg, 1);
        let net = Network::from_weights(&cfg, &w, &Device::Cpu, &Default::default()).unwrap();
        let e = export::export(&net, &ExportOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains("layer "),
            "{}: {e}",
            file.display()
        );
    }
}

/// One detector cfg: random weights at a small size, raw heads exported, run in ONNX Runtime, compared with
/// our network. Returns the worst max abs error over the heads.
fn cfg_heads_agree(file: &Path, tmp: &Path) -> anyhow::Result<f32> {
    let name = file.file_stem().unwrap().to_string_lossy().into_owned();
    let size = if name.contains("p6") || name.contains("p7") {
        256
    } else {
        128
    };
    let cfg = NetworkConfig::from_file(file)?.with_size(size, size)?;
    let w = NetWeights::random(&cfg, 1);
    let net = Network::from_weights(&cfg, &w, &Device::Cpu, &Default::default())?;
    let exported = export::export(&net, &ExportOptions::default())?;
    let onnx = tmp.join(format!("{name}.onnx"));
    exported.write(&onnx)?;
    let x = export::verify_input(1, cfg.input_shape(), &Device::Cpu)?;
    let input_bin = tmp.join(format!("{name}.input.bin"));
    write_f32(&input_bin, &x.flatten_all()?.to_vec1::<f32>()?);
    let heads = net.forward_heads(&x)?;
    let run = run_engine("onnxruntime", &onnx, &input_bin, &tmp.join(&name), None);
    std::fs::remove_file(&onnx)?;
    let mut worst = 0f32;
    for (i, t) in heads {
        let n = export::raw_head_name(&net, i);
        let got = run
            .outputs
            .get(&n)
            .ok_or_else(|| anyhow::anyhow!("no output {n}"))?;
        let s = diff_stats(
            got,
            &t.flatten_all()?.to_vec1::<f32>()?,
            Tolerance::default(),
        );
        anyhow::ensure!(
            s.failing == 0,
            "{n}: {} of {} values differ (max abs {})",
            s.failing,
            s.count,
            s.max_abs
        );
        worst = worst.max(s.max_abs);
    }
    Ok(worst)
}

fn detector_cfgs() -> Vec<PathBuf> {
    let dir = shared_dir().join("darknet/cfg");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|e| e == "cfg"))
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .any(|l| matches!(l.trim(), "[yolo]" | "[region]" | "[Gaussian_yolo]"))
        })
        .collect();
    files.sort();
    files
}

/// The cfgs of `make test`, small ones that add what all_ops.cfg does not have: real cfgs with new_coords +
/// mish + logistic heads, scale_channels + swish + avgpool + dropout + groups, three heads with route groups,
/// and a region head. The large cfgs (yolov3/yolov4 families, Gaussian_yolo, sam) are in the full sweep only.
const CI_CFGS: [&str; 4] = [
    "yolov4-csp-s-mish",
    "enet-coco",
    "yolov4-tiny-3l",
    "tiny-yolo",
];

#[test]
fn detector_cfgs_export_and_agree_in_onnxruntime() {
    let tmp = tempfile::tempdir().unwrap();
    for name in CI_CFGS {
        let f = shared_dir().join(format!("darknet/cfg/{name}.cfg"));
        let worst = cfg_heads_agree(&f, tmp.path()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        println!("{name}: heads agree (max abs {worst:.2e})");
    }
}

/// Every detector cfg (a few minutes): prints the rows of docs/export.md's table.
#[test]
#[ignore]
fn every_detector_cfg_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for f in detector_cfgs() {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let row = match NetworkConfig::from_file(&f) {
            Err(_) => format!("| {name} | does not run (docs/cfg-support.md) | — |"),
            Ok(_) => match cfg_heads_agree(&f, tmp.path()) {
                Ok(w) => format!("| {name} | exports | agrees: worst max abs error {w:.3e} |"),
                Err(e) => format!("| {name} | refused or failed: {e:#} | — |"),
            },
        };
        println!("{row}");
        rows.push(row);
    }
    println!("\n{}", rows.join("\n"));
}

/// The verifier is not blind: a graph whose layer-5 weights were altered diverges first at layer 5.
#[test]
fn verify_names_the_first_diverging_layer() {
    let cfg = NetworkConfig::from_file(root().join("tests/data/export/all_ops.cfg")).unwrap();
    let (net, mut exported) = export_random(&cfg, &ExportOptions::default());
    let graph = exported.model.graph.as_mut().unwrap();
    let conv5 = graph
        .node
        .iter()
        .find(|n| n.op_type == "Conv" && n.name.starts_with("L5_"))
        .unwrap()
        .input[1]
        .clone();
    let w = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == conv5)
        .unwrap();
    // One weight moved by 0.01 (raw little-endian f32).
    let v = f32::from_le_bytes(w.raw_data[..4].try_into().unwrap()) + 0.01;
    w.raw_data[..4].copy_from_slice(&v.to_le_bytes());
    let report = export::verify(&net, &exported).unwrap();
    let first = report.first_divergence().expect("a divergence");
    assert_eq!(first.index, Some(5), "{first:?}");
}
