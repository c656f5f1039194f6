//! Training loop tests: the training-mode forward of the whole network against Darknet's
//! `mini-yolov4-train` dump (every layer output, every yolo delta and cost, computed through our network), the
//! gradient reaching each yolo layer's input, kill/resume determinism of the loop, and the `Trainer` steps.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_darknet::cfg::{LayerConfig, NetworkConfig};
use candle_darknet::compare::{compare, read_f32_file, Status, Tolerance};
use candle_darknet::network::Network;
use candle_darknet::weights;

mod common;
use common::shared_dir;

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

/// A NaN input makes every yolo cost NaN: the mini-batch fails naming the yolo layer, before anything is
/// accumulated (the optimizer's updates stay zero); the reference input, with finite costs, passes.
#[test]
fn non_finite_loss_stops_before_the_update() {
    use candle_darknet::train::setup::optimizer_for;
    use candle_darknet::train::trainer::train_minibatch;
    let (cfg, w, dir) = mini();
    let net = Network::load_trainable(&cfg, &w, &Device::Cpu).unwrap();
    let truth = read_f32_file(&dir.join("truth.bin")).unwrap();
    let input = read_f32_file(&dir.join("input.bin")).unwrap();
    let x = Tensor::from_vec(input.clone(), (1, 3, 128, 128), &Device::Cpu).unwrap();
    let mut opt = optimizer_for(&net, &cfg, false).unwrap();
    let ok = train_minibatch(&net, &mut opt, &x, &truth).unwrap();
    assert!(ok.network_cost.is_finite() && ok.costs.len() == 3);

    let mut opt = optimizer_for(&net, &cfg, false).unwrap();
    let mut bad = input;
    bad[0] = f32::NAN;
    let x = Tensor::from_vec(bad, (1, 3, 128, 128), &Device::Cpu).unwrap();
    let err = match train_minibatch(&net, &mut opt, &x, &truth) {
        Ok(r) => panic!("a NaN input trained: costs {:?}", r.costs),
        Err(e) => format!("{e:#}"),
    };
    println!("{err}");
    assert!(
        err.contains("yolo layer") && err.contains("not finite"),
        "{err}"
    );
    for (name, u) in opt.state() {
        let s: f32 = u.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(s, 0.0, "{name} accumulated after a non-finite loss");
    }
}

/// A tiny training set: `n` 64x64 JPEGs with 1-2 coloured squares each, Darknet labels beside them.
fn tiny_dataset(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut list = String::new();
    for i in 0..n {
        let mut im =
            image::RgbImage::from_pixel(64, 64, image::Rgb([90 + (i * 20) as u8, 120, 100]));
        let mut labels = String::new();
        for k in 0..1 + i % 2 {
            let (cls, x0, y0, s) = (
                (i + k) % 3,
                6 + 25 * k as u32 + i as u32,
                8 + 5 * i as u32,
                16 + 4 * k as u32,
            );
            let col = [[230, 30, 30], [30, 220, 40], [30, 60, 240]][cls];
            for y in y0..y0 + s {
                for x in x0..x0 + s {
                    im.put_pixel(x, y, image::Rgb(col));
                }
            }
            labels.push_str(&format!(
                "{cls} {} {} {} {}\n",
                (x0 as f32 + s as f32 / 2.0) / 64.0,
                (y0 as f32 + s as f32 / 2.0) / 64.0,
                s as f32 / 64.0,
                s as f32 / 64.0
            ));
        }
        let p = dir.join(format!("img/{i}.jpg"));
        im.save(&p).unwrap();
        std::fs::write(dir.join(format!("img/{i}.txt")), labels).unwrap();
        list.push_str(&format!("{}\n", p.display()));
    }
    std::fs::write(dir.join("train.txt"), &list).unwrap();
    std::fs::write(dir.join("names.txt"), "a\nb\nc\n").unwrap();
    let data = dir.join("tiny.data");
    std::fs::write(
        &data,
        format!(
            "classes=3\ntrain={0}/train.txt\nvalid={0}/train.txt\nnames={0}/names.txt\n",
            dir.display()
        ),
    )
    .unwrap();
    data
}

/// mini-yolov4 at 64x64, batch 4 in 2 subdivisions, 8 iterations, burn-in 2.
fn tiny_cfg(dir: &Path) -> PathBuf {
    let src = std::fs::read_to_string(shared_dir().join("reference/mini-yolov4/mini-yolov4.cfg"))
        .unwrap();
    let mut out = String::new();
    let mut in_net = false;
    for line in src.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_net = t == "[net]";
            out.push_str(line);
            out.push('\n');
            if in_net {
                out.push_str(
                    "width=64\nheight=64\nchannels=3\nbatch=4\nsubdivisions=2\nlearning_rate=0.002\nburn_in=2\n\
                     max_batches=8\npolicy=steps\nsteps=6\nscales=.1\nmomentum=0.9\ndecay=0.0005\n",
                );
            }
            continue;
        }
        let key = t.split('=').next().unwrap_or("").trim();
        if in_net
            && matches!(
                key,
                "width"
                    | "height"
                    | "channels"
                    | "batch"
                    | "subdivisions"
                    | "learning_rate"
                    | "burn_in"
                    | "max_batches"
                    | "policy"
                    | "steps"
                    | "scales"
                    | "momentum"
                    | "decay"
            )
        {
            continue;
        }
        if key == "random" {
            continue; // fixed size keeps the test short
        }
        out.push_str(line);
        out.push('\n');
    }
    let p = dir.join("tiny.cfg");
    std::fs::write(&p, out).unwrap();
    p
}

fn run_train(cfg: &Path, data: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_candle-darknet"))
        .arg("train")
        .arg(cfg)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args([
            "--seed",
            "5",
            "--checkpoint-every",
            "1",
            "--keep",
            "0",
            "--workers",
            "2",
        ])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// One truncated JPEG and one malformed label line in a 4-image set: by default the run finishes and
/// reports both skipped; with `--strict` it stops with an error naming the bad file.
#[test]
fn bad_image_and_label_are_skipped_unless_strict() {
    let base = std::env::temp_dir().join(format!("train-skip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let data = tiny_dataset(&base, 4);
    let cfg = tiny_cfg(&base);
    let jpg = base.join("img/1.jpg");
    let bytes = std::fs::read(&jpg).unwrap();
    std::fs::write(&jpg, &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(base.join("img/2.txt"), "0 0.5 abc 0.1 0.1\n").unwrap();
    let args = ["--max-batches", "3", "--quiet"];
    let out = run_train(&cfg, &data, &base.join("out"), &args)
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let summary = err
        .lines()
        .find(|l| l.contains("skipped 2 images (1 unreadable, 1 with unreadable labels"))
        .unwrap_or_else(|| panic!("no summary in:\n{err}"));
    println!("{summary}");
    assert!(
        summary.contains("first: ") && (summary.contains("1.jpg") || summary.contains("2.jpg"))
    );

    let out = run_train(
        &cfg,
        &data,
        &base.join("strict"),
        &[&args[..], &["--strict"]].concat(),
    )
    .wait_with_output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    assert!(!out.status.success());
    assert!(err.contains("1.jpg") || err.contains("2.txt"), "{err}");
    assert!(!base.join("strict/tiny_final.weights").exists());
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    let base = std::env::temp_dir().join(format!("train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let data = tiny_dataset(&base.join("data"), 6);
    let cfg = tiny_cfg(&base);

    // Uninterrupted run.
    let full = base.join("full");
    let o = run_train(&cfg, &data, &full, &[])
        .wait_with_output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{}\n{}",
        log,
        String::from_utf8_lossy(&o.stderr)
    );
    println!("{log}");
    let losses: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with(" ") && l.contains("avg loss"))
        .collect();
    assert_eq!(losses.len(), 8);

    // Killed (SIGKILL) after the third checkpoint appears, then resumed.
    let cut = base.join("cut");
    let mut child = run_train(&cfg, &data, &cut, &[]);
    let t0 = std::time::Instant::now();
    while !cut.join("checkpoint-00000003.safetensors").exists() {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint 3 after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run should have been killed");
    // Every checkpoint present is complete (loads), whatever moment the kill hit.
    let all = candle_darknet::train::checkpoint::list(&cut).unwrap();
    assert!(all.len() >= 3 && all.len() < 8, "{} checkpoints", all.len());
    for (_, p) in &all {
        candle_darknet::train::checkpoint::load(p, &Device::Cpu).unwrap();
    }
    let o = run_train(&cfg, &data, &cut, &["--resume"])
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("resuming from"), "{err}");

    // Same final weights and the same loss history.
    let a = std::fs::read(full.join("tiny_final.weights")).unwrap();
    let b = std::fs::read(cut.join("tiny_final.weights")).unwrap();
    assert_eq!(a.len(), b.len());
    let fa: Vec<f32> = a[20..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let fb: Vec<f32> = b[20..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let worst = fa
        .iter()
        .zip(&fb)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    println!(
        "max |uninterrupted - resumed| over {} weights: {worst:e}",
        fa.len()
    );
    assert_eq!(&a[..20], &b[..20], "headers (seen) differ");
    assert!(a == b, "final weights differ (max abs {worst:e})");
    let ca = candle_darknet::train::checkpoint::load(
        &full.join("checkpoint-00000008.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let cb = candle_darknet::train::checkpoint::load(
        &cut.join("checkpoint-00000008.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(ca.state.history, cb.state.history);
    assert_eq!(ca.state.seen, 8 * 4);
    // The loss went down over the 8 iterations.
    let h = &ca.state.history;
    println!("loss history {h:?}");
    assert!(h[7].2 < h[0].2, "average loss did not decrease: {h:?}");
    assert!(full.join("chart.png").exists());
    let _ = std::fs::remove_dir_all(&base);
}

/// Ctrl-C (SIGINT) in the middle of a run: a checkpoint of the last finished iteration, and the weights named
/// `_last` as Darknet's `train_detector` names the weights of a run not at its end, never `_final` (the name
/// of the weights after its loop). The `_last` weights are the checkpoint's weights (same `seen`, same values:
/// both come from the variables after that iteration); `--resume` then finishes and writes `_final`.
#[test]
fn interrupted_run_writes_last_not_final_weights() {
    let base = std::env::temp_dir().join(format!("train-sigint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let data = tiny_dataset(&base.join("data"), 6);
    let cfg = tiny_cfg(&base);
    let out = base.join("out");
    // Far more iterations than the test waits for: only the signal ends this run early.
    let child = run_train(&cfg, &data, &out, &["--max-batches", "2000"]);
    let t0 = std::time::Instant::now();
    while !out.join("checkpoint-00000002.safetensors").exists() {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint 2 after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the id of our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let o = child.wait_with_output().unwrap();
    let (log, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    println!("{log}\n{err}");
    assert!(o.status.success(), "{log}\n{err}");
    assert!(err.contains("interrupted at iteration"), "{err}");
    assert!(!out.join("tiny_final.weights").exists());
    assert!(!out.join("tiny_final.safetensors").exists());
    assert!(out.join("tiny_last.safetensors").exists());
    assert!(log.contains("tiny_last.weights"), "{log}");

    // The `_last` weights are those of the newest checkpoint, which the interruption wrote.
    let (it, newest) = candle_darknet::train::checkpoint::list(&out)
        .unwrap()
        .into_iter()
        .max_by_key(|c| c.0)
        .unwrap();
    assert!((2..2000).contains(&it), "stopped at {it}");
    let ck = candle_darknet::train::checkpoint::load(&newest, &Device::Cpu).unwrap();
    let tcfg = NetworkConfig::from_file(&cfg).unwrap();
    let last = weights::darknet::read(&tcfg, &out.join("tiny_last.weights")).unwrap();
    assert_eq!(ck.state.seen, 4 * it as u64);
    assert_eq!(last.header.seen, ck.state.seen);
    let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let tensors = last.to_tensors(&tcfg, &Device::Cpu).unwrap();
    assert_eq!(tensors.len(), ck.model.len());
    for (name, t) in &tensors {
        assert_eq!(host(t), host(&ck.model[name]), "{name}");
    }

    // Resumed, the run ends at max_batches and writes `_final`.
    let o = run_train(
        &cfg,
        &data,
        &out,
        &["--resume", "--max-batches", &(it + 1).to_string()],
    )
    .wait_with_output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("tiny_final.weights").exists());
    let _ = std::fs::remove_dir_all(&base);
}

/// The `Trainer` driven step by step (with an extra mAP and checkpoint in between) ends with the same weights as
/// the `train` loop, and reports every iteration, mAP and checkpoint through its callback.
#[test]
fn trainer_steps_equal_the_loop_and_report_through_the_callback() {
    use candle_darknet::train::trainer::{train, TrainEvent, TrainOptions, Trainer};
    let base = std::env::temp_dir().join(format!("trainer-steps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let data = tiny_dataset(&base.join("data"), 6);
    let cfg = tiny_cfg(&base);
    let opts = |out: &str| {
        let mut o = TrainOptions::new(cfg.clone(), data.clone(), base.join(out));
        o.seed = 11;
        o.max_batches = Some(3);
        o.checkpoint_every = 100;
        o
    };
    let mut events = Vec::new();
    let summary = {
        let mut t = Trainer::new(opts("steps"), Box::new(|e| events.push(e))).unwrap();
        let first = t.step().unwrap();
        assert_eq!((first.iteration, first.seen), (1, 4));
        assert!(first.loss.is_finite() && first.loss > 0.0, "{first:?}");
        let map = t.evaluate().unwrap();
        assert!((0.0..=1.0).contains(&map), "{map}");
        let ck = t.checkpoint().unwrap();
        assert!(ck.exists());
        while !t.done() {
            t.step().unwrap();
        }
        t.finish().unwrap()
    };
    let looped = train(&opts("loop"), Box::new(|_| {})).unwrap();
    let a = std::fs::read(&summary.weights).unwrap();
    let b = std::fs::read(&looped.weights).unwrap();
    assert!(a == b, "step-by-step and loop final weights differ");
    assert_eq!(summary.history, looped.history);

    assert!(
        matches!(
            events[0],
            TrainEvent::Started {
                from: 0,
                max_batches: 3,
                ..
            }
        ),
        "{events:?}"
    );
    let iterations: Vec<(usize, f32)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Iteration(s) => Some((s.iteration, s.avg_loss)),
            _ => None,
        })
        .collect();
    let history: Vec<(usize, f32)> = summary.history.iter().map(|h| (h.0, h.2)).collect();
    assert_eq!(iterations, history);
    assert!(events.iter().any(|e| matches!(
        e,
        TrainEvent::Map {
            iteration: 1,
            initial: false,
            ..
        }
    )));
    assert!(events.iter().any(
        |e| matches!(e, TrainEvent::Checkpoint(p) if p.ends_with("checkpoint-00000001.safetensors"))
    ));
    let _ = std::fs::remove_dir_all(&base);
}

/// `ema_alpha` wired into the loop: from weights whose `seen` puts the run at iteration 1000, with
/// `max_batches` 2003 (EMA start 1001, apply 1003), the average is initialised and updated after 1001, updated
/// after 1002 (`ema = .9·ema + .1·w`, recomputed here in f32 from the live weights the trainer exposes), and
/// replaces the weights after 1003; the checkpoint then writes `<cfg>_ema.weights` holding it.
#[test]
fn ema_alpha_averages_and_applies_in_the_loop() {
    use candle_darknet::train::trainer::{TrainEvent, TrainOptions, Trainer};
    let base = std::env::temp_dir().join(format!("trainer-ema-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let data = tiny_dataset(&base.join("data"), 4);
    let cfg = tiny_cfg(&base);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replacen("[net]\n", "[net]\nema_alpha=0.9\n", 1)).unwrap();
    let (mcfg, mut w, _) = mini();
    w.header = weights::Header::current(4 * 1000); // batch 4: iteration 1000
    let wpath = base.join("start.weights");
    weights::darknet::write(&mcfg, &w, &wpath).unwrap();
    let mut o = TrainOptions::new(cfg.clone(), data, base.join("out"));
    o.seed = 5;
    o.weights = Some(wpath);
    o.max_batches = Some(2003);
    o.checkpoint_every = 1000;
    let mut events = Vec::new();
    let averaged =
        |k: &str| k.contains(".conv.") || (k.contains(".bn.") && !k.contains("running_"));
    let host = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let (ema_file, expected, live_after_apply) = {
        let mut t = Trainer::new(o, Box::new(|e| events.push(e))).unwrap();
        assert_eq!(t.state().iteration, 1000);
        let mut expected: std::collections::BTreeMap<String, Vec<f32>> = Default::default();
        for it in [1001, 1002] {
            t.step().unwrap();
            assert_eq!(t.state().iteration, it);
            for (k, v) in t.tensors().iter().filter(|(k, _)| averaged(k)) {
                let w = host(v);
                let e = expected.entry(k.clone()).or_insert_with(|| w.clone());
                for (e, w) in e.iter_mut().zip(&w) {
                    *e = 0.9f32 * *e + (1.0f32 - 0.9f32) * *w;
                }
            }
        }
        // Not a trivial case: the weights moved, so the average differs from the last weights.
        let moved = t
            .tensors()
            .iter()
            .filter(|(k, _)| averaged(k))
            .any(|(k, v)| {
                host(v)
                    .iter()
                    .zip(&expected[k])
                    .any(|(a, b)| (a - b).abs() > 1e-6)
            });
        assert!(
            moved,
            "the weights did not change between iterations 1001 and 1002"
        );
        t.step().unwrap();
        let live: std::collections::BTreeMap<String, Vec<f32>> = t
            .tensors()
            .iter()
            .filter(|(k, _)| averaged(k))
            .map(|(k, v)| (k.clone(), host(v)))
            .collect();
        t.checkpoint().unwrap();
        (base.join("out/tiny_ema.weights"), expected, live)
    };
    assert_eq!(expected.len(), live_after_apply.len());
    for (k, e) in &expected {
        let l = &live_after_apply[k];
        let worst = e
            .iter()
            .zip(l)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-7,
            "{k}: live weights after ema_apply differ from the average by {worst}"
        );
    }
    let steps: Vec<(bool, bool, bool)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Ema { step, .. } => Some((step.initialized, step.updated, step.applied)),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            (true, true, false),
            (false, true, false),
            (false, false, true)
        ]
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, TrainEvent::EmaWeights(p) if *p == ema_file)));
    // _ema.weights: the average (here also the live weights, just applied).
    let tcfg = NetworkConfig::from_file(&cfg).unwrap();
    let saved = weights::load_any(&tcfg, &ema_file).unwrap();
    let saved = saved.to_tensors(&tcfg, &Device::Cpu).unwrap();
    for (k, e) in &expected {
        let s = host(&saved[k]);
        let worst = e
            .iter()
            .zip(&s)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-7,
            "{k} in _ema.weights differs from the average by {worst}"
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
