//! Detection post-processing: YOLO head outputs → boxes → NMS → printed/JSON results, as
//! `darknet detector test` does it (AlexeyAB/darknet 59596d7).
//!
//! - [`yolo_boxes`]: `get_network_boxes` / `get_yolo_detections` / `get_yolo_box` / `correct_yolo_boxes`
//!   (`src/network.c`, `src/yolo_layer.c`),
//! - [`region_boxes`]: `custom_get_region_detections` / `get_region_boxes` for `[region]` heads (YOLOv2,
//!   yolo9000's tree),
//! - [`gaussian_boxes`]: `get_gaussian_yolo_detections` for `[Gaussian_yolo]` heads,
//! - [`nms`]: `do_nms_sort`, `do_nms_obj`, `diounms_sort` and the IoU variants (`src/box.c`), with glibc's
//!   stable merge-sort `qsort` so the output order equals Darknet's,
//! - [`draw`]: the detections `draw_detections_v3` draws on the image, in its order, with its labels,
//! - [`output`]: the `-ext_output` lines of `draw_detections_v3` (`src/image.c`) and a JSON record per image.
//!
//! Everything works on plain `&[f32]` head outputs (Darknet's `l.output` layout) so it does not depend on
//! the network implementation. See `docs/postprocessing.md` for the formulas.

pub mod draw;
pub mod gaussian_boxes;
pub mod nms;
pub mod output;
pub mod region_boxes;
pub mod yolo_boxes;

pub use draw::draw_detections;
pub use gaussian_boxes::{get_gaussian_yolo_detections, GaussianYoloOutput};
pub use nms::{
    apply_nms, box_diou, box_diounms, box_iou, diounms_sort, do_nms_obj, do_nms_sort, NmsKind,
};
pub use output::{
    detections_json, format_detections_v3, read_names, selected_detections, ImageDetections,
    JsonDetection,
};
pub use region_boxes::{get_region_detections, RegionOutput};
pub use yolo_boxes::{
    correct_yolo_boxes, get_network_boxes, get_yolo_detections, yolo_num_detections, BoxMapping,
    YoloOutput,
};

/// The settings of [`postprocess`]; `Default` is `darknet detector test`'s: `-thresh .25`, no letterbox,
/// NMS .45 (fixed in `test_detector`), and the `[yolo]` defaults `nms_kind=default`, `beta_nms=.6`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PostprocessOptions {
    /// Objectness and class-probability threshold.
    pub thresh: f32,
    /// Whether the input was letterboxed (must match `crate::image::network_input`).
    pub letter: bool,
    pub nms_thresh: f32,
    /// `nms_kind` of the last yolo head.
    pub nms_kind: NmsKind,
    /// `beta_nms` of the last yolo head.
    pub beta_nms: f32,
}

impl Default for PostprocessOptions {
    fn default() -> Self {
        PostprocessOptions {
            thresh: 0.25,
            letter: false,
            nms_thresh: 0.45,
            nms_kind: NmsKind::Default,
            beta_nms: 0.6,
        }
    }
}

/// One detection layer's output, of any of the head types `fill_network_boxes` decodes.
#[derive(Clone, Copy, Debug)]
pub enum HeadOutput<'a> {
    Yolo(YoloOutput<'a>),
    GaussianYolo(GaussianYoloOutput<'a>),
    Region(RegionOutput<'a>),
}

impl HeadOutput<'_> {
    pub fn classes(&self) -> usize {
        match self {
            HeadOutput::Yolo(h) => h.classes,
            HeadOutput::GaussianYolo(h) => h.classes,
            HeadOutput::Region(h) => h.classes,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            HeadOutput::Yolo(_) => "yolo",
            HeadOutput::GaussianYolo(_) => "Gaussian_yolo",
            HeadOutput::Region(_) => "region",
        }
    }
}

/// `fill_network_boxes` (src/network.c): each head's detections in network order — `get_yolo_detections`,
/// `get_gaussian_yolo_detections` or `custom_get_region_detections`. All heads must have the same number of
/// classes (Darknet sizes every `prob` array by the first head's and would write past it).
pub fn fill_network_boxes(
    heads: &[HeadOutput],
    map: &BoxMapping,
    thresh: f32,
) -> anyhow::Result<Vec<Detection>> {
    use anyhow::Context;
    if let Some(first) = heads.first() {
        if let Some((i, other)) = heads
            .iter()
            .enumerate()
            .find(|(_, h)| h.classes() != first.classes())
        {
            anyhow::bail!(
                "{} head {i} has {} classes but the first head has {}",
                other.kind(),
                other.classes(),
                first.classes()
            );
        }
    }
    let mut all = Vec::new();
    for (i, head) in heads.iter().enumerate() {
        let dets = match head {
            HeadOutput::Yolo(h) => get_yolo_detections(h, map, thresh),
            HeadOutput::GaussianYolo(h) => get_gaussian_yolo_detections(h, map, thresh),
            HeadOutput::Region(h) => get_region_detections(h, map, thresh),
        }
        .with_context(|| format!("{} head {i}", head.kind()))?;
        all.extend(dets);
    }
    Ok(all)
}

/// `test_detector`'s post-processing in one call: [`fill_network_boxes`] (relative boxes on an
/// `image` = (w, h) from a `network` = (w, h) input) followed by [`apply_nms`] with the last head's NMS
/// settings, as `detector test` does.
pub fn postprocess(
    heads: &[HeadOutput],
    image: (usize, usize),
    network: (usize, usize),
    opts: &PostprocessOptions,
) -> anyhow::Result<Vec<Detection>> {
    let map = BoxMapping::relative(image, network, opts.letter);
    let mut dets = fill_network_boxes(heads, &map, opts.thresh)?;
    let classes = heads.last().map_or(0, HeadOutput::classes);
    apply_nms(
        &mut dets,
        classes,
        opts.nms_thresh,
        opts.nms_kind,
        opts.beta_nms,
    );
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
