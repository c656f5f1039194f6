//! `COCOeval.accumulate()`: per-category precision/recall curves from the `evaluateImg` results.

use super::argsort_desc_stable;
use super::evaluate::EvalImg;
use super::CocoParams;

/// `accumulate()`: precision `[T][R][K][A][M]` and recall `[T][K][A][M]`, -1 where a category has no
/// non-ignored ground truth.
pub(super) fn accumulate(
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
