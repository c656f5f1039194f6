//! The detection part of `draw_detections_v3` (`src/image.c`): which detections are drawn, in which order and
//! with which label text; the pixels are drawn by [`crate::image::draw_labelled_box`].

use super::nms::glibc_qsort;
use super::output::print_order;
use super::Detection;
use crate::image::{class_color, draw_labelled_box, Image};

/// `draw_detections_v3`'s image output: the selected detections sorted by `compare_by_lefts` then by
/// `compare_by_probs` (ascending, so the most confident is drawn last), each drawn in its class colour with a
/// label `name: 0.73` plus `, other` for every other class above `thresh`.
pub fn draw_detections(
    im: &mut Image,
    dets: &[Detection],
    thresh: f32,
    names: &[String],
    classes: usize,
) {
    let mut order = print_order(dets, thresh, names);
    glibc_qsort(&mut order, |&(a, ca), &(b, cb)| {
        let delta = dets[a].prob[ca] - dets[b].prob[cb];
        if delta < 0.0 {
            -1
        } else if delta > 0.0 {
            1
        } else {
            0
        }
    });
    for (i, best) in order {
        let d = &dets[i];
        let mut text = format!("{}: {:.2}", name_of(names, best), d.prob[best]);
        for (j, &p) in d.prob.iter().enumerate() {
            if p > thresh && j != best {
                text.push_str(", ");
                text.push_str(&name_of(names, j));
            }
        }
        let b = d.bbox;
        draw_labelled_box(im, [b.x, b.y, b.w, b.h], class_color(best, classes), &text);
    }
}

fn name_of(names: &[String], j: usize) -> String {
    names.get(j).cloned().unwrap_or_else(|| format!("class{j}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::BoxF;
    use crate::image::{load_image, save_image};

    #[test]
    fn draws_box_and_label_and_saves() {
        let mut im = Image::filled(120, 100, 3, 0.2);
        let dets = vec![Detection {
            bbox: BoxF {
                x: 0.5,
                y: 0.6,
                w: 0.5,
                h: 0.4,
            },
            objectness: 0.9,
            prob: vec![0.8],
            classes: 1,
        }];
        draw_detections(&mut im, &dets, 0.25, &["dog".to_string()], 1);
        // Box edges: left = (0.5-0.25)*120 = 30, top = (0.6-0.2)*100 = 40; colour of class 0 is magenta.
        assert_eq!(
            (im.get(30, 70, 0), im.get(30, 70, 1), im.get(30, 70, 2)),
            (1.0, 0.0, 1.0)
        );
        assert_eq!(im.get(60, 70, 1), 0.2);
        // The 8-px label "dog: 0.80" sits above the top edge (rows 33..41, from column 30): background =
        // 0.7*rgb + 0.3*0.2; glyph pixels = 0.3*0.2. Row 0 of ':' (column 54) is background.
        let bg = im.get(54, 33, 0);
        assert!((bg - (0.7 + 0.3 * 0.2)).abs() < 1e-6, "{bg}");
        let glyph_pixels = (33..41)
            .flat_map(|y| (30..102).map(move |x| (x, y)))
            .filter(|&(x, y)| (im.get(x, y, 0) - 0.06).abs() < 1e-6)
            .count();
        assert!(glyph_pixels > 50, "{glyph_pixels}");
        let dir = tempfile::tempdir().unwrap();
        for name in ["out.jpg", "out.png"] {
            let p = dir.path().join(name);
            save_image(&im, &p).unwrap();
            let back = load_image(&p, 3).unwrap();
            assert_eq!((back.w, back.h), (120, 100));
        }
        assert!(save_image(&im, &dir.path().join("out.xyz")).is_err());
        assert!(!dir.path().join("out.xyz").exists());
    }
}
