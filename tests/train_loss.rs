//! Differential test of the YOLO training loss against Darknet's dumps in
//! shared/reference/mini-yolov4-train (training-mode forward of mini-yolov4, deltas and costs of the three yolo
//! layers, see the reference README). The deltas are computed from Darknet's own yolo outputs, so this checks the
//! loss alone.

mod common;
use common::shared_dir;

use std::path::PathBuf;

use candle_darknet::cfg::{LayerConfig, NetworkConfig};
use candle_darknet::train::{yolo_deltas, YoloGeometry};

fn read_f32(path: &PathBuf) -> Vec<f32> {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("REFERENCE MISSING: cannot read {}: {e}", path.display()));
    assert_eq!(bytes.len() % 4, 0, "{}: not a float32 file", path.display());
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn yolo_deltas_and_costs_match_darknet() {
    let root = shared_dir().join("reference");
    let train = root.join("mini-yolov4-train");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(train.join("manifest.json"))
            .expect("REFERENCE MISSING: mini-yolov4-train/manifest.json"),
    )
    .unwrap();
    let net = NetworkConfig::from_file(root.join("mini-yolov4/mini-yolov4.cfg")).unwrap();
    let truth = read_f32(&train.join("truth.bin"));
    let (net_w, net_h) = (net.net.width, net.net.height);
    assert_eq!((net_w, net_h), (128, 128));

    let yolo_entries: Vec<&serde_json::Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "yolo")
        .collect();
    assert_eq!(
        yolo_entries.len(),
        3,
        "expected three yolo layers in the manifest"
    );

    let mut costs = Vec::new();
    for entry in yolo_entries {
        let index = entry["index"].as_u64().unwrap() as usize;
        let spec = &net.layers[index];
        let LayerConfig::Yolo(cfg) = &spec.config else {
            panic!("layer {index} of the cfg is not [yolo]");
        };
        let g = YoloGeometry {
            batch: 1,
            w: spec.output.w,
            h: spec.output.h,
            net_w,
            net_h,
        };
        assert_eq!(
            (g.w, g.h),
            (
                entry["w"].as_u64().unwrap() as usize,
                entry["h"].as_u64().unwrap() as usize
            )
        );
        let output = read_f32(&train.join(entry["file"].as_str().unwrap()));
        let expected = read_f32(&train.join(entry["delta_file"].as_str().unwrap()));
        let res = yolo_deltas(cfg, &output, g, &truth).unwrap();
        assert_eq!(res.delta.len(), expected.len());

        let mut max_abs = 0f32;
        let mut worst = 0usize;
        let mut bad = 0usize;
        for (k, (&a, &e)) in res.delta.iter().zip(&expected).enumerate() {
            let err = (a - e).abs();
            if err > 1e-4 + 1e-4 * e.abs() {
                bad += 1;
                if bad <= 10 {
                    println!("  layer {index} element {k}: ours {a} reference {e}");
                }
            }
            if err > max_abs {
                max_abs = err;
                worst = k;
            }
        }
        let nonzero = expected.iter().filter(|v| **v != 0.0).count();
        let ref_cost = entry["cost"].as_f64().unwrap();
        let cost_rel = ((res.cost as f64 - ref_cost) / ref_cost).abs();
        println!(
            "layer {index}: {} deltas ({} non-zero in reference), max |delta - ref| = {max_abs:.3e} at {worst} \
             ({} vs {}), cost {} vs {ref_cost} (rel err {cost_rel:.2e}), count {}, avg IoU {}",
            expected.len(),
            nonzero,
            res.delta[worst],
            expected[worst],
            res.cost,
            res.count,
            res.avg_iou
        );
        assert_eq!(
            bad, 0,
            "layer {index}: {bad} delta elements outside abs 1e-4 + rel 1e-4"
        );
        assert!(
            cost_rel < 1e-4,
            "layer {index}: cost {} vs {ref_cost}",
            res.cost
        );
        costs.push(res.cost as f64);
    }
    let total = costs.iter().sum::<f64>() / costs.len() as f64;
    let ref_total = manifest["total_loss_get_network_cost"].as_f64().unwrap();
    println!("get_network_cost: {total} vs {ref_total}");
    assert!(((total - ref_total) / ref_total).abs() < 1e-4);
}

/// Option coverage: seven one-layer cases run through Darknet's own `forward_yolo_layer` (CPU build of 59596d7,
/// tools/yolo_loss_cases/harness.c + gen.py), batch 2, 8×8 grid: giou, diou with iou_thresh/iou_thresh_kind,
/// mse with truth_thresh < 1 and objectness_smooth, ciou with counters_per_class and cls_normalizer, iou with
/// focal_loss, show_details=0 with new_coords, ciou with new_coords + objectness_smooth + label smoothing; truth
/// lists with two boxes in one cell, an out-of-range class and data after the x == 0 terminator.
#[test]
fn yolo_deltas_match_darknet_option_cases() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/yolo_loss");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("FIXTURES MISSING: {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 7, "expected 7 cases in {}", dir.display());
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let net = NetworkConfig::from_file(case.join("case.cfg")).unwrap();
        let LayerConfig::Yolo(cfg) = &net.layers[0].config else {
            panic!("{name}: layer 0 is not [yolo]");
        };
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.join("result.json")).unwrap()).unwrap();
        let get = |k: &str| meta[k].as_u64().unwrap() as usize;
        let g = YoloGeometry {
            batch: get("batch"),
            w: get("w"),
            h: get("h"),
            net_w: get("net_w"),
            net_h: get("net_h"),
        };
        assert_eq!(g.batch, net.net.mini_batch());
        let output = read_f32(&case.join("output.bin"));
        let expected = read_f32(&case.join("delta.bin"));
        let truth = read_f32(&case.join("truth.bin"));
        let res = yolo_deltas(cfg, &output, g, &truth).unwrap();
        let mut max_abs = 0f32;
        let mut bad = 0usize;
        for (k, (&a, &e)) in res.delta.iter().zip(&expected).enumerate() {
            let err = (a - e).abs();
            if err > 1e-4 + 1e-4 * e.abs() {
                bad += 1;
                if bad <= 10 {
                    println!("  {name} element {k}: ours {a} reference {e}");
                }
            }
            max_abs = max_abs.max(err);
        }
        let ref_cost = meta["cost"].as_f64().unwrap();
        let cost_rel = ((res.cost as f64 - ref_cost) / ref_cost).abs();
        println!(
            "{name}: max |delta - ref| = {max_abs:.3e} over {} ({} non-zero), cost {} vs {ref_cost} (rel {cost_rel:.2e}), \
             total_bbox {} vs {}, rewritten_bbox {} vs {}",
            expected.len(),
            expected.iter().filter(|v| **v != 0.0).count(),
            res.cost,
            res.total_bbox,
            get("total_bbox"),
            res.rewritten_bbox,
            get("rewritten_bbox")
        );
        assert_eq!(
            bad, 0,
            "{name}: {bad} delta elements outside abs 1e-4 + rel 1e-4"
        );
        assert!(cost_rel < 1e-4, "{name}: cost {} vs {ref_cost}", res.cost);
        assert_eq!(res.total_bbox, get("total_bbox"), "{name}: total_bbox");
        assert_eq!(
            res.rewritten_bbox,
            get("rewritten_bbox"),
            "{name}: rewritten_bbox"
        );
    }
}

fn mish(x: f32) -> f32 {
    // Darknet's mish: x * tanh(softplus(x)), softplus with threshold 20.
    let sp = if x > 20.0 {
        x
    } else if x < -20.0 {
        x.exp()
    } else {
        x.exp().ln_1p()
    };
    x * sp.tanh()
}

/// `batchnorm_train` on Darknet's training-mode forward of mini-yolov4: layer 0 (3×3 conv of input.bin, 128×128)
/// and layer 2 (1×1 conv of the reference layer-1 output, 64×64), both batch_normalize=1 + mish, weights read
/// from mini-yolov4.weights (header 20 bytes; per conv: biases, scales, rolling mean, rolling variance, weights).
#[test]
fn batchnorm_train_matches_darknet_training_forward() {
    use candle_core::{Device, Tensor};
    use candle_darknet::train::{batchnorm_train, DARKNET_CPU_ROLLING_MOMENTUM};
    let root = shared_dir().join("reference");
    let train = root.join("mini-yolov4-train");
    let weights_bytes = std::fs::read(root.join("mini-yolov4/mini-yolov4.weights"))
        .expect("REFERENCE MISSING: mini-yolov4.weights");
    let weights: Vec<f32> = weights_bytes[20..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let dev = Device::Cpu;
    // (layer, input file, input shape (c, h, w), filters, size, pad, offset of the layer in the weights)
    let cases = [
        (
            0usize,
            "input.bin",
            (3usize, 128usize, 128usize),
            8usize,
            3usize,
            1usize,
            0usize,
        ),
        (
            2,
            "layer_001_convolutional.bin",
            (16, 64, 64),
            8,
            1,
            0,
            248 + 1216,
        ),
    ];
    for (layer, input_file, (c, h, w), n, size, pad, off) in cases {
        let x = read_f32(&train.join(input_file));
        let x = Tensor::from_vec(x, (1, c, h, w), &dev).unwrap();
        let take =
            |o: usize, len: usize| Tensor::new(&weights[off + o..off + o + len], &dev).unwrap();
        let biases = take(0, n);
        let scales = take(n, n);
        let rolling_mean = take(2 * n, n);
        let rolling_var = take(3 * n, n);
        let kernel = take(4 * n, n * c * size * size)
            .reshape((n, c, size, size))
            .unwrap();
        let conv = x.conv2d(&kernel, pad, 1, 1, 1).unwrap();
        let bn = batchnorm_train(
            &conv,
            &scales,
            &biases,
            &rolling_mean,
            &rolling_var,
            DARKNET_CPU_ROLLING_MOMENTUM,
        )
        .unwrap();
        let y: Vec<f32> = bn.y.flatten_all().unwrap().to_vec1().unwrap();
        let expected = read_f32(&train.join(format!("layer_{layer:03}_convolutional.bin")));
        assert_eq!(y.len(), expected.len());
        let mut max_abs = 0f32;
        let mut bad = 0usize;
        for (&a, &e) in y.iter().zip(&expected) {
            let a = mish(a);
            let err = (a - e).abs();
            max_abs = max_abs.max(err);
            if err > 1e-4 + 1e-4 * e.abs() {
                bad += 1;
            }
        }
        println!("layer {layer}: conv + batchnorm_train + mish vs Darknet training forward: max abs err {max_abs:.3e}");
        assert_eq!(
            bad, 0,
            "layer {layer}: {bad} elements outside abs 1e-4 + rel 1e-4"
        );
    }
}

/// `current_rate` and `DarknetSgd` against Darknet's own `get_current_rate` and `update_convolutional_layer`
/// (tests/data/lr_policy/darknet.json, generated by tools/yolo_loss_cases/gen_rates.sh from the cfgs beside it):
/// the rate at 34 iterations per policy (burn-in included), and the parameters and accumulators of a
/// batch-normalised conv after three updates with fixed accumulated negative gradients.
#[test]
fn lr_policy_and_sgd_match_darknet() {
    use candle_core::{Device, Tensor, Var};
    use candle_darknet::train::{current_batch, current_rate, DarknetSgd, ParamKind};
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/lr_policy");
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("darknet.json")).expect("FIXTURES MISSING: lr_policy/darknet.json"),
    )
    .unwrap();
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let close = |a: f32, e: f32| (a - e).abs() <= 1e-6 * e.abs() + 1e-12;
    let entries = reference.as_object().unwrap();
    assert_eq!(entries.len(), 7);
    let dev = Device::Cpu;
    // Darknet harness values: 0.1f * ((k*7 + i*3) % 11) - 0.5f.
    let val = |k: usize, i: usize| 0.1f32 * ((k * 7 + i * 3) % 11) as f32 - 0.5;
    for (file, r) in entries {
        let net = NetworkConfig::from_file(dir.join(file)).unwrap().net;
        let iters: Vec<usize> = r["iters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let rates = floats(&r["rates"]);
        let mut max_rel = 0f64;
        for (&it, &e) in iters.iter().zip(&rates) {
            let seen = (it * net.batch) as u64;
            assert_eq!(current_batch(&net, seen), it);
            let a = current_rate(&net, it);
            assert!(
                close(a, e),
                "{file}: iteration {it}: rate {a} vs Darknet {e}"
            );
            if e != 0.0 {
                max_rel = max_rel.max(((a - e) / e).abs() as f64);
            }
        }

        let n = 2usize;
        let w = Var::from_tensor(
            &Tensor::from_vec(
                (0..4).map(|i| val(1, i)).collect::<Vec<_>>(),
                (n, 2, 1, 1),
                &dev,
            )
            .unwrap(),
        )
        .unwrap();
        let b = Var::from_tensor(
            &Tensor::from_vec((0..n).map(|i| val(2, i)).collect::<Vec<_>>(), n, &dev).unwrap(),
        )
        .unwrap();
        let s = Var::from_tensor(
            &Tensor::from_vec((0..n).map(|i| 1.0 + val(3, i)).collect::<Vec<_>>(), n, &dev)
                .unwrap(),
        )
        .unwrap();
        let mut opt = DarknetSgd::new(
            vec![
                ("conv.weights".into(), w.clone(), ParamKind::Weights),
                ("conv.biases".into(), b.clone(), ParamKind::NoDecay),
                ("conv.scales".into(), s.clone(), ParamKind::NoDecay),
            ],
            net.momentum,
            net.decay,
        )
        .unwrap();
        for k in 0..3 {
            // L = -Σ g·p  ->  grad = -g, i.e. Darknet's accumulated delta g.
            let g = |base: usize, len: usize, shape: &[usize]| {
                Tensor::from_vec(
                    (0..len).map(|i| val(base + k, i)).collect::<Vec<_>>(),
                    shape,
                    &dev,
                )
                .unwrap()
            };
            let loss = ((w.as_tensor() * g(10, 4, &[n, 2, 1, 1]))
                .unwrap()
                .sum_all()
                .unwrap()
                + (b.as_tensor() * g(20, n, &[n])).unwrap().sum_all().unwrap()
                + (s.as_tensor() * g(30, n, &[n])).unwrap().sum_all().unwrap())
            .unwrap()
            .neg()
            .unwrap();
            let rate = current_rate(&net, 1000 + k);
            assert!(close(rate, floats(&r["update_rates"])[k]));
            opt.step(&loss.backward().unwrap(), rate, net.batch)
                .unwrap();
        }
        let state: std::collections::HashMap<String, Tensor> = opt.state().into_iter().collect();
        let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
        let mut max_abs = 0f32;
        for (ours, key) in [
            (flat(w.as_tensor()), "weights"),
            (flat(&state["conv.weights.update"]), "weight_updates"),
            (flat(b.as_tensor()), "biases"),
            (flat(&state["conv.biases.update"]), "bias_updates"),
            (flat(s.as_tensor()), "scales"),
            (flat(&state["conv.scales.update"]), "scale_updates"),
        ] {
            for (a, e) in ours.iter().zip(floats(&r[key])) {
                max_abs = max_abs.max((a - e).abs());
                assert!(
                    (a - e).abs() <= 1e-6 + 1e-6 * e.abs(),
                    "{file}: {key}: {a} vs Darknet {e}"
                );
            }
        }
        println!("{file}: rates max rel err {max_rel:.2e}; after 3 SGD updates max abs err {max_abs:.2e}");
    }
}

/// End to end against Darknet's own `forward_network` + `backward_network` (tests/data/backward, generated by
/// tools/yolo_loss_cases/gen_backward.sh): conv 3×3 + batch norm (training) + leaky → conv 1×1 linear → yolo
/// (ciou), batch 2, 16×16. Our forward (candle conv2d, `batchnorm_train`, `yolo_activate`, `yolo_deltas`) and the
/// surrogate loss's autograd must reproduce Darknet's layer outputs, yolo delta and the accumulated
/// weight / scale / bias updates (= −gradient).
#[test]
fn surrogate_backward_matches_darknet_backward_network() {
    use candle_core::{Device, Tensor, Var};
    use candle_darknet::train::{
        batchnorm_train, delta_tensor, yolo_activate, yolo_surrogate_loss,
        DARKNET_CPU_ROLLING_MOMENTUM,
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/backward");
    let f = |name: &str| read_f32(&dir.join(format!("{name}.bin")));
    let dev = Device::Cpu;
    let net = NetworkConfig::from_file(dir.join("net.cfg")).unwrap();
    let batch = net.net.mini_batch();
    assert_eq!(batch, 2);
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_vec(v, shape, &dev).unwrap();
    let x = t(f("input"), &[batch, 3, 16, 16]);
    let w1 = Var::from_tensor(&t(f("layer0_weights"), &[8, 3, 3, 3])).unwrap();
    let s1 = Var::from_tensor(&t(f("layer0_scales"), &[8])).unwrap();
    let b1 = Var::from_tensor(&t(f("layer0_biases"), &[8])).unwrap();
    let w2 = Var::from_tensor(&t(f("layer1_weights"), &[21, 8, 1, 1])).unwrap();
    let b2 = Var::from_tensor(&t(f("layer1_biases"), &[21])).unwrap();

    let check = |name: &str, ours: &[f32], reference: &[f32], abs: f32, rel: f32| {
        assert_eq!(ours.len(), reference.len(), "{name}: length");
        let mut max_abs = 0f32;
        let mut max_ref = 0f32;
        for (k, (&a, &e)) in ours.iter().zip(reference).enumerate() {
            max_abs = max_abs.max((a - e).abs());
            max_ref = max_ref.max(e.abs());
            assert!(
                (a - e).abs() <= abs + rel * e.abs(),
                "{name}[{k}]: ours {a} vs Darknet {e}"
            );
        }
        println!("{name}: max abs err {max_abs:.3e} (max |ref| {max_ref:.3e})");
    };
    let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };

    let conv1 = x.conv2d(w1.as_tensor(), 1, 1, 1, 1).unwrap();
    let bn = batchnorm_train(
        &conv1,
        s1.as_tensor(),
        b1.as_tensor(),
        &t(f("layer0_rolling_mean"), &[8]),
        &t(f("layer0_rolling_variance"), &[8]),
        DARKNET_CPU_ROLLING_MOMENTUM,
    )
    .unwrap();
    let l0 = bn.y.maximum(&(&bn.y * 0.1).unwrap()).unwrap(); // leaky
    check(
        "layer 0 output",
        &flat(&l0),
        &f("layer0_output"),
        1e-4,
        1e-4,
    );
    check(
        "rolling mean",
        &flat(&bn.rolling_mean),
        &f("layer0_rolling_mean_after"),
        1e-5,
        1e-4,
    );
    check(
        "rolling variance",
        &flat(&bn.rolling_variance),
        &f("layer0_rolling_variance_after"),
        1e-5,
        1e-4,
    );
    let raw = l0
        .conv2d(w2.as_tensor(), 0, 1, 1, 1)
        .unwrap()
        .broadcast_add(&b2.as_tensor().reshape((1, 21, 1, 1)).unwrap())
        .unwrap();
    check(
        "layer 1 output",
        &flat(&raw),
        &f("layer1_output"),
        1e-4,
        1e-4,
    );

    let LayerConfig::Yolo(cfg) = &net.layers[2].config else {
        panic!("layer 2 is not [yolo]")
    };
    let g = YoloGeometry {
        batch,
        w: 16,
        h: 16,
        net_w: 16,
        net_h: 16,
    };
    let output = yolo_activate(cfg, &flat(&raw), g).unwrap();
    check("yolo output", &output, &f("layer2_output"), 1e-4, 1e-4);
    let res = yolo_deltas(cfg, &output, g, &f("truth")).unwrap();
    check("yolo delta", &res.delta, &f("layer2_delta"), 1e-4, 1e-4);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("result.json")).unwrap()).unwrap();
    let ref_cost = meta["yolo_cost"].as_f64().unwrap();
    println!("yolo cost {} vs Darknet {ref_cost}", res.cost);
    assert!(((res.cost as f64 - ref_cost) / ref_cost).abs() < 1e-4);

    let loss = yolo_surrogate_loss(&raw, &delta_tensor(&res, g, &dev).unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let neg = |v: &Var| flat(&grads.get(v.as_tensor()).unwrap().neg().unwrap());
    // Sums over 2×256 positions of O(1..10) products: float summation order differs (observed rel err ~5e-7).
    check(
        "layer 1 weight_updates",
        &neg(&w2),
        &f("layer1_weight_updates"),
        1e-3,
        1e-4,
    );
    check(
        "layer 1 bias_updates",
        &neg(&b2),
        &f("layer1_bias_updates"),
        1e-3,
        1e-4,
    );
    check(
        "layer 0 weight_updates",
        &neg(&w1),
        &f("layer0_weight_updates"),
        1e-3,
        1e-4,
    );
    check(
        "layer 0 scale_updates",
        &neg(&s1),
        &f("layer0_scale_updates"),
        1e-3,
        1e-4,
    );
    // Darknet's CPU build leaves bias_updates of a batch-normalised conv at zero (docs/optimizer.md).
    assert!(f("layer0_bias_updates").iter().all(|v| *v == 0.0));
}
