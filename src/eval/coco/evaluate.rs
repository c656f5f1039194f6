//! `COCOeval.evaluate()`: `_prepare` (per image and category lists), `computeIoU` and `evaluateImg`.

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Result};

use super::accumulate::accumulate;
use super::argsort_desc_stable;
use super::summarize::{summarize, CocoEvalResult};
use super::{CocoAnn, CocoDet, CocoGt, CocoParams};

/// `maskApi.c` `bbIou` for one pair: crowd ground truth divides by the detection area only.
fn bb_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let ga = g[2] * g[3];
    let da = d[2] * d[3];
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let u = if crowd { da } else { da + ga - i };
    i / u
}

/// The result of `evaluateImg` for one (image, category, area range), at `maxDet` = the largest max_dets.
pub(super) struct EvalImg {
    /// Scores of the kept detections, best first.
    pub(super) dt_scores: Vec<f64>,
    /// `[t * D + d]`: `dtMatches != 0` (a gt id of 0 counts as unmatched, exactly like pycocotools).
    pub(super) dt_matched: Vec<bool>,
    /// `[t * D + d]`: `dtIgnore`.
    pub(super) dt_ignore: Vec<bool>,
    /// Number of ground truths with `gtIgnore == 0`.
    pub(super) n_not_ignored: usize,
}

/// Runs COCOeval (bbox) on `gt` and `dets`: `evaluate()`, `accumulate()`, `summarize()`.
///
/// Image ids are all of `gt.images` (sorted), category ids all of `gt.categories` (sorted), as
/// `COCOeval.__init__` sets them. Detections on an image id absent from `gt` are an error (as `loadRes`
/// asserts); detections of a category absent from `gt` are ignored (as `getAnnIds(catIds=...)` filters them).
/// pycocotools' arrays grow with images × categories (per-pair lists) and with categories × thresholds
/// (precision, recall, scores as f64): refused before allocation when they would not fit this process
/// (`crate::limits::memory_budget`), with the counts that make them large.
fn check_memory(ni: usize, nk: usize, params: &CocoParams) -> Result<()> {
    let (t, r) = (params.iou_thrs.len() as u128, params.rec_thrs.len() as u128);
    let per_pair = (2 * std::mem::size_of::<Vec<usize>>() + 4 * 48) as u128;
    let bytes = (ni as u128) * (nk as u128) * per_pair + t * (r + 1) * (nk as u128) * 4 * 3 * 8 * 2;
    if let Some(budget) = crate::limits::memory_budget(None) {
        if bytes > budget as u128 {
            bail!(
                "COCO evaluation of {ni} images x {nk} categories needs about {}, more than the {} this process may use (docs/limits.md)",
                crate::limits::human(bytes.min(u64::MAX as u128) as u64),
                crate::limits::human(budget)
            );
        }
    }
    Ok(())
}

pub fn evaluate(gt: &CocoGt, dets: &[CocoDet], params: &CocoParams) -> Result<CocoEvalResult> {
    let img_ids: Vec<i64> = gt
        .images
        .iter()
        .map(|i| i.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let cat_ids: Vec<i64> = gt
        .categories
        .iter()
        .map(|c| c.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let img_index: HashMap<i64, usize> =
        img_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let cat_index: HashMap<i64, usize> =
        cat_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    for (i, d) in dets.iter().enumerate() {
        if !img_index.contains_key(&d.image_id) {
            bail!(
                "results[{i}]: image_id {} is not an image of the ground truth",
                d.image_id
            );
        }
    }
    let (ni, nk) = (img_ids.len(), cat_ids.len());
    check_memory(ni, nk, params)?;
    // `_prepare`: per (image, category) lists in file order.
    let mut gts: Vec<Vec<usize>> = vec![Vec::new(); ni * nk];
    let mut dts: Vec<Vec<usize>> = vec![Vec::new(); ni * nk];
    // `getAnnIds` walks the sorted image ids, each image's annotations in file order, keeps the wanted
    // categories; `loadAnns` then looks each id up in a dict where a repeated annotation id holds the *last*
    // annotation with that id. Mirrored, so a json with repeated ids scores as in pycocotools.
    let last_with_id: HashMap<i64, usize> = gt
        .annotations
        .iter()
        .enumerate()
        .map(|(j, a)| (a.id, j))
        .collect();
    let mut by_image: Vec<Vec<usize>> = vec![Vec::new(); ni];
    for (j, a) in gt.annotations.iter().enumerate() {
        if let Some(&i) = img_index.get(&a.image_id) {
            by_image[i].push(j);
        }
    }
    for j in by_image.into_iter().flatten() {
        if !cat_index.contains_key(&gt.annotations[j].category_id) {
            continue;
        }
        let jj = last_with_id[&gt.annotations[j].id];
        let a = &gt.annotations[jj];
        if let (Some(&i), Some(&k)) = (img_index.get(&a.image_id), cat_index.get(&a.category_id)) {
            gts[k * ni + i].push(jj);
        }
    }
    for (j, d) in dets.iter().enumerate() {
        if let (Some(&i), Some(&k)) = (img_index.get(&d.image_id), cat_index.get(&d.category_id)) {
            dts[k * ni + i].push(j);
        }
    }
    let max_det = params.max_dets[2];
    // evalImgs in pycocotools' order: category, area range, image.
    let mut eval_imgs: Vec<Option<EvalImg>> = Vec::with_capacity(nk * 4 * ni);
    for k in 0..nk {
        let per_img: Vec<(Vec<usize>, Vec<Vec<f64>>)> = (0..ni)
            .map(|i| sorted_dts_and_ious(gt, dets, &gts[k * ni + i], &dts[k * ni + i], max_det))
            .collect();
        for a in 0..4 {
            for i in 0..ni {
                let (dt_sorted, ious) = &per_img[i];
                eval_imgs.push(evaluate_img(
                    gt,
                    dets,
                    &gts[k * ni + i],
                    dt_sorted,
                    ious,
                    params.area_rngs[a],
                    params,
                ));
            }
        }
    }
    let (precision, recall) = accumulate(&eval_imgs, params, ni, nk);
    let mut res = CocoEvalResult {
        params: params.clone(),
        img_ids,
        cat_ids,
        precision,
        recall,
        stats: [0.0; 12],
    };
    res.stats = summarize(&res);
    Ok(res)
}

/// `computeIoU`: detections sorted by score (stable) and cut to `max_det`; IoU matrix `[d][g]` with the
/// ground truth in file order.
fn sorted_dts_and_ious(
    gt: &CocoGt,
    dets: &[CocoDet],
    g_idx: &[usize],
    d_idx: &[usize],
    max_det: usize,
) -> (Vec<usize>, Vec<Vec<f64>>) {
    let scores: Vec<f64> = d_idx.iter().map(|&j| dets[j].score).collect();
    let mut order: Vec<usize> = argsort_desc_stable(&scores)
        .into_iter()
        .map(|o| d_idx[o])
        .collect();
    order.truncate(max_det);
    let ious = order
        .iter()
        .map(|&dj| {
            g_idx
                .iter()
                .map(|&gj| {
                    bb_iou(
                        &dets[dj].bbox,
                        &gt.annotations[gj].bbox,
                        gt.annotations[gj].iscrowd,
                    )
                })
                .collect()
        })
        .collect();
    (order, ious)
}

/// `evaluateImg` for one (image, category, area range).
fn evaluate_img(
    gt: &CocoGt,
    dets: &[CocoDet],
    g_idx: &[usize],
    dt_sorted: &[usize],
    ious: &[Vec<f64>],
    a_rng: [f64; 2],
    params: &CocoParams,
) -> Option<EvalImg> {
    if g_idx.is_empty() && dt_sorted.is_empty() {
        return None;
    }
    let anns: Vec<&CocoAnn> = g_idx.iter().map(|&j| &gt.annotations[j]).collect();
    // `ignore` is `iscrowd` (pycocotools overwrites any json `ignore`), widened by the area range.
    let ig0: Vec<bool> = anns
        .iter()
        .map(|g| g.iscrowd || g.area < a_rng[0] || g.area > a_rng[1])
        .collect();
    // Ignored ground truths last, stable (`np.argsort(_ignore, kind='mergesort')`).
    let mut gtind: Vec<usize> = (0..anns.len()).collect();
    gtind.sort_by_key(|&g| ig0[g]);
    let gt_ig: Vec<bool> = gtind.iter().map(|&g| ig0[g]).collect();
    let crowd: Vec<bool> = gtind.iter().map(|&g| anns[g].iscrowd).collect();
    let gt_ids: Vec<i64> = gtind.iter().map(|&g| anns[g].id).collect();
    let nt = params.iou_thrs.len();
    let (ng, nd) = (anns.len(), dt_sorted.len());
    let mut gt_matched = vec![vec![false; ng]; nt];
    let mut dt_match_id = vec![vec![0i64; nd]; nt];
    let mut dt_ignore = vec![vec![false; nd]; nt];
    if ng > 0 && nd > 0 {
        for (t, &thr) in params.iou_thrs.iter().enumerate() {
            for d in 0..nd {
                let mut iou = thr.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for g in 0..ng {
                    // A matched non-crowd gt is taken; a crowd gt can absorb any number of detections.
                    if gt_matched[t][g] && !crowd[g] {
                        continue;
                    }
                    // Once matched to a regular gt, the ignored ones (sorted last) cannot win.
                    if let Some(mm) = m {
                        if !gt_ig[mm] && gt_ig[g] {
                            break;
                        }
                    }
                    let v = ious[d][gtind[g]];
                    if v < iou {
                        continue;
                    }
                    iou = v;
                    m = Some(g);
                }
                if let Some(m) = m {
                    dt_ignore[t][d] = gt_ig[m];
                    dt_match_id[t][d] = gt_ids[m];
                    // pycocotools stores the detection id (1-based from loadRes), so "matched" is all that counts.
                    gt_matched[t][m] = true;
                }
            }
        }
    }
    // Unmatched detections outside the area range are ignored. `dtm == 0` is pycocotools' unmatched test, so a
    // gt whose id is 0 reads as unmatched there too; mirrored.
    let mut matched_flat = Vec::with_capacity(nt * nd);
    let mut ignore_flat = Vec::with_capacity(nt * nd);
    for t in 0..nt {
        for (d, &dj) in dt_sorted.iter().enumerate() {
            let area = dets[dj].bbox[2] * dets[dj].bbox[3];
            let outside = area < a_rng[0] || area > a_rng[1];
            let matched = dt_match_id[t][d] != 0;
            matched_flat.push(matched);
            ignore_flat.push(dt_ignore[t][d] || (!matched && outside));
        }
    }
    Some(EvalImg {
        dt_scores: dt_sorted.iter().map(|&j| dets[j].score).collect(),
        dt_matched: matched_flat,
        dt_ignore: ignore_flat,
        n_not_ignored: gt_ig.iter().filter(|&&x| !x).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crowd_iou_uses_detection_area() {
        let g = [0.0, 0.0, 10.0, 10.0];
        let d = [5.0, 0.0, 10.0, 10.0];
        assert_eq!(bb_iou(&d, &g, false), 50.0 / 150.0);
        assert_eq!(bb_iou(&d, &g, true), 50.0 / 100.0);
        assert_eq!(bb_iou(&[20.0, 0.0, 1.0, 1.0], &g, false), 0.0);
    }

    #[test]
    fn perfect_detection_gives_one_and_missing_areas_minus_one() {
        let gt = CocoGt::parse(
            r#"{"images":[{"id":1,"width":100,"height":100}],"categories":[{"id":3,"name":"a"}],
                "annotations":[{"id":1,"image_id":1,"category_id":3,"bbox":[10,10,50,50],"area":2500,"iscrowd":0}]}"#,
        )
        .unwrap();
        let dets = [CocoDet {
            image_id: 1,
            category_id: 3,
            bbox: [10.0, 10.0, 50.0, 50.0],
            score: 0.9,
        }];
        let r = evaluate(&gt, &dets, &CocoParams::default()).unwrap();
        // medium object only: small and large are undefined (-1). Precision is tp/(tp+fp+eps), so AP is 1-eps.
        let want = [
            1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0,
        ];
        for (g, w) in r.stats.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{:?}", r.stats);
        }
    }

    #[test]
    fn results_on_unknown_image_is_an_error() {
        let gt = CocoGt::parse(r#"{"images":[{"id":1}],"categories":[{"id":1}],"annotations":[]}"#)
            .unwrap();
        let dets = [CocoDet {
            image_id: 7,
            category_id: 1,
            bbox: [0.0, 0.0, 1.0, 1.0],
            score: 0.5,
        }];
        let e = evaluate(&gt, &dets, &CocoParams::default()).unwrap_err();
        assert!(format!("{e:#}").contains("image_id 7"), "{e:#}");
    }
}
