//! `candle-darknet eval`: scores detections with Darknet's mAP and pycocotools' COCO metrics.
//!
//! `eval <model | cfg weights> --data <coco json | darknet .data> [--images DIR]` runs the model over the dataset;
//! `eval --results <coco results json> --gt <instances json>` scores existing detections without a model.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_darknet::eval::{self, coco, MapParams};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A model name, or a Darknet .cfg (then its weights as the next argument).
    pub model: Option<String>,
    /// Weights (.weights or .safetensors) when the first argument is a cfg.
    pub weights: Option<PathBuf>,
    /// Dataset: COCO instances json or Darknet .data file (its valid= list).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Image folder for a COCO json.
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[command(flatten)]
    pub run: super::run_args::RunArgs,
    /// COCO results json to score (`[{"image_id","category_id","bbox":[x,y,w,h],"score"}]`).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// COCO instances json (ground truth).
    #[arg(long)]
    pub gt: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write precision/recall PNGs into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Write the scored detections back in COCO results format.
    #[arg(long)]
    pub save_results: Option<PathBuf>,
    /// Darknet `-iou_thresh`.
    #[arg(long, default_value_t = 0.5, value_parser = super::bounds::unit)]
    pub iou_thresh: f32,
    /// Darknet `-points`: 0 = area under curve (VOC2010+), 11 = VOC2007, 101 = COCO style.
    #[arg(long, default_value_t = 0, value_parser = super::bounds::points)]
    pub points: u32,
    /// Darknet `-thresh`: confidence for TP/FP/precision/recall/F1/average IoU.
    #[arg(long, default_value_t = 0.25, value_parser = super::bounds::unit)]
    pub thresh: f32,
    /// Stop with an error at an image that cannot be decoded (default: skip it, leaving it and its
    /// ground truth out of the metrics, and report it).
    #[arg(long)]
    pub strict: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let params = MapParams {
        iou_thresh: args.iou_thresh,
        points: args.points,
        thresh_calc_avg_iou: args.thresh,
        ..MapParams::default()
    };
    if let Some(model) = &args.model {
        return run_model(model, &args, &params);
    }
    let (Some(results), Some(gt)) = (&args.results, &args.gt) else {
        bail!("eval needs a model and --data <dataset>, or --results <coco results json> and --gt <coco instances json>");
    };
    let gt_data = coco::CocoGt::read(gt)?;
    let dets = coco::read_results(results)?;
    let outcome = eval::evaluate_coco(&gt_data, &dets, &params)?;
    print!("{}", outcome.report.to_text());
    if let Some(p) = &args.json {
        outcome.report.write_json(p)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.save_results {
        coco::write_results(p, &dets)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(dir) = &args.plots {
        let files = eval::plot::write_pr_plots(dir, &outcome)?;
        eprintln!("wrote {} plots into {}", files.len(), dir.display());
    }
    Ok(())
}

/// `eval <model> --data ...`: run the model over the dataset, then both metric sets.
fn run_model(model: &str, args: &EvalArgs, params: &MapParams) -> Result<()> {
    let Some(data) = &args.data else {
        bail!("eval with a model needs --data <coco instances json | darknet .data>");
    };
    let (m, _) = super::model_arg::resolve(model, args.weights.iter().cloned().collect())?;
    let device = args.run.device()?;
    let load = args.run.load_options();
    let det =
        candle_darknet::inference::Detector::load_with(&m.cfg, &m.weights, None, &device, &load)?;
    let mut ds = eval::dataset::Dataset::open(data, args.images.as_deref(), Some(&det.names))?;
    if let Some(first) = ds.missing_labels.first() {
        eprintln!(
            "warning: {} label files not found (those images have no objects), e.g. {}",
            ds.missing_labels.len(),
            first.display()
        );
    }
    // Darknet's `valid` keeps boxes above .001; its `map` filters at .005 itself.
    let opts = args.run.detect_options(0.001);
    let (dets, timing, skipped) = eval::model::detect_dataset_skipping(
        &det,
        &mut ds,
        &opts,
        args.run.batch,
        true,
        args.strict,
    )?;
    if let Some((path, reason)) = skipped.first() {
        eprintln!(
            "warning: skipped {} images (left out of the metrics): first: {}: {reason}",
            skipped.len(),
            path.display()
        );
    }
    let outcome = eval::evaluate(&ds, &dets, params)?;
    print!("{}", outcome.report.to_text());
    println!(
        "{} images in {:.1} s: {:.2} images/s, {:.0}% of the time outside the network",
        timing.images,
        timing.total_s,
        timing.images_per_s(),
        100.0 * timing.outside_network()
    );
    if let Some(p) = &args.json {
        outcome.report.write_json(p)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &args.save_results {
        coco::write_results(p, &eval::to_coco_results(&ds, &dets)?)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(dir) = &args.plots {
        let files = eval::plot::write_pr_plots(dir, &outcome)?;
        eprintln!("wrote {} plots into {}", files.len(), dir.display());
    }
    Ok(())
}
