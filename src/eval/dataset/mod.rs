//! Validation datasets in memory, read from a COCO instances json or from a Darknet `.data` file.
//!
//! The Darknet files (`.data`, lists, names, label files, `replace_image_to_label`) are read by
//! [`crate::dataset`] with its one policy (relative paths, missing label files = no objects, reported in
//! [`Dataset::missing_labels`], strict label lines); this module adds the image sizes, Darknet's `difficult=`
//! list (`validate_detector_map`) and the COCO category mapping.

mod coco;
mod darknet;

pub use coco::{coco80_category_id, coco80_class_index, COCO80_CATEGORY_IDS};

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// One ground-truth box.
#[derive(Debug, Clone, PartialEq)]
pub struct GtBox {
    /// Annotation id (COCO json `id`; 1-based running number for Darknet labels).
    pub id: i64,
    /// Class index in [`Dataset::classes`].
    pub class: usize,
    /// `[x, y, w, h]` in pixels, top-left corner (COCO style).
    pub bbox: [f64; 4],
    /// Relative `(cx, cy, w, h)`, exactly as read for Darknet labels (computed from `bbox` for COCO).
    pub bbox_rel: [f32; 4],
    /// COCO `area` field (segment area for real COCO); `w·h` in pixels for Darknet labels.
    pub area: f64,
    pub iscrowd: bool,
    /// From Darknet's `difficult=` list.
    pub difficult: bool,
}

/// One image with its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEntry {
    /// COCO image id; for Darknet lists the 0-based index of the entry (blank lines are not entries).
    pub id: i64,
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<GtBox>,
}

/// A validation set: class names in the model's order, the COCO category id of each class (`None` when the
/// class has no COCO id: such detections are left out of saved COCO results), and the images.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub category_ids: Vec<Option<i64>>,
    pub images: Vec<ImageEntry>,
    /// Label files that do not exist (those images have no objects, as in Darknet; the caller warns).
    pub missing_labels: Vec<PathBuf>,
}

/// Class names, one per line (`names=` file): Darknet's `get_labels_custom`, shared with inference.
pub use crate::dataset::read_names;

impl GtBox {
    /// A box from a Darknet label (relative cx, cy, w, h) on a `width`×`height` image.
    pub fn from_relative(
        id: i64,
        class: usize,
        rel: [f32; 4],
        width: u32,
        height: u32,
        difficult: bool,
    ) -> GtBox {
        let (w, h) = (width as f64, height as f64);
        let [cx, cy, bw, bh] = rel.map(|v| v as f64);
        let bbox = [(cx - bw / 2.0) * w, (cy - bh / 2.0) * h, bw * w, bh * h];
        GtBox {
            id,
            class,
            bbox,
            bbox_rel: rel,
            area: bbox[2] * bbox[3],
            iscrowd: false,
            difficult,
        }
    }
}

/// Relative `(cx, cy, w, h)` of a pixel `[x, y, w, h]` box on a `width`×`height` image.
pub fn pixel_to_relative(bbox: [f64; 4], width: u32, height: u32) -> [f32; 4] {
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    [
        ((bbox[0] + bbox[2] / 2.0) / w) as f32,
        ((bbox[1] + bbox[3] / 2.0) / h) as f32,
        (bbox[2] / w) as f32,
        (bbox[3] / h) as f32,
    ]
}

impl Dataset {
    /// Opens a validation set by file type: a `.json` is a COCO instances file (images under `image_dir`,
    /// categories matched to `class_names` when given), anything else a Darknet `.data` file (its `names=`
    /// must then agree with `class_names` when given).
    pub fn open(
        path: &Path,
        image_dir: Option<&Path>,
        class_names: Option<&[String]>,
    ) -> Result<Dataset> {
        let is_json = path
            .extension()
            .map(|e| e.eq_ignore_ascii_case("json"))
            .unwrap_or(false);
        if is_json {
            return Dataset::from_coco_json(path, image_dir, class_names);
        }
        let ds = Dataset::from_darknet_data(path)?;
        if let Some(names) = class_names {
            if names != ds.classes.as_slice() {
                bail!(
                    "{}: its names file has {} classes {:?}..., the model has {} {:?}...",
                    path.display(),
                    ds.classes.len(),
                    ds.classes.iter().take(3).collect::<Vec<_>>(),
                    names.len(),
                    names.iter().take(3).collect::<Vec<_>>()
                );
            }
        }
        Ok(ds)
    }
}
