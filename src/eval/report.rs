//! The evaluation report: JSON layout `{"coco": {"stats": [12], ...}, "darknet": {"map", ...}}` (fractions,
//! not percent) and a printout with pycocotools' `summarize()` lines and Darknet's per-class table and
//! summary lines (`validate_detector_map`'s `printf`s, values in percent there as in Darknet).

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::coco::{CocoEvalResult, AREA_LABELS};
use super::darknet_map::DarknetMapReport;

/// Per-class COCO AP (area all, 100 detections); -1 where the class has no ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoClassAp {
    pub class_id: usize,
    pub name: String,
    pub category_id: Option<i64>,
    /// AP@[.5:.95].
    pub ap: f64,
    /// AP@.5.
    pub ap50: f64,
}

/// COCO metrics: the 12 `summarize()` statistics in pycocotools' order, and per-class APs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoReport {
    /// AP, AP50, AP75, AP small/medium/large, AR1, AR10, AR100, AR small/medium/large; -1 where undefined.
    pub stats: [f64; 12],
    pub stat_names: Vec<String>,
    pub per_class: Vec<CocoClassAp>,
    pub num_images: usize,
    pub num_detections: usize,
}

pub const STAT_NAMES: [&str; 12] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
];

impl CocoReport {
    /// Builds the report from a COCOeval result whose category `k` (sorted ids) is class `k` of `classes`.
    pub fn from_result(
        res: &CocoEvalResult,
        classes: &[String],
        category_ids: &[Option<i64>],
        num_detections: usize,
    ) -> CocoReport {
        let per_class = (0..res.cat_ids.len().min(classes.len()))
            .map(|k| CocoClassAp {
                class_id: k,
                name: classes[k].clone(),
                category_id: category_ids.get(k).copied().flatten(),
                ap: res.class_ap(k, None),
                ap50: res.class_ap(k, Some(0)),
            })
            .collect();
        CocoReport {
            stats: res.stats,
            stat_names: STAT_NAMES.iter().map(|s| s.to_string()).collect(),
            per_class,
            num_images: res.img_ids.len(),
            num_detections,
        }
    }

    /// pycocotools' `summarize()` lines.
    pub fn summary_lines(&self) -> Vec<String> {
        // (is AP, IoU label, area index, maxDets) for the 12 stats, as `_summarizeDets`.
        let spec: [(bool, &str, usize, usize); 12] = [
            (true, "0.50:0.95", 0, 100),
            (true, "0.50", 0, 100),
            (true, "0.75", 0, 100),
            (true, "0.50:0.95", 1, 100),
            (true, "0.50:0.95", 2, 100),
            (true, "0.50:0.95", 3, 100),
            (false, "0.50:0.95", 0, 1),
            (false, "0.50:0.95", 0, 10),
            (false, "0.50:0.95", 0, 100),
            (false, "0.50:0.95", 1, 100),
            (false, "0.50:0.95", 2, 100),
            (false, "0.50:0.95", 3, 100),
        ];
        spec.iter()
            .zip(self.stats.iter())
            .map(|(&(ap, iou, area, md), v)| {
                let (title, ty) = if ap {
                    ("Average Precision", "(AP)")
                } else {
                    ("Average Recall", "(AR)")
                };
                format!(
                    " {title:<18} {ty} @[ IoU={iou:<9} | area={:>6} | maxDets={md:>3} ] = {v:0.3}",
                    AREA_LABELS[area]
                )
            })
            .collect()
    }
}

/// Both metric sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub coco: CocoReport,
    pub darknet: DarknetMapReport,
}

fn pct(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{:.2}", x * 100.0),
        None => "nan".to_string(),
    }
}

fn frac(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("{x:.2}"),
        None => "nan".to_string(),
    }
}

impl EvalReport {
    /// Pretty JSON text.
    pub fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Writes the JSON report atomically.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut s = self.to_json()?;
        s.push('\n');
        crate::util::write_atomic(path, s.as_bytes())
    }

    /// The human-readable printout: COCO summary, then Darknet's table and summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        out.push_str("COCO bbox metrics (pycocotools COCOeval):\n");
        for l in self.coco.summary_lines() {
            out.push_str(&l);
            out.push('\n');
        }
        let d = &self.darknet;
        out.push_str(&format!(
            "\nDarknet mAP (validate_detector_map): detections_count = {}, unique_truth_count = {}\n",
            d.detections_count, d.unique_truth_count
        ));
        for c in &d.per_class {
            out.push_str(&format!(
                "class_id = {}, name = {}, ap = {:.2}%   \t (TP = {}, FP = {}) \n",
                c.class_id,
                c.name,
                c.ap * 100.0,
                c.tp,
                c.fp
            ));
        }
        out.push_str(&format!(
            "\n for conf_thresh = {:.2}, precision = {}, recall = {}, F1-score = {} \n",
            d.thresh_calc_avg_iou,
            frac(d.precision),
            frac(d.recall),
            frac(d.f1)
        ));
        out.push_str(&format!(
            " for conf_thresh = {:.2}, TP = {}, FP = {}, FN = {}, average IoU = {} % \n",
            d.thresh_calc_avg_iou,
            d.tp,
            d.fp,
            d.fn_,
            pct(d.average_iou)
        ));
        out.push_str(&format!(
            "\n IoU threshold = {:.0} %, ",
            d.iou_thresh * 100.0
        ));
        if d.points > 0 {
            out.push_str(&format!("used {} Recall-points \n", d.points));
        } else {
            out.push_str("used Area-Under-Curve for each unique Recall \n");
        }
        out.push_str(&format!(
            " mean average precision (mAP@{:.2}) = {:.6}, or {:.2} % \n",
            d.iou_thresh,
            d.map,
            d.map * 100.0
        ));
        out
    }
}
