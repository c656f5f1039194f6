//! Detection post-processing: YOLO head outputs → boxes → NMS → printed/JSON results, as
//! `darknet detector test` does it (AlexeyAB/darknet 59596d7).
//!
//! - [`yolo_boxes`]: `get_network_boxes` / `get_yolo_detections` / `get_yolo_box` / `correct_yolo_boxes`
//!   (`src/network.c`, `src/yolo_layer.c`),
//! - [`nms`]: `do_nms_sort`, `do_nms_obj`, `diounms_sort` and the IoU variants (`src/box.c`), with glibc's
//!   stable merge-sort `qsort` so the output order equals Darknet's,
//! - [`draw`]: the detections `draw_detections_v3` draws on the image, in its order, with its labels,
//! - [`output`]: the `-ext_output` lines of `draw_detections_v3` (`src/image.c`) and a JSON record per image.
//!
//! Everything works on plain `&[f32]` head outputs (Darknet's `l.output` layout) so it does not depend on
//! the network implementation. See `docs/postprocessing.md` for the formulas.

pub mod draw;
pub mod nms;
pub mod output;
pub mod yolo_boxes;

pub use draw::draw_detections;
pub use nms::{
    apply_nms, box_diou, box_diounms, box_iou, diounms_sort, do_nms_obj, do_nms_sort, NmsKind,
};
pub use output::{
    detections_json, format_detections_v3, read_names, selected_detections, ImageDetections,
    JsonDetection,
};
pub use yolo_boxes::{
    correct_yolo_boxes, get_network_boxes, get_yolo_detections, yolo_num_detections, YoloOutput,
};

/// `test_detector`'s post-processing in one call: [`get_network_boxes`] (relative boxes) followed by
/// [`apply_nms`] with the NMS threshold (Darknet fixes it at 0.45), `nms_kind` and `beta_nms` of the *last*
/// yolo head, as `detector test` does. `letter` must match how the input was made
/// (`crate::image::network_input`).
#[allow(clippy::too_many_arguments)]
pub fn postprocess(
    heads: &[YoloOutput],
    im_w: usize,
    im_h: usize,
    net_w: usize,
    net_h: usize,
    thresh: f32,
    letter: bool,
    nms_thresh: f32,
    nms_kind: NmsKind,
    beta_nms: f32,
) -> anyhow::Result<Vec<Detection>> {
    let mut dets = get_network_boxes(heads, im_w, im_h, net_w, net_h, thresh, true, letter)?;
    let classes = heads.last().map_or(0, |h| h.classes);
    apply_nms(&mut dets, classes, nms_thresh, nms_kind, beta_nms);
    Ok(dets)
}

/// Darknet's `box`: centre `x`, `y` and size `w`, `h`; relative to the image (0..1) after
/// `correct_yolo_boxes` with `relative = 1`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BoxF {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BoxF {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        Self { x, y, w, h }
    }
}

/// Darknet's `detection` (the fields `detector test` uses).
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub bbox: BoxF,
    /// The anchor's objectness (logistic output).
    pub objectness: f32,
    /// Per class `objectness * class_prob`, or 0 where that is not above the threshold (or NMS removed it).
    pub prob: Vec<f32>,
    /// `prob.len()` (Darknet's `classes`).
    pub classes: usize,
}
