//! `candle-darknet anchors`: Darknet's `detector calc_anchors`, with k-means++, restarts, a seed, JSON and
//! a scatter plot. See docs/anchors.md.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_darknet::anchors::{self, BoxSource, Init, KmeansOptions};

#[derive(clap::Args)]
pub struct AnchorsArgs {
    /// Darknet .data file (its train= list is read), a list of image paths, or a COCO instances .json.
    #[arg(long, conflicts_with = "labels")]
    data: Option<PathBuf>,
    /// Folder of Darknet label files (class xc yc w h, relative), read recursively.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Number of clusters (anchors).
    #[arg(short = 'n', long = "num-clusters", default_value_t = 9, value_parser = super::bounds::clusters)]
    num_clusters: usize,
    /// Network size WIDTHxHEIGHT; box sizes are scaled to it.
    #[arg(long, default_value = "416x416")]
    size: String,
    /// RNG seed (default: from the clock, printed so the run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Independent k-means runs; the best average IoU is kept.
    #[arg(long, default_value_t = 1, value_parser = super::bounds::restarts)]
    restarts: usize,
    /// Initialisation: kmeans++ or darknet (random_centers: k random boxes).
    #[arg(long, default_value = "kmeans++")]
    init: Init,
    /// Write a scatter plot (PNG) of the boxes and anchors.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write {"anchors": [[w, h], ...], "avg_iou": ..., "counts": [...]} to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Benchmarking: cluster N synthetic boxes instead of reading labels.
    #[arg(long, hide = true, value_parser = super::bounds::synthetic)]
    synthetic: Option<usize>,
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--size '{s}': expected WIDTHxHEIGHT"))?;
    let w: u32 = w
        .trim()
        .parse()
        .with_context(|| format!("--size '{s}': bad width"))?;
    let h: u32 = h
        .trim()
        .parse()
        .with_context(|| format!("--size '{s}': bad height"))?;
    let max = candle_darknet::limits::MAX_SIDE as u32;
    if w == 0 || h == 0 || w > max || h > max {
        bail!("--size '{s}': width and height must be in 1..={max} (docs/limits.md)");
    }
    Ok((w, h))
}

pub fn run(args: AnchorsArgs) -> Result<()> {
    let (width, height) = parse_size(&args.size)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    println!(
        "\n num_of_clusters = {}, width = {width}, height = {height} ",
        args.num_clusters
    );
    let t_load = std::time::Instant::now();
    let (boxes, class_counts) = load_boxes(&args, width, height, seed)?;
    let load_s = t_load.elapsed().as_secs_f64();
    println!(" all loaded: {} boxes ({load_s:.3} s)", boxes.len());
    println!(
        " init = {}, restarts = {}, seed = {seed}",
        args.init,
        args.restarts.max(1)
    );
    let opts = KmeansOptions {
        k: args.num_clusters,
        init: args.init,
        restarts: args.restarts,
        seed,
    };
    let r = anchors::calc_anchors(&boxes, &opts)?;
    for (i, ((iou, s), it)) in r
        .restart_avg_ious
        .iter()
        .zip(&r.restart_seconds)
        .zip(&r.restart_iterations)
        .enumerate()
    {
        println!(" restart {i}: iterations = {it}, avg IoU = {iou:2.2} %, {s:.3} s");
    }
    if !class_counts.is_empty() {
        let c: Vec<String> = class_counts.iter().map(|c| c.to_string()).collect();
        println!("\ncounters_per_class = {}", c.join(", "));
    }
    println!("\n avg IoU = {:2.2} % ", r.avg_iou);
    println!("{}", anchors::format_anchors(&r.anchors, width));
    let c: Vec<String> = r.counts.iter().map(|c| c.to_string()).collect();
    println!("counts_per_anchor = {}", c.join(", "));
    if let Some(p) = &args.json {
        write_json(p, &r, &args, (width, height), boxes.len(), seed, load_s)?;
    }
    if let Some(p) = &args.plot {
        anchors::plot::write_plot(p, &boxes, &r.anchors, width, height)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}

/// The boxes of a COCO instances json (the evaluation's reader; crowd boxes included, as they are boxes).
fn coco_boxes(json: &std::path::Path) -> Result<BoxSource> {
    let ds = candle_darknet::eval::Dataset::from_coco_json(json, None, None)?;
    let boxes = ds
        .images
        .iter()
        .flat_map(|im| &im.boxes)
        .map(|b| (b.class, [b.bbox_rel[2], b.bbox_rel[3]]))
        .collect();
    Ok(BoxSource::Relative {
        boxes,
        images: ds.images.len(),
        origin: json.to_path_buf(),
    })
}

/// The box sizes to cluster and the per-class counts: synthetic boxes around yolov3's anchors, or the labels of
/// `--data` / `--labels` (warnings printed here).
fn load_boxes(
    args: &AnchorsArgs,
    width: u32,
    height: u32,
    seed: u64,
) -> Result<(Vec<[f32; 2]>, Vec<usize>)> {
    Ok(if let Some(n) = args.synthetic {
        // yolov3's published anchors as cluster centres.
        let centres = [
            [10.0, 13.0],
            [16.0, 30.0],
            [33.0, 23.0],
            [30.0, 61.0],
            [62.0, 45.0],
            [59.0, 119.0],
            [116.0, 90.0],
            [156.0, 198.0],
            [373.0, 326.0],
        ];
        (
            anchors::synthetic_boxes(
                n,
                &centres,
                0.5,
                [width as f32, height as f32],
                seed ^ 0x5eed,
            ),
            Vec::new(),
        )
    } else {
        let source = match (&args.data, &args.labels) {
            (Some(d), None) if d.extension().is_some_and(|e| e == "json") => coco_boxes(d)?,
            (Some(d), None) => BoxSource::Data(d.clone()),
            (None, Some(l)) => BoxSource::Labels(l.clone()),
            _ => bail!("give --data <file.data | list> or --labels <dir>"),
        };
        let s = anchors::load_box_sizes(&source, width, height)?;
        if !s.missing.is_empty() {
            eprintln!(
                "warning: {} label files not found, e.g. {}",
                s.missing.len(),
                s.missing[0].display()
            );
        }
        if s.oversized > 0 {
            eprintln!("warning: {} boxes wider or taller than the image (w or h > 1), kept as Darknet does", s.oversized);
        }
        println!(" read labels from {} files ", s.files);
        (s.boxes, s.class_counts)
    })
}

/// `--json`: the result with the run's settings.
fn write_json(
    p: &std::path::Path,
    r: &anchors::AnchorResult,
    args: &AnchorsArgs,
    (width, height): (u32, u32),
    nboxes: usize,
    seed: u64,
    load_s: f64,
) -> Result<()> {
    let j = serde_json::json!({
        "anchors": r.anchors,
        "avg_iou": r.avg_iou / 100.0,
        "counts": r.counts,
        "width": width,
        "height": height,
        "boxes": nboxes,
        "init": args.init.to_string(),
        "seed": seed,
        "restart": r.restart,
        "iterations": r.iterations,
        "restart_avg_ious": r.restart_avg_ious.iter().map(|x| x / 100.0).collect::<Vec<_>>(),
        "restart_iterations": r.restart_iterations,
        "restart_seconds": r.restart_seconds,
        "load_seconds": load_s,
    });
    candle_darknet::util::write_atomic(p, serde_json::to_string_pretty(&j)?.as_bytes())?;
    println!("wrote {}", p.display());
    Ok(())
}
