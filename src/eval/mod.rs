//! Detection metrics: Darknet's mAP (`validate_detector_map` in `src/detector.c`) and the COCO bbox metrics
//! (pycocotools' `COCOeval`), on one validation set, from the same detections.
//!
//! - [`dataset`]: validation sets from a COCO instances json or a Darknet `.data` file;
//! - [`coco`]: COCOeval (bbox), COCO ground-truth and results-format readers/writers;
//! - [`darknet_map`]: Darknet's mAP, TP/FP/FN, precision, recall, F1 and average IoU;
//! - [`report`]: the JSON report and the human-readable printout;
//! - [`plot`]: precision/recall curve PNGs.
//!
//! Entry points: [`evaluate`] (a [`Dataset`] and the model's detections, in the model's class indices) and
//! [`evaluate_coco`] / [`evaluate_coco_files`] (existing COCO results against a COCO instances json).
//! Everything is deterministic: every sort is stable and input order breaks ties (see the module docs).
//! See `docs/evaluation.md` for the formulas.

pub mod coco;
pub mod darknet_map;
pub mod dataset;
pub mod model;
pub mod plot;
pub mod report;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub use coco::{CocoDet, CocoEvalResult, CocoGt, CocoParams};
pub use darknet_map::{DarknetMapReport, MapDet, MapImage, MapParams, MapTruth, PrPoint};
pub use dataset::{Dataset, GtBox, ImageEntry};
pub use report::{CocoClassAp, CocoReport, EvalReport};

/// One detection of the model for one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Det {
    /// Class index in the model's (= the dataset's) class order.
    pub class: usize,
    /// Objectness × class probability (Darknet's `dets[i].prob[class]`).
    pub prob: f32,
    /// Objectness alone (informational; the metrics use `prob`).
    pub objectness: f32,
    /// Relative `(cx, cy, w, h)` on the original image (no letterbox), as `get_network_boxes(&net, 1, 1, ...)`.
    pub bbox_rel_cxcywh: [f32; 4],
}

/// The detections of one image of the dataset, in Darknet's order (box by box, class by class in a box).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDetections {
    /// Index into [`Dataset::images`].
    pub image_index: usize,
    pub dets: Vec<Det>,
}

/// Both metric sets plus the precision/recall curves for plots.
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    pub report: EvalReport,
    /// Darknet precision/recall per class, at that class's ranks.
    pub class_curves: Vec<Vec<PrPoint>>,
    /// Pooled over all classes (ranks of all detections).
    pub overall_curve: Vec<PrPoint>,
    /// Class names, in class order (for plot titles).
    pub classes: Vec<String>,
}

/// Pixel `[x, y, w, h]` of a relative `(cx, cy, w, h)` box, clamped to the image as `print_cocos` in
/// `src/detector.c` does before writing COCO results.
pub fn rel_to_coco_bbox(rel: [f32; 4], width: u32, height: u32) -> [f64; 4] {
    let (w, h) = (width as f64, height as f64);
    let [cx, cy, bw, bh] = rel.map(|v| v as f64);
    let xmin = ((cx - bw / 2.0) * w).max(0.0);
    let ymin = ((cy - bh / 2.0) * h).max(0.0);
    let xmax = ((cx + bw / 2.0) * w).min(w);
    let ymax = ((cy + bh / 2.0) * h).min(h);
    [xmin, ymin, xmax - xmin, ymax - ymin]
}

fn group_by_image(dataset: &Dataset, detections: &[ImageDetections]) -> Result<Vec<Vec<Det>>> {
    let mut per_image: Vec<Vec<Det>> = vec![Vec::new(); dataset.images.len()];
    for d in detections {
        let Some(slot) = per_image.get_mut(d.image_index) else {
            bail!(
                "detections for image index {} but the dataset has {} images",
                d.image_index,
                dataset.images.len()
            );
        };
        if let Some(bad) = d.dets.iter().find(|x| x.class >= dataset.classes.len()) {
            bail!(
                "image index {}: detection class {} out of range ({} classes)",
                d.image_index,
                bad.class,
                dataset.classes.len()
            );
        }
        slot.extend_from_slice(&d.dets);
    }
    Ok(per_image)
}

/// The model's detections as COCO results with the dataset's COCO ids (image ids, category ids); classes
/// without a COCO category id are left out. Boxes are clamped as `print_cocos` does.
pub fn to_coco_results(dataset: &Dataset, detections: &[ImageDetections]) -> Result<Vec<CocoDet>> {
    let per_image = group_by_image(dataset, detections)?;
    let mut out = Vec::new();
    for (im, dets) in dataset.images.iter().zip(&per_image) {
        for d in dets {
            if let Some(cat) = dataset.category_ids[d.class] {
                out.push(CocoDet {
                    image_id: im.id,
                    category_id: cat,
                    bbox: rel_to_coco_bbox(d.bbox_rel_cxcywh, im.width, im.height),
                    score: d.prob as f64,
                });
            }
        }
    }
    Ok(out)
}

/// Darknet's view of a dataset: crowd boxes count as difficult (neither TP nor FP), as Darknet has no crowd.
fn map_images(dataset: &Dataset, per_image: Vec<Vec<MapDet>>) -> Vec<MapImage> {
    dataset
        .images
        .iter()
        .zip(per_image)
        .map(|(im, dets)| {
            let (dif, truth): (Vec<&GtBox>, Vec<&GtBox>) =
                im.boxes.iter().partition(|b| b.difficult || b.iscrowd);
            let conv = |b: &&GtBox| MapTruth {
                class: b.class,
                bbox: b.bbox_rel,
            };
            MapImage {
                truths: truth.iter().map(conv).collect(),
                difficult: dif.iter().map(conv).collect(),
                dets,
            }
        })
        .collect()
}

/// The dataset as a COCO ground truth with category id = model class index: what [`evaluate`] scores against
/// (difficult boxes left out, crowd boxes kept as crowd). Written with `CocoGt::write`, it lets pycocotools
/// score the same detections (see [`coco_detections`]).
pub fn coco_gt(dataset: &Dataset) -> CocoGt {
    CocoGt {
        images: dataset
            .images
            .iter()
            .map(|im| coco::CocoImage {
                id: im.id,
                width: im.width,
                height: im.height,
                file_name: String::new(),
            })
            .collect(),
        categories: (0..dataset.classes.len())
            .map(|k| coco::CocoCategory {
                id: k as i64,
                name: dataset.classes[k].clone(),
            })
            .collect(),
        annotations: dataset
            .images
            .iter()
            .flat_map(|im| {
                im.boxes
                    .iter()
                    .filter(|b| !b.difficult)
                    .map(move |b| coco::CocoAnn {
                        id: b.id,
                        image_id: im.id,
                        category_id: b.class as i64,
                        bbox: b.bbox,
                        area: b.area,
                        iscrowd: b.iscrowd,
                    })
            })
            .collect(),
    }
}

/// Detections in COCO results form against [`coco_gt`] (category id = class index).
fn coco_detections(dataset: &Dataset, per_image: &[Vec<Det>]) -> Vec<CocoDet> {
    let mut coco_dets = Vec::new();
    for (im, dets) in dataset.images.iter().zip(per_image) {
        for d in dets {
            coco_dets.push(CocoDet {
                image_id: im.id,
                category_id: d.class as i64,
                bbox: rel_to_coco_bbox(d.bbox_rel_cxcywh, im.width, im.height),
                score: d.prob as f64,
            });
        }
    }
    coco_dets
}

/// [`coco_detections`] for per-image detections as the model produced them.
pub fn coco_detections_for(
    dataset: &Dataset,
    detections: &[ImageDetections],
) -> Result<Vec<CocoDet>> {
    Ok(coco_detections(
        dataset,
        &group_by_image(dataset, detections)?,
    ))
}

/// Both metric sets for the model's detections on `dataset`.
///
/// COCO side: ground truth = the dataset's non-difficult boxes (COCO has no "difficult"; crowd boxes stay
/// crowd), categories = the model classes (a class without ground truth is -1 there and left out of the means,
/// as pycocotools does for a category without annotations), every given detection with its clamped box.
/// Darknet side: [`darknet_map::validate_detector_map`] with `params`.
pub fn evaluate(
    dataset: &Dataset,
    detections: &[ImageDetections],
    params: &MapParams,
) -> Result<EvalOutcome> {
    let per_image = group_by_image(dataset, detections)?;
    // The dataset's own image ids: COCOeval walks images in sorted id order, which decides how tied scores of
    // different images meet.
    let mut seen = std::collections::HashSet::new();
    if let Some(im) = dataset.images.iter().find(|im| !seen.insert(im.id)) {
        bail!("dataset image id {} appears twice", im.id);
    }
    let gt = coco_gt(dataset);
    let coco_dets = coco_detections(dataset, &per_image);
    let coco_res = coco::evaluate(&gt, &coco_dets, &CocoParams::default())?;
    let map_dets = per_image
        .into_iter()
        .map(|v| {
            v.into_iter()
                .map(|d| MapDet {
                    class: d.class,
                    prob: d.prob,
                    bbox: d.bbox_rel_cxcywh,
                })
                .collect()
        })
        .collect();
    let outcome = darknet_map::validate_detector_map(
        &map_images(dataset, map_dets),
        &dataset.classes,
        params,
    )?;
    let ids: Vec<Option<i64>> = dataset.category_ids.clone();
    Ok(EvalOutcome {
        report: EvalReport {
            coco: CocoReport::from_result(&coco_res, &dataset.classes, &ids, coco_dets.len()),
            darknet: outcome.report,
        },
        class_curves: outcome.class_curves,
        overall_curve: outcome.overall_curve,
        classes: dataset.classes.clone(),
    })
}

/// Both metric sets for existing COCO results against a COCO ground truth. COCO side: exactly pycocotools
/// on these inputs. Darknet side: classes = the json's categories sorted by id, truths = non-crowd boxes
/// (crowd ones act as difficult), detections = the results whose category is known, in file order per image,
/// relative boxes from the image sizes in the json.
pub fn evaluate_coco(gt: &CocoGt, dets: &[CocoDet], params: &MapParams) -> Result<EvalOutcome> {
    let coco_res = coco::evaluate(gt, dets, &CocoParams::default())?;
    let dataset = Dataset::from_coco_gt(gt, None, None)?;
    let img_index: HashMap<i64, usize> = dataset
        .images
        .iter()
        .enumerate()
        .map(|(i, im)| (im.id, i))
        .collect();
    let cat_to_class: HashMap<i64, usize> = dataset
        .category_ids
        .iter()
        .enumerate()
        .filter_map(|(k, c)| c.map(|c| (c, k)))
        .collect();
    let mut per_image: Vec<Vec<MapDet>> = vec![Vec::new(); dataset.images.len()];
    for d in dets {
        let (Some(&i), Some(&class)) =
            (img_index.get(&d.image_id), cat_to_class.get(&d.category_id))
        else {
            continue;
        };
        let im = &dataset.images[i];
        if im.width == 0 || im.height == 0 {
            bail!("image id {}: width/height missing in the ground truth (needed for Darknet's relative boxes)", im.id);
        }
        per_image[i].push(MapDet {
            class,
            prob: d.score as f32,
            bbox: dataset::pixel_to_relative(d.bbox, im.width, im.height),
        });
    }
    let outcome = darknet_map::validate_detector_map(
        &map_images(&dataset, per_image),
        &dataset.classes,
        params,
    )?;
    Ok(EvalOutcome {
        report: EvalReport {
            coco: CocoReport::from_result(
                &coco_res,
                &dataset.classes,
                &dataset.category_ids,
                dets.len(),
            ),
            darknet: outcome.report,
        },
        class_curves: outcome.class_curves,
        overall_curve: outcome.overall_curve,
        classes: dataset.classes,
    })
}

/// [`evaluate_coco`] on files: a COCO instances json and a COCO results json.
pub fn evaluate_coco_files(
    gt_path: &Path,
    results_path: &Path,
    params: &MapParams,
) -> Result<EvalOutcome> {
    let gt = CocoGt::read(gt_path)?;
    let dets = coco::read_results(results_path)?;
    evaluate_coco(&gt, &dets, params).with_context(|| {
        format!(
            "evaluating {} against {}",
            results_path.display(),
            gt_path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crowd_is_difficult_for_darknet_and_crowd_for_coco() {
        // One crowd box and one normal box of class 0; one detection on each.
        let gt = CocoGt::parse(
            r#"{"images":[{"id":1,"width":100,"height":100}],"categories":[{"id":1,"name":"a"}],
                "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[0,0,20,20],"area":400,"iscrowd":1},
                               {"id":2,"image_id":1,"category_id":1,"bbox":[50,50,20,20],"area":400}]}"#,
        )
        .unwrap();
        let ds = Dataset::from_coco_gt(&gt, None, None).unwrap();
        let det = |cx, prob| Det {
            class: 0,
            prob,
            objectness: 1.0,
            bbox_rel_cxcywh: [cx, cx, 0.2, 0.2],
        };
        let dets = vec![ImageDetections {
            image_index: 0,
            dets: vec![det(0.1, 0.9), det(0.6, 0.8)],
        }];
        let out = evaluate(&ds, &dets, &MapParams::default()).unwrap();
        let d = &out.report.darknet;
        // Darknet: the crowd box is difficult → the 0.9 detection is dropped; the 0.8 one is TP; AP 1.
        assert_eq!(
            (d.detections_count, d.unique_truth_count, d.map),
            (1, 1, 1.0)
        );
        // COCO: the detection on the crowd is ignored, the other is TP → AP 1 (minus eps).
        assert!((out.report.coco.stats[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn clamps_like_print_cocos() {
        assert_eq!(
            rel_to_coco_bbox([0.5, 0.5, 0.5, 0.5], 100, 200),
            [25.0, 50.0, 50.0, 100.0]
        );
        assert_eq!(
            rel_to_coco_bbox([0.0, 1.0, 0.5, 0.5], 100, 200),
            [0.0, 150.0, 25.0, 50.0]
        );
    }

    #[test]
    fn dataset_path_scores_perfect_detections() {
        let gt = CocoGt::parse(
            r#"{"images":[{"id":1,"width":200,"height":100}],"categories":[{"id":1,"name":"a"},{"id":2,"name":"b"}],
                "annotations":[{"id":1,"image_id":1,"category_id":2,"bbox":[50,25,100,50],"area":5000}]}"#,
        )
        .unwrap();
        let ds = Dataset::from_coco_gt(&gt, None, None).unwrap();
        let dets = vec![ImageDetections {
            image_index: 0,
            dets: vec![Det {
                class: 1,
                prob: 0.9,
                objectness: 0.95,
                bbox_rel_cxcywh: [0.5, 0.5, 0.5, 0.5],
            }],
        }];
        let out = evaluate(&ds, &dets, &MapParams::default()).unwrap();
        assert!((out.report.coco.stats[0] - 1.0).abs() < 1e-12);
        // Darknet averages over both classes; class a has no truths → AP 0.
        assert_eq!(out.report.darknet.map, 0.5);
        let res = to_coco_results(&ds, &dets).unwrap();
        assert_eq!(res[0].category_id, 2);
        assert_eq!(res[0].bbox, [50.0, 25.0, 100.0, 50.0]);
        let bad = vec![ImageDetections {
            image_index: 3,
            dets: vec![],
        }];
        assert!(evaluate(&ds, &bad, &MapParams::default()).is_err());
    }
}
