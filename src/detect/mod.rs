//! Detection post-processing: YOLO head outputs → boxes → NMS → printed/JSON results, as
//! `darknet detector test` does it (AlexeyAB/darknet 59596d7).
//!
//! - [`yolo_boxes`]: `get_network_boxes` / `get_yolo_detections` / `get_yolo_box` / `correct_yolo_boxes`
//!   (`src/network.c`, `src/yolo_layer.c`),
//! - [`nms`]: `do_nms_sort`, `do_nms_obj`, `diounms_sort` and the IoU variants (`src/box.c`), with glibc's
//!   stable merge-sort `qsort` so the output order equals Darknet's,
//! - [`output`]: the `-ext_output` lines of `draw_detections_v3` (`src/image.c`) and a JSON record per image.
//!
//! Everything works on plain `&[f32]` head outputs (Darknet's `l.output` layout) so it does not depend on
//! the network implementation. See `docs/postprocessing.md` for the formulas.

pub mod nms;
pub mod output;
pub mod yolo_boxes;

pub use nms::{
    apply_nms, box_diou, box_diounms, box_iou, diounms_sort, do_nms_obj, do_nms_sort, NmsKind,
};
pub use output::{
    detections_json, format_detections_v3, selected_detections, ImageDetections, JsonDetection,
};
pub use yolo_boxes::{
    correct_yolo_boxes, get_network_boxes, get_yolo_detections, yolo_num_detections, YoloOutput,
};

/// Darknet's `box`: centre `x`, `y` and size `w`, `h`; relative to the image (0..1) after
/// `correct_yolo_boxes` with `relative = 1`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BoxF {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
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
