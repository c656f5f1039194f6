//! Reporting detections as `darknet detector test` does: mirrors `get_actual_detections` and the text part
//! of `draw_detections_v3` (`src/image.c`), plus a JSON record per image with one entry per printed line.
//!
//! Darknet's text order: detections with some class probability above `thresh` (best class = the highest
//! such probability; names starting with `dont_show` are skipped), sorted with glibc `qsort` by their left
//! edge `x - w/2` (stable merge sort, see [`glibc_qsort`]); for each, its best class first, then every other
//! class above `thresh` in class order, all with the same box.

use serde::Serialize;

use super::nms::glibc_qsort;
use super::Detection;

/// `get_labels_custom(filename)`: one class name per line, read by [`crate::dataset`].
pub use crate::dataset::read_names;

/// `get_actual_detections`: `(index into dets, best class)` for every detection with a class probability
/// above `thresh`, in array order. A class whose name starts with `dont_show` is never chosen.
pub fn selected_detections(
    dets: &[Detection],
    thresh: f32,
    names: &[String],
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (i, d) in dets.iter().enumerate() {
        let mut best: Option<usize> = None;
        let mut best_prob = thresh;
        for (j, &p) in d.prob.iter().enumerate() {
            let show = !names.get(j).is_some_and(|n| n.starts_with("dont_show"));
            if p > best_prob && show {
                best = Some(j);
                best_prob = p;
            }
        }
        if let Some(b) = best {
            out.push((i, b));
        }
    }
    out
}

/// The order in which `draw_detections_v3` prints: [`selected_detections`] sorted by `compare_by_lefts`.
pub fn print_order(dets: &[Detection], thresh: f32, names: &[String]) -> Vec<(usize, usize)> {
    let mut sel = selected_detections(dets, thresh, names);
    glibc_qsort(&mut sel, |&(a, _), &(b, _)| {
        let (a, b) = (dets[a].bbox, dets[b].bbox);
        let delta = (a.x - a.w / 2.0) - (b.x - b.w / 2.0);
        if delta < 0.0 {
            -1
        } else if delta > 0.0 {
            1
        } else {
            0
        }
    });
    sel
}

/// A class name, or `class<N>` when the names file is shorter than the class count (Darknet would read past
/// its array).
fn class_name(names: &[String], j: usize) -> String {
    names.get(j).cloned().unwrap_or_else(|| format!("class{j}"))
}

/// The pixel box `-ext_output` prints: `round((x-w/2)*im_w)`, `round((y-h/2)*im_h)`, `round(w*im_w)`,
/// `round(h*im_h)`, each product in float and `round` (half away from zero) in double.
pub fn pixel_box(d: &Detection, im_w: usize, im_h: usize) -> [f64; 4] {
    let b = d.bbox;
    let (iw, ih) = (im_w as f32, im_h as f32);
    [
        f64::from((b.x - b.w / 2.0) * iw).round(),
        f64::from((b.y - b.h / 2.0) * ih).round(),
        f64::from(b.w * iw).round(),
        f64::from(b.h * ih).round(),
    ]
}

/// One printed line's content: `(detection index, class, probability)` in Darknet's print order.
fn printed_entries(dets: &[Detection], thresh: f32, names: &[String]) -> Vec<(usize, usize)> {
    let mut entries = Vec::new();
    for (i, best) in print_order(dets, thresh, names) {
        entries.push((i, best));
        for (j, &p) in dets[i].prob.iter().enumerate() {
            if p > thresh && j != best {
                entries.push((i, j));
            }
        }
    }
    entries
}

/// The lines `draw_detections_v3` prints (without the trailing newline), e.g.
/// `bus: 73%\t(left_x:    3   top_y:  176   width:  702   height:  606)` with `ext_output`, or `bus: 73%`.
/// Percentages are `%.0f` of the float `prob*100`.
pub fn format_detections_v3(
    dets: &[Detection],
    im_w: usize,
    im_h: usize,
    thresh: f32,
    names: &[String],
    ext_output: bool,
) -> Vec<String> {
    printed_entries(dets, thresh, names)
        .into_iter()
        .map(|(i, j)| {
            let d = &dets[i];
            let pct = f64::from(d.prob[j] * 100.0);
            let mut line = format!("{}: {:.0}%", class_name(names, j), pct);
            if ext_output {
                let [l, t, w, h] = pixel_box(d, im_w, im_h);
                line.push_str(&format!(
                    "\t(left_x: {l:4.0}   top_y: {t:4.0}   width: {w:4.0}   height: {h:4.0})"
                ));
            }
            line
        })
        .collect()
}

/// One JSON entry: a (box, class) pair that `draw_detections_v3` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JsonDetection {
    pub class_id: usize,
    pub class_name: String,
    /// `objectness * class probability`.
    pub prob: f32,
    pub objectness: f32,
    /// The `-ext_output` pixel box (may extend outside the image).
    pub left: i64,
    pub top: i64,
    pub width: i64,
    pub height: i64,
    /// The relative centre box.
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// The JSON record of one image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageDetections {
    pub image: String,
    pub width: usize,
    pub height: usize,
    pub detections: Vec<JsonDetection>,
}

/// The JSON record for `image`: one entry per printed line, in print order.
pub fn detections_json(
    image: &str,
    dets: &[Detection],
    im_w: usize,
    im_h: usize,
    thresh: f32,
    names: &[String],
) -> ImageDetections {
    let detections = printed_entries(dets, thresh, names)
        .into_iter()
        .map(|(i, j)| {
            let d = &dets[i];
            let [left, top, width, height] = pixel_box(d, im_w, im_h);
            JsonDetection {
                class_id: j,
                class_name: class_name(names, j),
                prob: d.prob[j],
                objectness: d.objectness,
                left: left as i64,
                top: top as i64,
                width: width as i64,
                height: height as i64,
                cx: d.bbox.x,
                cy: d.bbox.y,
                w: d.bbox.w,
                h: d.bbox.h,
            }
        })
        .collect();
    ImageDetections {
        image: image.to_string(),
        width: im_w,
        height: im_h,
        detections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::BoxF;

    fn det(x: f32, w: f32, prob: &[f32]) -> Detection {
        Detection {
            bbox: BoxF {
                x,
                y: 0.5,
                w,
                h: 0.2,
            },
            objectness: 0.9,
            prob: prob.to_vec(),
            classes: prob.len(),
        }
    }

    #[test]
    fn lines_are_sorted_by_left_edge_with_secondary_classes() {
        let names: Vec<String> = ["person", "bus", "dont_show_me"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let dets = vec![
            det(0.6, 0.2, &[0.0, 0.7321, 0.0]),
            det(0.3, 0.2, &[0.55, 0.3, 0.9]),
            det(0.9, 0.1, &[0.2, 0.0, 0.0]),
        ];
        let lines = format_detections_v3(&dets, 100, 50, 0.25, &names, true);
        let tail = "\t(left_x:   20   top_y:   20   width:   20   height:   10)";
        assert_eq!(
            lines,
            vec![
                format!("person: 55%{tail}"),
                format!("bus: 30%{tail}"),
                // A `dont_show` class is never the best class but is still printed as a secondary one.
                format!("dont_show_me: 90%{tail}"),
                "bus: 73%\t(left_x:   50   top_y:   20   width:   20   height:   10)".to_string(),
            ]
        );
        let short = format_detections_v3(&dets, 100, 50, 0.25, &names, false);
        assert_eq!(short[0], "person: 55%");
        let json = detections_json("x.jpg", &dets, 100, 50, 0.25, &names);
        assert_eq!(json.detections.len(), 4);
        assert_eq!(
            (
                json.detections[3].class_id,
                json.detections[3].left,
                json.detections[3].width
            ),
            (1, 50, 20)
        );
        assert_eq!(json.detections[0].class_name, "person");
    }

    #[test]
    fn names_are_read_like_fgetl() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.names");
        std::fs::write(&p, "person\r\nbicycle \n\ncar").unwrap();
        assert_eq!(
            read_names(&p).unwrap(),
            vec!["person", "bicycle ", "", "car"]
        );
        std::fs::write(&p, "a\nb\n").unwrap();
        assert_eq!(read_names(&p).unwrap(), vec!["a", "b"]);
        std::fs::write(&p, [b'a', 0xff, b'\n']).unwrap();
        assert!(read_names(&p)
            .unwrap_err()
            .to_string()
            .contains("byte offset 1"));
        assert!(read_names(&dir.path().join("missing.names")).is_err());
    }

    #[test]
    fn printf_style_rounding() {
        // `%.0f` rounds half to even on the exact binary value; `round` is half away from zero.
        assert_eq!(format!("{:.0}", 0.5f64), "0");
        assert_eq!(format!("{:.0}", 2.5f64), "2");
        assert_eq!(format!("{:.0}", 3.5f64), "4");
        assert_eq!(format!("{:4.0}", (-0.4f64).round()), "  -0");
        assert_eq!((2.5f64).round(), 3.0);
    }
}
