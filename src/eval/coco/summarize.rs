//! `COCOeval.summarize()` and the accumulated result it reads (`precision`, `recall`, `stats`).

use super::CocoParams;

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

/// `summarize()` → the 12 `stats`.
pub(super) fn summarize(res: &CocoEvalResult) -> [f64; 12] {
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
