//! pycocotools' `Params` for bbox evaluation (`setDetParams`).

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
}
