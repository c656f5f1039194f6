//! COCO bounding-box evaluation: a re-implementation of pycocotools' `COCOeval` (`iouType='bbox'`, default
//! `Params`), plus the COCO ground-truth (instances json) and results-format readers/writers it needs.
//!
//! Mirrors `pycocotools/cocoeval.py` (`COCOeval.evaluate` → `computeIoU` + `evaluateImg`, `accumulate`,
//! `summarize`), `pycocotools/coco.py` (`COCO.loadRes`: detection area = w·h, ids 1..n, iscrowd 0) and
//! `maskApi.c` `bbIou` (crowd IoU = intersection / detection area). Every sort that pycocotools does with
//! `np.argsort(..., kind='mergesort')` is a stable sort here, so ties keep input order exactly as there.
//!
//! Deliberate differences (all outside what pycocotools accepts anyway):
//! - an empty results list is accepted (pycocotools' `loadRes` raises on `anns[0]`); every AP is then 0;
//! - a ground-truth annotation without `area` gets `w·h` (pycocotools raises `KeyError`), one without
//!   `iscrowd` gets 0;
//! - non-finite scores or boxes are rejected with an error naming the entry;
//! - a repeated image id or category id in the ground truth is an error (pycocotools keeps the last one).

mod accumulate;
mod evaluate;
mod json;
mod params;
mod summarize;

pub use evaluate::evaluate;
pub use json::{
    parse_results, read_results, write_results, CocoAnn, CocoCategory, CocoDet, CocoGt, CocoImage,
};
pub use params::{CocoParams, AREA_LABELS};
pub use summarize::CocoEvalResult;

/// Indices of `scores` sorted by descending score, ties in input order (`np.argsort(-s, kind='mergesort')`).
fn argsort_desc_stable(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        (-scores[a])
            .partial_cmp(&-scores[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    idx
}
