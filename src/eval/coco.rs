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

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One image of a COCO instances file.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoImage {
    pub id: i64,
    pub width: u32,
    pub height: u32,
    pub file_name: String,
}

/// One category of a COCO instances file.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoCategory {
    pub id: i64,
    pub name: String,
}

/// One ground-truth annotation. `area` is the json's `area` field (the segmentation area in real COCO), *not*
/// `w·h`: the small/medium/large split of `COCOeval` uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoAnn {
    pub id: i64,
    pub image_id: i64,
    pub category_id: i64,
    /// `[x, y, w, h]` in pixels, top-left corner.
    pub bbox: [f64; 4],
    pub area: f64,
    pub iscrowd: bool,
}

/// The ground truth of a COCO evaluation (what pycocotools' `COCO(annotation_file)` holds for bbox eval).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoGt {
    pub images: Vec<CocoImage>,
    pub categories: Vec<CocoCategory>,
    pub annotations: Vec<CocoAnn>,
}

/// One detection in COCO results format (`[{"image_id", "category_id", "bbox": [x,y,w,h], "score"}]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CocoDet {
    pub image_id: i64,
    pub category_id: i64,
    pub bbox: [f64; 4],
    pub score: f64,
}

#[derive(Deserialize)]
struct RawGt {
    images: Vec<RawImage>,
    #[serde(default)]
    annotations: Vec<RawAnn>,
    #[serde(default)]
    categories: Vec<RawCategory>,
}

#[derive(Deserialize)]
struct RawImage {
    id: i64,
    #[serde(default)]
    width: Option<f64>,
    #[serde(default)]
    height: Option<f64>,
    #[serde(default)]
    file_name: Option<String>,
}

#[derive(Deserialize)]
struct RawCategory {
    id: i64,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawAnn {
    id: i64,
    image_id: i64,
    category_id: i64,
    bbox: [f64; 4],
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Option<serde_json::Value>,
}

fn check_finite(v: &[f64], what: impl Fn() -> String) -> Result<()> {
    if v.iter().any(|x| !x.is_finite()) {
        bail!("{}: non-finite number in {:?}", what(), v);
    }
    Ok(())
}

/// pycocotools tests `iscrowd` for truthiness (`int(o['iscrowd'])`, `gt['iscrowd']`).
fn truthy(v: &Option<serde_json::Value>) -> bool {
    match v {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().map(|x| x != 0.0).unwrap_or(false),
        Some(_) => true,
    }
}

impl CocoGt {
    /// Reads a COCO instances json (`images`, `annotations`, `categories`).
    pub fn read(path: &Path) -> Result<CocoGt> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in COCO instances file {}", path.display()))
    }

    /// Parses the text of a COCO instances json; errors carry serde's line/column.
    pub fn parse(text: &str) -> Result<CocoGt> {
        let raw: RawGt = serde_json::from_str(text).context("parsing COCO instances json")?;
        let mut images = Vec::with_capacity(raw.images.len());
        let mut seen = BTreeSet::new();
        for (i, im) in raw.images.into_iter().enumerate() {
            if !seen.insert(im.id) {
                bail!("images[{i}]: duplicate image id {}", im.id);
            }
            let dim = |v: Option<f64>, name: &str| -> Result<u32> {
                match v {
                    None => Ok(0),
                    Some(x) if x.is_finite() && x >= 0.0 && x <= u32::MAX as f64 => Ok(x as u32),
                    Some(x) => bail!("images[{i}] (id {}): bad {name} {x}", im.id),
                }
            };
            images.push(CocoImage {
                id: im.id,
                width: dim(im.width, "width")?,
                height: dim(im.height, "height")?,
                file_name: im.file_name.unwrap_or_default(),
            });
        }
        let mut cat_seen = BTreeSet::new();
        let mut categories = Vec::with_capacity(raw.categories.len());
        for (i, c) in raw.categories.into_iter().enumerate() {
            if !cat_seen.insert(c.id) {
                bail!("categories[{i}]: duplicate category id {}", c.id);
            }
            categories.push(CocoCategory {
                id: c.id,
                name: c.name.unwrap_or_else(|| c.id.to_string()),
            });
        }
        let mut annotations = Vec::with_capacity(raw.annotations.len());
        for (i, a) in raw.annotations.into_iter().enumerate() {
            check_finite(&a.bbox, || format!("annotations[{i}] (id {}) bbox", a.id))?;
            let area = a.area.unwrap_or(a.bbox[2] * a.bbox[3]);
            check_finite(&[area], || format!("annotations[{i}] (id {}) area", a.id))?;
            annotations.push(CocoAnn {
                id: a.id,
                image_id: a.image_id,
                category_id: a.category_id,
                bbox: a.bbox,
                area,
                iscrowd: truthy(&a.iscrowd),
            });
        }
        Ok(CocoGt {
            images,
            categories,
            annotations,
        })
    }

    /// Writes the ground truth as a COCO instances json (atomic write).
    pub fn write(&self, path: &Path) -> Result<()> {
        let images: Vec<_> = self
            .images
            .iter()
            .map(|i| serde_json::json!({"id": i.id, "width": i.width, "height": i.height, "file_name": i.file_name}))
            .collect();
        let categories: Vec<_> = self
            .categories
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "name": c.name}))
            .collect();
        let annotations: Vec<_> = self
            .annotations
            .iter()
            .map(|a| {
                serde_json::json!({"id": a.id, "image_id": a.image_id, "category_id": a.category_id,
                    "bbox": a.bbox, "area": a.area, "iscrowd": a.iscrowd as i32})
            })
            .collect();
        let v = serde_json::json!({"images": images, "categories": categories, "annotations": annotations});
        crate::util::write_atomic(path, serde_json::to_string(&v)?.as_bytes())
    }
}

/// Reads a COCO results json (a list of `{"image_id", "category_id", "bbox", "score"}`; extra keys ignored).
pub fn read_results(path: &Path) -> Result<Vec<CocoDet>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_results(&text).with_context(|| format!("in COCO results file {}", path.display()))
}

/// Parses COCO results json text.
pub fn parse_results(text: &str) -> Result<Vec<CocoDet>> {
    let dets: Vec<CocoDet> = serde_json::from_str(text).context("parsing COCO results json")?;
    for (i, d) in dets.iter().enumerate() {
        check_finite(&d.bbox, || format!("results[{i}] bbox"))?;
        check_finite(&[d.score], || format!("results[{i}] score"))?;
    }
    Ok(dets)
}

/// Writes detections in COCO results format (atomic write), one detection per line.
pub fn write_results(path: &Path, dets: &[CocoDet]) -> Result<()> {
    crate::util::write_atomic_with(path, |w| {
        use std::io::Write;
        w.write_all(b"[")?;
        for (i, d) in dets.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"\n")?;
            serde_json::to_writer(&mut *w, d)?;
        }
        w.write_all(b"\n]\n")?;
        Ok(())
    })
}

/// `Params.setDetParams()` of pycocotools: thresholds, recall points, area ranges, max detections.
#[derive(Debug, Clone)]
pub struct CocoParams {
    pub iou_thrs: Vec<f64>,
    pub rec_thrs: Vec<f64>,
    /// Sorted ascending (pycocotools sorts `maxDets`); `summarize` reads indices 0, 1, 2.
    pub max_dets: [usize; 3],
    /// `[lo, hi]` inclusive, in the order all / small / medium / large.
    pub area_rngs: [[f64; 2]; 4],
}

pub const AREA_LABELS: [&str; 4] = ["all", "small", "medium", "large"];

/// `np.linspace(start, stop, num)` as numpy computes it: `i·step + start`, the last value set to `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

impl Default for CocoParams {
    fn default() -> Self {
        // The counts are `int(np.round((0.95 - .5) / .05)) + 1` = 10 and 101, as in `setDetParams`.
        CocoParams {
            iou_thrs: linspace(0.5, 0.95, 10),
            rec_thrs: linspace(0.0, 1.0, 101),
            max_dets: [1, 10, 100],
            area_rngs: [[0.0, 1e10], [0.0, 1024.0], [1024.0, 9216.0], [9216.0, 1e10]],
        }
    }
}

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

/// The result of `evaluateImg` for one (image, category, area range), at `maxDet` = the largest max_dets.
struct EvalImg {
    /// Scores of the kept detections, best first.
    dt_scores: Vec<f64>,
    /// `[t * D + d]`: `dtMatches != 0` (a gt id of 0 counts as unmatched, exactly like pycocotools).
    dt_matched: Vec<bool>,
    /// `[t * D + d]`: `dtIgnore`.
    dt_ignore: Vec<bool>,
    /// Number of ground truths with `gtIgnore == 0`.
    n_not_ignored: usize,
}

/// Accumulated COCOeval output: `precision[T][R][K][A][M]`, `recall[T][K][A][M]` (flattened), and the
/// 12 `summarize()` statistics.
#[derive(Debug, Clone)]
pub struct CocoEvalResult {
    pub params: CocoParams,
    pub img_ids: Vec<i64>,
    pub cat_ids: Vec<i64>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub stats: [f64; 12],
}

impl CocoEvalResult {
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let p = &self.params;
        (p.iou_thrs.len(), p.rec_thrs.len(), self.cat_ids.len(), 4, 3)
    }

    /// `precision[t][r][k][a][m]`; -1 where the category has no non-ignored ground truth.
    pub fn precision_at(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        let (_, nr, nk, na, nm) = self.dims();
        self.precision[(((t * nr + r) * nk + k) * na + a) * nm + m]
    }

    /// `recall[t][k][a][m]`.
    pub fn recall_at(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        let (_, _, nk, na, nm) = self.dims();
        self.recall[((t * nk + k) * na + a) * nm + m]
    }

    /// AP@[.5:.95] (area all, 100 dets) of category index `k`, -1 when undefined; `iou` picks one threshold.
    pub fn class_ap(&self, k: usize, iou: Option<usize>) -> f64 {
        let (nt, nr, _, _, _) = self.dims();
        let ts: Vec<usize> = match iou {
            Some(t) => vec![t],
            None => (0..nt).collect(),
        };
        let vals: Vec<f64> = ts
            .iter()
            .flat_map(|&t| (0..nr).map(move |r| (t, r)))
            .map(|(t, r)| self.precision_at(t, r, k, 0, 2))
            .collect();
        mean_defined(&vals)
    }
}

/// `np.mean(s[s > -1])`, or -1 when nothing is defined.
fn mean_defined(vals: &[f64]) -> f64 {
    let kept: Vec<f64> = vals.iter().copied().filter(|&v| v > -1.0).collect();
    if kept.is_empty() {
        -1.0
    } else {
        kept.iter().sum::<f64>() / kept.len() as f64
    }
}

struct SummarySpec {
    ap: bool,
    iou: Option<usize>,
    area: usize,
    max_det: usize,
}

/// The 12 `_summarizeDets` entries, in pycocotools' order. `iou` indices 0 and 5 are the thresholds .5 and
/// .75 (`np.where(iouThr == p.iouThrs)` finds exactly those in the linspace).
fn summarize_spec(_p: &CocoParams) -> [SummarySpec; 12] {
    let s = |ap, iou, area, max_det| SummarySpec {
        ap,
        iou,
        area,
        max_det,
    };
    [
        s(true, None, 0, 2),
        s(true, Some(0), 0, 2),
        s(true, Some(5), 0, 2),
        s(true, None, 1, 2),
        s(true, None, 2, 2),
        s(true, None, 3, 2),
        s(false, None, 0, 0),
        s(false, None, 0, 1),
        s(false, None, 0, 2),
        s(false, None, 1, 2),
        s(false, None, 2, 2),
        s(false, None, 3, 2),
    ]
}

/// Runs COCOeval (bbox) on `gt` and `dets`: `evaluate()`, `accumulate()`, `summarize()`.
///
/// Image ids are all of `gt.images` (sorted), category ids all of `gt.categories` (sorted), as
/// `COCOeval.__init__` sets them. Detections on an image id absent from `gt` are an error (as `loadRes`
/// asserts); detections of a category absent from `gt` are ignored (as `getAnnIds(catIds=...)` filters them).
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

/// `accumulate()`: precision `[T][R][K][A][M]` and recall `[T][K][A][M]`, -1 where a category has no
/// non-ignored ground truth.
fn accumulate(
    eval_imgs: &[Option<EvalImg>],
    p: &CocoParams,
    ni: usize,
    nk: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (nt, nr, na, nm) = (p.iou_thrs.len(), p.rec_thrs.len(), 4, 3);
    let mut precision = vec![-1.0; nt * nr * nk * na * nm];
    let mut recall = vec![-1.0; nt * nk * na * nm];
    for k in 0..nk {
        for a in 0..na {
            for (m, &max_det) in p.max_dets.iter().enumerate() {
                let es: Vec<&EvalImg> = (0..ni)
                    .filter_map(|i| eval_imgs[(k * na + a) * ni + i].as_ref())
                    .collect();
                if es.is_empty() {
                    continue;
                }
                let mut scores = Vec::new();
                let mut src: Vec<(usize, usize)> = Vec::new();
                for (e_i, e) in es.iter().enumerate() {
                    for d in 0..e.dt_scores.len().min(max_det) {
                        scores.push(e.dt_scores[d]);
                        src.push((e_i, d));
                    }
                }
                let inds = argsort_desc_stable(&scores);
                let npig: usize = es.iter().map(|e| e.n_not_ignored).sum();
                if npig == 0 {
                    continue;
                }
                for t in 0..nt {
                    let (mut tp, mut fp) = (0.0f64, 0.0f64);
                    let nd = inds.len();
                    let mut rc = Vec::with_capacity(nd);
                    let mut pr = Vec::with_capacity(nd);
                    for &o in &inds {
                        let (e_i, d) = src[o];
                        let e = es[e_i];
                        let at = t * e.dt_scores.len() + d;
                        let (matched, ignored) = (e.dt_matched[at], e.dt_ignore[at]);
                        if !ignored {
                            if matched {
                                tp += 1.0;
                            } else {
                                fp += 1.0;
                            }
                        }
                        rc.push(tp / npig as f64);
                        pr.push(tp / (fp + tp + f64::EPSILON));
                    }
                    recall[((t * nk + k) * na + a) * nm + m] =
                        if nd > 0 { rc[nd - 1] } else { 0.0 };
                    // Precision envelope: make it non-increasing from the right.
                    for i in (1..nd).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    for (r, &thr) in p.rec_thrs.iter().enumerate() {
                        // `np.searchsorted(rc, recThrs, side='left')`; past the end the precision stays 0.
                        let pi = rc.partition_point(|&x| x < thr);
                        let q = if pi < nd { pr[pi] } else { 0.0 };
                        precision[(((t * nr + r) * nk + k) * na + a) * nm + m] = q;
                    }
                }
            }
        }
    }
    (precision, recall)
}

/// `summarize()` → the 12 `stats`.
fn summarize(res: &CocoEvalResult) -> [f64; 12] {
    let (nt, nr, nk, _, _) = res.dims();
    let mut stats = [0.0; 12];
    for (s, spec) in stats.iter_mut().zip(summarize_spec(&res.params).iter()) {
        let ts: Vec<usize> = match spec.iou {
            Some(t) => vec![t],
            None => (0..nt).collect(),
        };
        let mut vals = Vec::new();
        for &t in &ts {
            if spec.ap {
                for r in 0..nr {
                    for k in 0..nk {
                        vals.push(res.precision_at(t, r, k, spec.area, spec.max_det));
                    }
                }
            } else {
                for k in 0..nk {
                    vals.push(res.recall_at(t, k, spec.area, spec.max_det));
                }
            }
        }
        *s = mean_defined(&vals);
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_match_numpy_linspace() {
        // Values printed by numpy 2.x for `Params().iouThrs` (repr): note 0.8999999999999999.
        let p = CocoParams::default();
        let want = [
            0.5,
            0.55,
            0.6,
            0.65,
            0.7,
            0.75,
            0.8,
            0.85,
            0.8999999999999999,
            0.95,
        ];
        assert_eq!(p.iou_thrs, want.to_vec());
        assert_eq!(p.rec_thrs.len(), 101);
        for (i, &r) in p.rec_thrs.iter().enumerate().take(100) {
            assert_eq!(r, i as f64 * 0.01);
        }
        assert_eq!(p.rec_thrs[100], 1.0);
    }

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

    #[test]
    fn bad_json_error_names_line() {
        let e = CocoGt::parse("{\"images\": [\n{\"id\": \"x\"}]}").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }
}
