//! The periodic mAP of a training run: Darknet's `validate_detector_map` (src/detector.c) on the `valid=` list,
//! through the evaluation module.

use std::path::Path;

use anyhow::Result;
use candle_core::Device;

use crate::cfg::NetworkConfig;
use crate::weights::NetWeights;

/// mAP@0.5 (Darknet's `validate_detector_map`: thresh .005, NMS .45, area under the curve) of `weights` on
/// the `valid=` set of `data`.
pub fn evaluate_map(
    cfg: &NetworkConfig,
    weights: &NetWeights,
    data: &Path,
    device: &Device,
) -> Result<f64> {
    use crate::eval::{Dataset, Det, ImageDetections, MapParams};
    use crate::inference::{DetectOptions, Detector};
    let ds = Dataset::from_darknet_data(data)?;
    let det = Detector::from_parts(cfg.clone(), weights, None, device)?;
    let opts = DetectOptions {
        thresh: 0.005,
        nms: 0.45,
        letterbox: false,
    };
    let mut all = Vec::with_capacity(ds.images.len());
    for (k, im) in ds.images.iter().enumerate() {
        let img = crate::image::load::load_image(&im.path, 3)?;
        let dets = det.detect(std::slice::from_ref(&img), &opts)?;
        let mut out = Vec::new();
        for d in &dets[0] {
            // Untrained layers (rolling variance 0, as Darknet initialises it) can give infinite boxes; they
            // cannot match anything and the evaluator rejects them, so they are left out.
            let b = [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h];
            if b.iter().any(|v| !v.is_finite()) {
                continue;
            }
            for (class, &p) in d.prob.iter().enumerate() {
                if p > 0.0 && p.is_finite() {
                    out.push(Det {
                        class,
                        prob: p,
                        objectness: d.objectness,
                        bbox_rel_cxcywh: [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h],
                    });
                }
            }
        }
        all.push(ImageDetections {
            image_index: k,
            dets: out,
        });
    }
    let outcome = crate::eval::evaluate(&ds, &all, &MapParams::default())?;
    Ok(outcome.report.darknet.map)
}
