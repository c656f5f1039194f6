//! Differential tests of preprocessing and post-processing against Darknet's own dumps in
//! `shared/reference` (AlexeyAB/darknet 59596d7, CPU build with stb_image):
//! - `load_image` + `resize_image` against the exact network input tensors (`input.bin`),
//! - `get_network_boxes` + NMS against `detections.json` (`before_nms` / `after_nms`, with Darknet's order).

mod common;
use common::shared_dir;

use std::path::{Path, PathBuf};

use candle_darknet::detect::{self, Detection, NmsKind, YoloOutput};
use candle_darknet::image::{self, Image};
use serde_json::Value;

/// A reference directory under `shared/reference` (see `common::shared_dir`); missing is a test failure.
fn reference_dir(rel: &str) -> PathBuf {
    let p = shared_dir().join("reference").join(rel);
    assert!(
        p.exists(),
        "REFERENCE MISSING: {} (shared/reference is required for this test)",
        p.display()
    );
    p
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(bytes.len() % 4, 0, "{}: not a float32 file", path.display());
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Max |a-b| and the count of differing values.
fn diff_stats(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0.0f32, 0usize), |(m, n), (x, y)| {
        let d = (x - y).abs();
        (m.max(d), n + usize::from(x.to_bits() != y.to_bits()))
    })
}

fn assert_preprocess_exact(image_path: &Path, net_w: usize, net_h: usize, input_rel: &str) {
    assert!(
        image_path.exists(),
        "IMAGE MISSING: {} (run `make weights` for bus.jpg)",
        image_path.display()
    );
    let im = image::load_image(image_path, 3).unwrap();
    let sized = image::network_input(&im, net_w, net_h, false);
    let expect = read_f32(&reference_dir(input_rel));
    assert_eq!(expect.len(), 3 * net_w * net_h);
    let (max, n) = diff_stats(&sized.data, &expect);
    println!(
        "{}: {}x{} -> {net_w}x{net_h}: max |diff| = {max:e}, {n} of {} values differ",
        image_path.display(),
        im.w,
        im.h,
        expect.len()
    );
    assert_eq!(
        n, 0,
        "preprocessed tensor differs from Darknet's input.bin (max {max:e})"
    );
}

#[test]
fn bus_preprocessing_matches_darknet_input_bit_for_bit() {
    let bus = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/bus.jpg");
    assert_preprocess_exact(&bus, 416, 416, "yolov4-tiny-bus416/input.bin");
}

#[test]
fn dog_preprocessing_matches_darknet_input_bit_for_bit() {
    let dog = shared_dir().join("darknet/data/dog.jpg");
    assert_preprocess_exact(&dog, 128, 128, "mini-yolov4/infer_fused/input.bin");
}

#[test]
fn letterbox_of_dog_follows_the_formulas() {
    // dog.jpg 768x576 into 416x416: 416/768 < 416/576, so new_w = 416, new_h = 576*416/768 = 312,
    // pasted at ((416-416)/2, (416-312)/2) = (0, 52) on a 0.5 canvas.
    let im = image::load_image(&shared_dir().join("darknet/data/dog.jpg"), 3).unwrap();
    assert_eq!((im.w, im.h), (768, 576));
    let boxed = image::network_input(&im, 416, 416, true);
    let inner = image::resize_image(&im, 416, 312);
    for k in 0..3 {
        for y in 0..416 {
            for x in (0..416).step_by(7) {
                let expect = if (52..364).contains(&y) {
                    inner.get(x, y - 52, k)
                } else {
                    0.5
                };
                assert_eq!(boxed.get(x, y, k), expect, "x={x} y={y} k={k}");
            }
        }
    }
}

/// Decodes the yolo heads listed in `manifest.json`, runs `get_network_boxes` and NMS with the parameters
/// of `detections.json`, and compares both stages with Darknet's dump.
fn check_detections(dir: &str, expect_before: usize, expect_after: usize) {
    let manifest = read_json(&reference_dir(&format!("{dir}/manifest.json")));
    let dump = read_json(&reference_dir(&format!("{dir}/detections.json")));
    let (net_w, net_h) = (
        manifest["net_w"].as_u64().unwrap() as usize,
        manifest["net_h"].as_u64().unwrap() as usize,
    );
    let (im_w, im_h) = (
        dump["image_w"].as_u64().unwrap() as usize,
        dump["image_h"].as_u64().unwrap() as usize,
    );
    let thresh = dump["thresh"].as_f64().unwrap() as f32;
    let nms = dump["nms"].as_f64().unwrap() as f32;
    let kind = NmsKind::from_cfg(dump["nms_kind"].as_str().unwrap());
    let beta = dump["beta_nms"].as_f64().unwrap() as f32;
    let letter = dump["letterbox"].as_u64().unwrap() == 1;
    let classes = dump["classes"].as_u64().unwrap() as usize;

    struct Head {
        out: Vec<f32>,
        w: usize,
        h: usize,
        classes: usize,
        anchors: Vec<f32>,
        mask: Vec<usize>,
        new_coords: bool,
    }
    let heads: Vec<Head> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "yolo")
        .map(|l| Head {
            out: read_f32(&reference_dir(&format!(
                "{dir}/{}",
                l["file"].as_str().unwrap()
            ))),
            w: l["w"].as_u64().unwrap() as usize,
            h: l["h"].as_u64().unwrap() as usize,
            classes: l["classes"].as_u64().unwrap() as usize,
            anchors: l["anchors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
            mask: l["mask"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect(),
            new_coords: l["new_coords"].as_u64().unwrap() == 1,
        })
        .collect();
    let views: Vec<YoloOutput> = heads
        .iter()
        .map(|h| YoloOutput {
            output: &h.out,
            w: h.w,
            h: h.h,
            classes: h.classes,
            anchors: &h.anchors,
            mask: &h.mask,
            new_coords: h.new_coords,
        })
        .collect();

    let map = detect::BoxMapping::relative((im_w, im_h), (net_w, net_h), letter);
    let mut dets = detect::get_network_boxes(&views, &map, thresh).unwrap();
    assert_eq!(
        dets.len() as u64,
        dump["num_boxes_from_get_network_boxes"].as_u64().unwrap(),
        "{dir}: boxes from get_network_boxes"
    );
    let before = compare_stage(dir, "before_nms", &dets, &dump, thresh, im_w, im_h);
    assert_eq!(before, expect_before);

    detect::apply_nms(&mut dets, classes, nms, kind, beta);
    let after = compare_stage(dir, "after_nms", &dets, &dump, thresh, im_w, im_h);
    assert_eq!(after, expect_after);
}

/// Compares the detections that have a class probability above `thresh`, in array order, with the
/// `stage` list of the dump: same `det_index`, classes, probabilities, objectness, box and printed pixel
/// box. Returns the number compared.
fn compare_stage(
    dir: &str,
    stage: &str,
    dets: &[Detection],
    dump: &Value,
    thresh: f32,
    im_w: usize,
    im_h: usize,
) -> usize {
    let expect = dump[stage].as_array().unwrap();
    let ours: Vec<(usize, &Detection)> = dets
        .iter()
        .enumerate()
        .filter(|(_, d)| d.prob.iter().any(|&p| p > thresh))
        .collect();
    assert_eq!(
        ours.len(),
        expect.len(),
        "{dir} {stage}: number of detections"
    );
    let (mut max_box_rel, mut max_prob, mut max_obj) = (0.0f64, 0.0f64, 0.0f64);
    // Darknet's -Ofast build multiplies w,h by its approximate `1/ratiow` = 0.99999994 (RCPPS + Newton);
    // x,y must be bit-identical and w,h exactly that one rounding away from ours.
    let approx_recip_one = 1.0f32 - f32::EPSILON / 2.0;
    for ((idx, d), e) in ours.iter().zip(expect) {
        let ctx = format!("{dir} {stage} det_index {}", e["det_index"]);
        assert_eq!(
            *idx as u64,
            e["det_index"].as_u64().unwrap(),
            "{ctx}: order differs"
        );
        let eb: Vec<f64> = e["bbox_rel_cxcywh"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (ours, theirs) in [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h].iter().zip(&eb) {
            let rel = (f64::from(*ours) - theirs).abs() / theirs.abs().max(1e-6);
            max_box_rel = max_box_rel.max(rel);
            assert!(rel <= 1e-4, "{ctx}: box {:?} vs {eb:?}", d.bbox);
        }
        let eb32: Vec<f32> = eb.iter().map(|&v| v as f32).collect();
        assert_eq!(
            [d.bbox.x, d.bbox.y],
            [eb32[0], eb32[1]],
            "{ctx}: x,y not bit-identical"
        );
        assert_eq!(
            [d.bbox.w * approx_recip_one, d.bbox.h * approx_recip_one],
            [eb32[2], eb32[3]],
            "{ctx}: w,h not explained"
        );
        let obj_diff = (f64::from(d.objectness) - e["objectness"].as_f64().unwrap()).abs();
        max_obj = max_obj.max(obj_diff);
        assert_eq!(
            d.objectness,
            e["objectness"].as_f64().unwrap() as f32,
            "{ctx}: objectness"
        );
        let probs = e["probs"].as_object().unwrap();
        let our_classes: Vec<usize> = d
            .prob
            .iter()
            .enumerate()
            .filter(|(_, &p)| p > thresh)
            .map(|(j, _)| j)
            .collect();
        let their_classes: Vec<usize> =
            probs.keys().map(|k| k.parse().unwrap()).collect::<Vec<_>>();
        let mut their_sorted = their_classes.clone();
        their_sorted.sort();
        assert_eq!(our_classes, their_sorted, "{ctx}: classes above thresh");
        for (k, v) in probs {
            let j: usize = k.parse().unwrap();
            let diff = (f64::from(d.prob[j]) - v.as_f64().unwrap()).abs();
            max_prob = max_prob.max(diff);
            assert!(diff <= 1e-4, "{ctx}: prob of class {j}");
            assert_eq!(
                d.prob[j],
                v.as_f64().unwrap() as f32,
                "{ctx}: prob of class {j} not bit-identical"
            );
        }
        let px = detect::output::pixel_box(d, im_w, im_h);
        let epx = [
            e["left_x"].as_f64().unwrap(),
            e["top_y"].as_f64().unwrap(),
            e["width"].as_f64().unwrap(),
            e["height"].as_f64().unwrap(),
        ];
        assert_eq!(px, epx, "{ctx}: -ext_output pixel box");
    }
    println!(
        "{dir} {stage}: {} detections, same order; max relative box diff {max_box_rel:e}, max prob diff {max_prob:e}, max objectness diff {max_obj:e}",
        ours.len()
    );
    ours.len()
}

#[test]
fn yolov4_tiny_bus_detections_match_darknet() {
    check_detections("yolov4-tiny-bus416", 14, 5);
}

#[test]
fn mini_yolov4_detections_match_darknet_including_order() {
    check_detections("mini-yolov4/infer_fused", 737, 730);
}

#[test]
fn bus_report_lines_and_json() {
    let dir = "yolov4-tiny-bus416";
    let manifest = read_json(&reference_dir(&format!("{dir}/manifest.json")));
    let names_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/coco.names");
    assert!(
        names_path.exists(),
        "MISSING {} (run `make weights`)",
        names_path.display()
    );
    let names = detect::read_names(&names_path).unwrap();
    assert_eq!(names.len(), 80);
    let layers: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "yolo")
        .collect();
    let outs: Vec<Vec<f32>> = layers
        .iter()
        .map(|l| {
            read_f32(&reference_dir(&format!(
                "{dir}/{}",
                l["file"].as_str().unwrap()
            )))
        })
        .collect();
    let anchors: Vec<f32> = layers[0]["anchors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let masks: Vec<Vec<usize>> = layers
        .iter()
        .map(|l| {
            l["mask"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect()
        })
        .collect();
    let views: Vec<YoloOutput> = layers
        .iter()
        .zip(&outs)
        .zip(&masks)
        .map(|((l, o), m)| YoloOutput {
            output: o,
            w: l["w"].as_u64().unwrap() as usize,
            h: l["h"].as_u64().unwrap() as usize,
            classes: 80,
            anchors: &anchors,
            mask: m,
            new_coords: false,
        })
        .collect();
    let mut dets = detect::get_network_boxes(
        &views,
        &detect::BoxMapping::relative((810, 1080), (416, 416), false),
        0.25,
    )
    .unwrap();
    detect::apply_nms(&mut dets, 80, 0.45, NmsKind::Greedy, 0.6);
    let lines = detect::format_detections_v3(&dets, 810, 1080, 0.25, &names, true);
    for l in &lines {
        println!("{l}");
    }
    // The bus (class 5, prob 0.7329, box left 3 top 176 702x606 in detections.json) is printed with its
    // secondary class truck (7, 0.422) right after it; lines are ordered by left edge.
    let bus = lines
        .iter()
        .position(|l| l.starts_with("bus: 73%"))
        .expect("bus line");
    assert_eq!(
        lines[bus],
        "bus: 73%\t(left_x:    3   top_y:  176   width:  702   height:  606)"
    );
    assert_eq!(
        lines[bus + 1],
        "truck: 42%\t(left_x:    3   top_y:  176   width:  702   height:  606)"
    );
    let json = detect::detections_json("bus.jpg", &dets, 810, 1080, 0.25, &names);
    assert_eq!(json.detections.len(), lines.len());
    let lefts: Vec<i64> = json.detections.iter().map(|d| d.left).collect();
    assert!(lefts.windows(2).all(|w| w[0] <= w[1]), "{lefts:?}");
    // Drawing the detections on the decoded image and saving it must work end to end.
    let mut im: Image = image::load_image(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/bus.jpg"),
        3,
    )
    .unwrap();
    candle_darknet::detect::draw_detections(&mut im, &dets, 0.25, &names, 80);
    let tmp = tempfile::tempdir().unwrap();
    image::save_image(&im, &tmp.path().join("predictions.jpg")).unwrap();
    assert!(
        std::fs::metadata(tmp.path().join("predictions.jpg"))
            .unwrap()
            .len()
            > 10_000
    );
}

/// Measures how far the `image` crate's JPEG decoder (zune-jpeg) is from the stb_image decoder we use (which
/// the two `input.bin` tests above prove identical to Darknet's), on Darknet's sample images. The documented
/// bound (docs/preprocessing.md) is at most 4 levels of 255 per sample; this test fails if that changes.
#[test]
fn image_crate_jpeg_decoder_differs_from_stb_by_at_most_4_levels() {
    let mut paths: Vec<PathBuf> = ["dog", "eagle", "giraffe", "horses", "person", "scream"]
        .iter()
        .map(|n| shared_dir().join(format!("darknet/data/{n}.jpg")))
        .collect();
    paths.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/bus.jpg"));
    paths.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/zidane.jpg"));
    let mut any_difference = false;
    for p in &paths {
        assert!(
            p.exists(),
            "SAMPLE MISSING: {} (run `make weights`)",
            p.display()
        );
        let ours = image::load_image(p, 3).unwrap();
        let theirs = ::image::open(p).unwrap().to_rgb8();
        assert_eq!((ours.w as u32, ours.h as u32), theirs.dimensions());
        let plane = ours.w * ours.h;
        let (mut max, mut n) = (0i32, 0usize);
        for (i, px) in theirs.pixels().enumerate() {
            for k in 0..3 {
                let a = (ours.data[k * plane + i] * 255.0).round() as i32;
                let d = (a - px.0[k] as i32).abs();
                max = max.max(d);
                n += usize::from(d != 0);
            }
        }
        println!(
            "{}: image-crate vs stb_image: max |diff| {max}/255, {n} of {} samples differ ({:.2}%)",
            p.file_name().unwrap().to_string_lossy(),
            3 * plane,
            100.0 * n as f64 / (3 * plane) as f64
        );
        any_difference |= n > 0;
        if p.ends_with("bus.jpg") {
            // Effect at the network input: the image-crate decode stretched to 416x416 vs Darknet's input.bin.
            let data = (0..3)
                .flat_map(|k| theirs.pixels().map(move |px| image::unit_from_u8(px.0[k])))
                .collect();
            let alt = Image::from_data(ours.w, ours.h, 3, data).unwrap();
            let sized = image::resize_image(&alt, 416, 416);
            let expect = read_f32(&reference_dir("yolov4-tiny-bus416/input.bin"));
            let (m, cnt) = diff_stats(&sized.data, &expect);
            println!("  bus.jpg with the image-crate decoder, at the 416x416 input: max |diff| {m:e}, {cnt} values differ");
        }
        assert!(max <= 4, "{}: difference grew to {max}", p.display());
    }
    assert!(
        any_difference,
        "the image crate now decodes like stb_image: docs/preprocessing.md is out of date"
    );
}
