//! Reading the box sizes for anchor clustering, as the loading loop of `calc_anchors` (`src/detector.c`).
//!
//! The files (`.data`, image list, `replace_image_to_label`, label lines, relative paths, missing label
//! files) are read by [`crate::dataset`] with its one policy. What is particular to anchors stays here: a
//! non-positive w or h is an error naming file:line (Darknet prints "Wrong label" and keeps it; a zero size
//! would be a degenerate k-means point), a size above 1 is kept and counted, as Darknet does. Boxes from other
//! sources (a COCO json read by the evaluation's reader) come in as [`BoxSource::Relative`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::dataset::{read_labels, ImageList, LabelBox};

/// Where the labels come from.
#[derive(Clone, Debug)]
pub enum BoxSource {
    /// A Darknet `.data` file (its `train=` list is read), or directly a list of image paths.
    Data(PathBuf),
    /// A folder of Darknet label files (`*.txt`, `class xc yc w h` relative), read recursively.
    Labels(PathBuf),
    /// Boxes already read elsewhere: `(class, [w, h])` relative to their image, with the number of images.
    Relative {
        boxes: Vec<(usize, [f32; 2])>,
        images: usize,
        origin: PathBuf,
    },
}

/// The loaded boxes.
#[derive(Clone, Debug, Default)]
pub struct BoxSizes {
    /// (w, h) scaled to the network size, as `rel_width_height_array` in `calc_anchors`.
    pub boxes: Vec<[f32; 2]>,
    /// Boxes per class id (`counter_per_class`), grown to the largest id seen.
    pub class_counts: Vec<usize>,
    /// Label files read.
    pub files: usize,
    /// Label files that did not exist (Darknet: "Can't open label file", then goes on).
    pub missing: Vec<PathBuf>,
    /// Boxes with w or h above 1 (Darknet's "Wrong label" warning), kept.
    pub oversized: usize,
}

/// Darknet's `replace_image_to_label`, from the dataset module.
pub use crate::dataset::replace_image_to_label;

impl BoxSizes {
    /// One relative box of class `class`, scaled to `width`×`height`.
    fn push(&mut self, class: usize, w: f32, h: f32, width: u32, height: u32) {
        if w > 1.0 || h > 1.0 {
            self.oversized += 1;
        }
        if class >= self.class_counts.len() {
            self.class_counts.resize(class + 1, 0);
        }
        self.class_counts[class] += 1;
        self.boxes.push([w * width as f32, h * height as f32]);
    }

    /// The boxes of one label file (`None`: it does not exist).
    fn add_file(&mut self, path: &Path, classes: Option<usize>, size: (u32, u32)) -> Result<()> {
        let Some(labels) = read_labels(path, classes)? else {
            self.missing.push(path.to_path_buf());
            return Ok(());
        };
        self.files += 1;
        for LabelBox { class, bbox, line } in labels {
            let [_, _, w, h] = bbox;
            if !(w > 0.0 && h > 0.0) {
                bail!(
                    "{}:{line}: box width and height must be positive, got w = {w}, h = {h}",
                    path.display()
                );
            }
            self.push(class, w, h, size.0, size.1);
        }
        Ok(())
    }
}

/// Loads every box's (w, h) × (width, height) from `source`. Errors name the file and line of a bad label,
/// and an empty result (no boxes at all) is an error.
pub fn load_box_sizes(source: &BoxSource, width: u32, height: u32) -> Result<BoxSizes> {
    let mut out = BoxSizes::default();
    let size = (width, height);
    match source {
        BoxSource::Labels(dir) => {
            let mut files = Vec::new();
            collect_txt(dir, &mut files)?;
            files.sort();
            for f in files {
                out.add_file(&f, None, size)?;
            }
        }
        BoxSource::Relative { boxes, images, .. } => {
            out.files = *images;
            for &(class, [w, h]) in boxes {
                out.push(class, w, h, width, height);
            }
        }
        BoxSource::Data(path) => {
            let (list, data) = ImageList::open_train(path)?;
            let classes = match &data {
                Some(d) => d.classes()?,
                None => None,
            };
            for i in 0..list.len() {
                out.add_file(&list.label(i), classes, size)?;
            }
        }
    }
    if out.boxes.is_empty() {
        bail!("no boxes found in {}", describe_empty(source, &out));
    }
    Ok(out)
}

fn describe_empty(source: &BoxSource, out: &BoxSizes) -> String {
    let what = match source {
        BoxSource::Labels(d) => format!("label folder {}", d.display()),
        BoxSource::Data(p) => format!("dataset {}", p.display()),
        BoxSource::Relative { origin, .. } => format!("dataset {}", origin.display()),
    };
    let hint = match out.missing.first() {
        Some(m) => format!(
            " ({} label files missing, e.g. {})",
            out.missing.len(),
            m.display()
        ),
        None => String::new(),
    };
    format!("{what}: {} label files read{hint}", out.files)
}

fn collect_txt(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading label folder {}", dir.display()))?;
    for e in entries {
        let p = e
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if p.is_dir() {
            collect_txt(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "txt") {
            out.push(p);
        }
    }
    Ok(())
}
