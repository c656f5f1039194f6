//! `candle-darknet eval`: scores detections with Darknet's mAP and pycocotools' COCO metrics.
//!
//! Now: `eval --results <coco results json> --gt <instances json>` scores existing detections without a model.
//! The model-running mode (`eval <cfg> <weights> --data ...`) is not wired yet: the library side is
//! `candle_darknet::eval::evaluate(&Dataset, &[ImageDetections], &MapParams)`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_darknet::eval::{self, coco, MapParams};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Model cfg (model-running mode: not yet wired).
    pub cfg: Option<PathBuf>,
    /// Model weights (model-running mode: not yet wired).
    pub weights: Option<PathBuf>,
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
    #[arg(long, default_value_t = 0.5)]
    pub iou_thresh: f32,
    /// Darknet `-points`: 0 = area under curve (VOC2010+), 11 = VOC2007, 101 = COCO style.
    #[arg(long, default_value_t = 0)]
    pub points: u32,
    /// Darknet `-thresh`: confidence for TP/FP/precision/recall/F1/average IoU.
    #[arg(long, default_value_t = 0.25)]
    pub thresh: f32,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.cfg.is_some() || args.weights.is_some() {
        bail!("eval <cfg> <weights>: running a model is not yet wired; use --results <json> --gt <json>");
    }
    let (Some(results), Some(gt)) = (&args.results, &args.gt) else {
        bail!("eval needs --results <coco results json> and --gt <coco instances json>");
    };
    let params = MapParams {
        iou_thresh: args.iou_thresh,
        points: args.points,
        thresh_calc_avg_iou: args.thresh,
        ..MapParams::default()
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
