//! Training loop tests: the training-mode forward of the whole network against Darknet's
//! `mini-yolov4-train` dump (every layer output, every yolo delta and cost, computed through our network), the
//! gradient reaching each yolo layer's input, and kill/resume determinism of the loop.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_darknet::cfg::{LayerConfig, NetworkConfig};
use candle_darknet::compare::{compare, read_f32_file, Status, Tolerance};
use candle_darknet::network::Network;
use candle_darknet::weights;

fn shared_dir() -> PathBuf {
    let near = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if near.join("reference").exists() {
        near
    } else {
        PathBuf::from("/work/shared")
    }
}

fn mini() -> (NetworkConfig, weights::NetWeights, PathBuf) {
    let r = shared_dir().join("reference");
    assert!(
        r.join("mini-yolov4-train/manifest.json").exists(),
        "MISSING REFERENCE: {}/mini-yolov4-train",
        r.display()
    );
    let cfg = NetworkConfig::from_file(r.join("mini-yolov4/mini-yolov4.cfg")).unwrap();
    let w = weights::load_any(&cfg, &r.join("mini-yolov4/mini-yolov4.weights")).unwrap();
    (cfg, w, r.join("mini-yolov4-train"))
}

#[test]
fn training_forward_matches_darknet_layers_deltas_costs() {
    let (cfg, w, dir) = mini();
    let report = compare(&cfg, &w, &dir, &Device::Cpu, Tolerance::default(), None).unwrap();
    println!("{}", report.table());
    assert!(report.passed, "training-mode comparison failed");
    let count = |k: &str| {
        report
            .layers
            .iter()
            .filter(|r| r.kind == k && r.status == Status::Pass)
            .count()
    };
    assert_eq!(count("yolo_delta"), 3);
    assert_eq!(count("cost"), 3);
    assert_eq!(count("total_cost"), 1);
    assert_eq!(
        report
            .layers
            .iter()
            .filter(|r| r.status == Status::Pass)
            .count(),
        40 + 7
    );
}

#[test]
fn gradient_at_each_yolo_input_is_minus_darknet_delta() {
    let (cfg, w, dir) = mini();
    let net = Network::load_trainable(&cfg, &w, &Device::Cpu).unwrap();
    let input = read_f32_file(&dir.join("input.bin")).unwrap();
    let truth = read_f32_file(&dir.join("truth.bin")).unwrap();
    let x = Tensor::from_vec(input, (1, 3, 128, 128), &Device::Cpu).unwrap();
    let fwd = net.forward_train(&x).unwrap();
    assert_eq!(fwd.head_inputs.len(), 3);
    let mut total: Option<Tensor> = None;
    let mut deltas = Vec::new();
    // candle keeps gradients of Vars only: a zero Var added to each yolo input reads the gradient there.
    let probes: Vec<candle_core::Var> = fwd
        .head_inputs
        .iter()
        .map(|(_, raw)| candle_core::Var::from_tensor(&raw.zeros_like().unwrap()).unwrap())
        .collect();
    for ((i, raw), probe) in fwd.head_inputs.iter().zip(&probes) {
        let LayerConfig::Yolo(y) = &cfg.layers[*i].config else {
            unreachable!()
        };
        let at_input = (raw + probe.as_tensor()).unwrap();
        let (s, res) =
            candle_darknet::train::yolo_train_head(&at_input, y, 128, 128, &truth).unwrap();
        deltas.push((*i, res.delta));
        total = Some(match total {
            None => s,
            Some(t) => (t + s).unwrap(),
        });
    }
    let grads = total.unwrap().backward().unwrap();
    for ((i, _), ((_, delta), probe)) in fwd.head_inputs.iter().zip(deltas.iter().zip(&probes)) {
        let reference = read_f32_file(&dir.join(format!("layer_{i:03}_yolo_delta.bin"))).unwrap();
        let g: Vec<f32> = grads
            .get(probe.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut worst = 0f32;
        for ((gv, d), r) in g.iter().zip(delta).zip(&reference) {
            // Exactly −(our delta), and within the comparison tolerance of −(Darknet's delta).
            assert_eq!(*gv, -*d, "layer {i}");
            assert!(
                (gv + r).abs() <= 1e-4 + 1e-4 * r.abs(),
                "layer {i}: grad {gv} vs -delta {}",
                -r
            );
            worst = worst.max((gv + r).abs());
        }
        println!(
            "layer {i}: max |grad + darknet delta| = {worst:.3e} over {} values",
            g.len()
        );
    }
    // The gradient also reaches the first layer's weights.
    let first = net.varmap.data().lock().unwrap()["layers.0.conv.weight"].clone();
    let g0 = grads.get(first.as_tensor()).unwrap();
    let n: f32 = g0.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!(n > 0.0 && n.is_finite());
}
