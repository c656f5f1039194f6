//! The per-image loop of `validate_detector_map` (src/detector.c): each detection's truth (`truth_index`), the
//! "difficult" drop, the thresholded TP/FP counts, and the global rank walk that marks true positives.

use super::{box_iou, BoxProb, MapDet, MapImage, MapParams};

/// The thresholded counts of `validate_detector_map` (`prob > thresh_calc_avg_iou`): overall and per class.
pub(super) struct ThreshCounts {
    pub(super) avg_iou: f64,
    pub(super) tp: u64,
    pub(super) fp: u64,
    pub(super) avg_iou_per_class: Vec<f64>,
    pub(super) tp_per_class: Vec<u64>,
    pub(super) fp_per_class: Vec<u64>,
}

/// Everything the per-image loop gathers: the kept detections (unsorted, input order) and the truth counts.
pub(super) struct Matched {
    pub(super) detections: Vec<BoxProb>,
    pub(super) truth_classes_count: Vec<u64>,
    pub(super) unique_truth_count: usize,
    pub(super) thresh: ThreshCounts,
}

/// `truth_index` and `max_iou` of one detection: the truth of its class with the largest IoU `> iou_thresh`
/// (strict), as an index among all truths of all images (`unique_truth_count + j`).
fn best_truth(
    d: &MapDet,
    im: &MapImage,
    first_truth: usize,
    iou_thresh: f32,
) -> (Option<usize>, f32) {
    let mut truth_index: Option<usize> = None;
    let mut max_iou = 0.0f32;
    for (j, t) in im.truths.iter().enumerate() {
        let iou = box_iou(d.bbox, t.bbox);
        if iou > iou_thresh && d.class == t.class && iou > max_iou {
            max_iou = iou;
            truth_index = Some(first_truth + j);
        }
    }
    (truth_index, max_iou)
}

/// Does the detection overlap a *difficult* truth of its class by `> iou_thresh`?
fn overlaps_difficult(d: &MapDet, im: &MapImage, iou_thresh: f32) -> bool {
    im.difficult
        .iter()
        .any(|t| box_iou(d.bbox, t.bbox) > iou_thresh && d.class == t.class)
}

impl ThreshCounts {
    fn new(classes: usize) -> Self {
        ThreshCounts {
            avg_iou: 0.0,
            tp: 0,
            fp: 0,
            avg_iou_per_class: vec![0.0; classes],
            tp_per_class: vec![0; classes],
            fp_per_class: vec![0; classes],
        }
    }

    /// Counts one detection above `thresh_calc_avg_iou`: TP when it has a truth that no earlier stored
    /// detection of the image has (`found`), else FP.
    fn count(&mut self, class: usize, truth_index: Option<usize>, max_iou: f32, found: bool) {
        if truth_index.is_some() && !found {
            self.avg_iou += max_iou as f64;
            self.tp += 1;
            self.avg_iou_per_class[class] += max_iou as f64;
            self.tp_per_class[class] += 1;
        } else {
            self.fp += 1;
            self.fp_per_class[class] += 1;
        }
    }
}

/// The per-image loop: matches every detection above `thresh`, drops the "difficult" ones, counts the
/// thresholded TP/FP and the truths per class.
pub(super) fn match_detections(images: &[MapImage], classes: usize, params: &MapParams) -> Matched {
    let mut detections: Vec<BoxProb> = Vec::new();
    let mut truth_classes_count = vec![0u64; classes];
    let mut unique_truth_count = 0usize;
    let mut thresh = ThreshCounts::new(classes);

    for im in images {
        for t in &im.truths {
            truth_classes_count[t.class] += 1;
        }
        let checkpoint = detections.len();
        for d in im.dets.iter().filter(|d| d.prob > params.thresh) {
            let (truth_index, max_iou) = best_truth(d, im, unique_truth_count, params.iou_thresh);
            let difficult = truth_index.is_none() && overlaps_difficult(d, im, params.iou_thresh);
            if !difficult {
                detections.push(BoxProb {
                    p: d.prob,
                    class_id: d.class,
                    truth: truth_index,
                });
            }
            if d.prob > params.thresh_calc_avg_iou {
                // The C scans the image's stored detections except the last stored one (the current one, or,
                // when the current one was dropped as difficult, the previous one: it is FP then anyway).
                let stored_before = if difficult {
                    detections.len()
                } else {
                    detections.len() - 1
                };
                let found = truth_index.is_some()
                    && detections[checkpoint..stored_before.max(checkpoint)]
                        .iter()
                        .any(|p| p.truth == truth_index);
                thresh.count(d.class, truth_index, max_iou, found);
            }
        }
        unique_truth_count += im.truths.len();
    }
    Matched {
        detections,
        truth_classes_count,
        unique_truth_count,
        thresh,
    }
}

/// The global rank walk over the sorted detections: a detection whose truth is not yet taken is TP (and takes
/// it), otherwise FP.
pub(super) fn rank_true_positives(detections: &[BoxProb], unique_truth_count: usize) -> Vec<bool> {
    let mut truth_taken = vec![false; unique_truth_count];
    let mut is_tp = vec![false; detections.len()];
    for (rank, d) in detections.iter().enumerate() {
        if let Some(t) = d.truth {
            if !truth_taken[t] {
                truth_taken[t] = true;
                is_tp[rank] = true;
            }
        }
    }
    is_tp
}
