//! `candle-darknet bench <cfg> <weights>`: latency of the network forward and of the whole pipeline.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use candle_darknet::image::{load_image, Image};
use candle_darknet::inference::{DetectOptions, Detector};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// A model name, or a Darknet .cfg followed by its weights.
    pub model: String,
    pub weights: Option<PathBuf>,
    /// Image for the pipeline timing (default: a mid-grey 640x480 image).
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Runs of the whole pipeline (decode..NMS, batch 1); 0 skips it.
    #[arg(long, default_value_t = 10)]
    pub pipeline_runs: usize,
    /// Detection threshold for the pipeline timing (random weights can produce 10^5 boxes at .25).
    #[arg(long, default_value_t = 0.25)]
    pub thresh: f32,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Network size WxH (default: the cfg's).
    #[arg(long)]
    pub size: Option<String>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also time every layer (median over the runs) and print a table like Darknet's `-benchmark_layers`, with
    /// the kernel that ran each layer.
    #[arg(long)]
    pub layers: bool,
    #[command(flatten)]
    pub cpu: super::cpu_args::CpuArgs,
}

/// One row of the per-layer table.
#[derive(Serialize)]
struct LayerRow {
    index: usize,
    #[serde(rename = "type")]
    kind: &'static str,
    /// The kernel that ran it on the CPU (`winograd-f4`, `im2col-gemm`, ..., or `candle`).
    kernel: &'static str,
    input: [usize; 3],
    output: [usize; 3],
    median_ms: f64,
    bflops_per_image: f64,
    gflops_per_s: f64,
}

/// Per-layer medians of `runs` timed forwards (`Network::forward_timed`) after `warmup` untimed ones.
fn layer_table(
    det: &Detector,
    inputs: &[Image],
    runs: usize,
    warmup: usize,
) -> Result<Vec<LayerRow>> {
    let n = &det.net.cfg.net;
    let mut data = Vec::with_capacity(inputs.len() * n.channels * n.height * n.width);
    for im in inputs {
        data.extend_from_slice(&im.data);
    }
    let x = candle_core::Tensor::from_vec(
        data,
        (inputs.len(), n.channels, n.height, n.width),
        &det.net.device,
    )?;
    for _ in 0..warmup {
        det.net.forward_timed(&x)?;
    }
    let mut per_layer: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); det.net.layers.len()];
    for _ in 0..runs.max(1) {
        let (_, times) = det.net.forward_timed(&x)?;
        for (v, t) in per_layer.iter_mut().zip(times) {
            v.push(t);
        }
    }
    let batch = inputs.len() as f64;
    Ok(det
        .net
        .cfg
        .layers
        .iter()
        .zip(per_layer)
        .zip(&det.net.layers)
        .map(|((l, v), built)| {
            let ms = stats(v).median_ms;
            let bf = l.bflops();
            LayerRow {
                index: l.index,
                kind: l.config.type_name(),
                // A route the next layer reads in place costs nothing here; its reader's time includes it.
                kernel: if det.net.reads_in_place(l.index) {
                    "in-place"
                } else if det.net.folded_into_previous(l.index) {
                    // Run by the previous convolution's epilogue: its time includes this layer's.
                    "folded"
                } else {
                    built.kernel()
                },
                input: [l.input.c, l.input.h, l.input.w],
                output: [l.output.c, l.output.h, l.output.w],
                median_ms: ms,
                bflops_per_image: bf,
                gflops_per_s: if ms > 0.0 {
                    bf * batch / (ms / 1000.0)
                } else {
                    0.0
                },
            }
        })
        .collect())
}

fn print_layer_table(rows: &[LayerRow]) {
    let total: f64 = rows.iter().map(|r| r.median_ms).sum();
    println!(
        "{:>5}  {:<15} {:<12} {:>15} -> {:<15} {:>9} {:>6} {:>9}",
        "layer", "type", "kernel", "input", "output", "ms", "%", "GFLOP/s"
    );
    for r in rows {
        let shape = |s: [usize; 3]| format!("{}x{}x{}", s[0], s[1], s[2]);
        let gf = if r.bflops_per_image > 0.0 {
            format!("{:9.1}", r.gflops_per_s)
        } else {
            format!("{:>9}", "-")
        };
        println!(
            "{:>5}  {:<15} {:<12} {:>15} -> {:<15} {:>9.3} {:>6.1} {}",
            r.index,
            r.kind,
            r.kernel,
            shape(r.input),
            shape(r.output),
            r.median_ms,
            100.0 * r.median_ms / total.max(1e-12),
            gf
        );
    }
    let bf: f64 = rows.iter().map(|r| r.bflops_per_image).sum();
    println!("total of per-layer medians {total:.2} ms ({bf:.3} BFLOPs/image)");
}

#[derive(Serialize)]
struct Stats {
    median_ms: f64,
    p10_ms: f64,
    p90_ms: f64,
    mean_ms: f64,
}

#[derive(Serialize)]
struct BenchReport {
    cfg: String,
    device: String,
    net_w: usize,
    net_h: usize,
    batch: usize,
    runs: usize,
    bflops_per_image: f64,
    forward: Stats,
    pipeline: Option<Stats>,
    images_per_s: f64,
    gflops_per_s: f64,
    peak_rss_mib: Option<f64>,
    threads: usize,
    /// The instruction set of the CPU kernels (`avx512`, `avx2`, `baseline`; `off` with `--no-cpu-kernels`).
    isa: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    layers: Option<Vec<LayerRow>>,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Stats {
        median_ms: q(0.5),
        p10_ms: q(0.1),
        p90_ms: q(0.9),
        mean_ms: v.iter().sum::<f64>() / v.len() as f64,
    }
}

/// The detector `bench` times: the model's cfg (at `--size` when given), its weights, the CPU-kernel options.
/// Returns it with the cfg path for the report.
fn load_detector(a: &BenchArgs) -> Result<(Detector, String)> {
    let device = candle_darknet::util::device(&a.device)?;
    let (m, _) = super::model_arg::resolve(&a.model, a.weights.iter().cloned().collect())?;
    let mut cfg = candle_darknet::cfg::NetworkConfig::from_file(&m.cfg)?;
    if let Some(s) = &a.size {
        let (w, h) = candle_darknet::util::parse_size(s)?;
        cfg = cfg.with_size(w, h)?;
    }
    let weights = candle_darknet::weights::load_any(&cfg, &m.weights)?;
    let load = candle_darknet::network::LoadOptions {
        cpu: a.cpu.options(),
        ..Default::default()
    };
    let det = Detector::from_parts_with(cfg, &weights, None, &device, &load)?;
    Ok((det, m.cfg.display().to_string()))
}

/// Forward latencies in ms: `--warmup` untimed calls, then `--runs` (at least one) timed ones, each synchronised.
fn time_forward(det: &Detector, inputs: &[Image], a: &BenchArgs) -> Result<Vec<f64>> {
    let sync = || -> Result<()> {
        det.net.device.synchronize()?;
        Ok(())
    };
    for _ in 0..a.warmup {
        det.forward(inputs)?;
    }
    sync()?;
    let mut fwd = Vec::with_capacity(a.runs);
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        det.forward(inputs)?;
        sync()?;
        fwd.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(fwd)
}

/// Whole-pipeline latencies per image in ms (decode, preprocess, forward, post-process), `--pipeline-runs` times.
fn time_pipeline(
    det: &Detector,
    image: &Image,
    opts: &DetectOptions,
    a: &BenchArgs,
) -> Result<Vec<f64>> {
    let mut pipe = Vec::with_capacity(a.pipeline_runs);
    for _ in 0..a.pipeline_runs {
        let t = Instant::now();
        let im = match &a.image {
            Some(p) => load_image(p, 3)?,
            None => image.clone(),
        };
        det.detect(std::slice::from_ref(&im), opts)?;
        pipe.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(pipe)
}

/// The one-line summary of a bench run (and the per-layer table when measured).
fn print_report(report: &BenchReport) {
    if let Some(rows) = &report.layers {
        print_layer_table(rows);
    }
    let pipeline_text = match &report.pipeline {
        Some(p) => format!(
            "pipeline (decode+preprocess+forward+postprocess, batch 1) median {:.1} ms",
            p.median_ms
        ),
        None => "pipeline not timed (--pipeline-runs 0)".to_string(),
    };
    let rss_text = report
        .peak_rss_mib
        .map_or("peak RSS unknown".to_string(), |r| {
            format!("peak RSS {r:.0} MiB")
        });
    println!(
        "{} {}x{} batch {} on {}: forward median {:.1} ms (p10 {:.1}, p90 {:.1}), {:.1} images/s, {:.1} GFLOP/s ({:.3} BFLOPs/image); \
         {pipeline_text}; {rss_text}; CPU kernels: {}",
        report.cfg,
        report.net_w,
        report.net_h,
        report.batch,
        report.device,
        report.forward.median_ms,
        report.forward.p10_ms,
        report.forward.p90_ms,
        report.images_per_s,
        report.gflops_per_s,
        report.bflops_per_image,
        report.isa,
    );
}

pub fn run(a: BenchArgs) -> Result<()> {
    let (det, cfg_path) = load_detector(&a)?;
    let opts = DetectOptions {
        thresh: a.thresh,
        ..DetectOptions::default()
    };
    let image = match &a.image {
        Some(p) => load_image(p, 3)?,
        None => Image::filled(640, 480, 3, 0.5),
    };
    let batch = a.batch.max(1);
    let input = det.preprocess(&image, &opts);
    let inputs = vec![input; batch];
    let fwd = time_forward(&det, &inputs, &a)?;
    let layers = if a.layers {
        Some(layer_table(&det, &inputs, a.runs, a.warmup)?)
    } else {
        None
    };
    let forward = stats(fwd);
    // Printed before the pipeline runs, so a slow post-processing cannot lose it.
    eprintln!(
        "forward: median {:.1} ms (p10 {:.1}, p90 {:.1}) at batch {batch}",
        forward.median_ms, forward.p10_ms, forward.p90_ms
    );
    let pipe = time_pipeline(&det, &image, &opts, &a)?;
    let pipeline = (!pipe.is_empty()).then(|| stats(pipe));
    let cfg = det.cfg();
    let bflops = cfg.total_bflops();
    let report = BenchReport {
        cfg: cfg_path,
        device: a.device.clone(),
        net_w: cfg.net.width,
        net_h: cfg.net.height,
        batch,
        runs: a.runs,
        bflops_per_image: bflops,
        images_per_s: batch as f64 / (forward.median_ms / 1000.0),
        gflops_per_s: bflops * batch as f64 / (forward.median_ms / 1000.0),
        forward,
        pipeline,
        peak_rss_mib: candle_darknet::util::peak_rss_mib(),
        threads: candle_core::utils::get_num_threads(),
        isa: if a.cpu.no_cpu_kernels {
            "off"
        } else {
            candle_darknet::cpu::isa().name()
        },
        layers,
    };
    print_report(&report);
    if let Some(j) = &a.json {
        candle_darknet::util::write_atomic(j, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
