//! Reading the box sizes for anchor clustering, as the loading loop of `calc_anchors` (`src/detector.c`)
//! does with `read_data_cfg` / `get_paths` / `replace_image_to_label` (`src/utils.c`) / `read_boxes`
//! (`src/data.c`).
//!
//! Deliberately small and in one entry point, [`load_box_sizes`], so that a full dataset reader can replace
//! it. Differences from Darknet: a malformed label line is an error naming the file and line (Darknet's
//! `fscanf` loop stops silently there); a non-positive or non-finite w or h is an error (Darknet prints
//! "Wrong label" and keeps it); a size above 1 is kept with a warning, as Darknet does; relative image
//! paths are tried against the working directory (as Darknet) and then against the list file's folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where the labels come from.
#[derive(Clone, Debug)]
pub enum BoxSource {
    /// A Darknet `.data` file (its `train=` list is read), or directly a list of image paths.
    Data(PathBuf),
    /// A folder of Darknet label files (`*.txt`, `class xc yc w h` relative), read recursively.
    Labels(PathBuf),
    /// A COCO instances json (read with the evaluation's dataset reader; crowd boxes included, as they are boxes).
    Coco(PathBuf),
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

/// Darknet's `replace_image_to_label`, shared with the dataset readers.
pub use crate::eval::dataset::replace_image_to_label;

/// Loads every box's (w, h) × (width, height) from `source`. Errors name the file and line of a bad label,
/// and an empty result (no boxes at all) is an error.
pub fn load_box_sizes(source: &BoxSource, width: u32, height: u32) -> Result<BoxSizes> {
    let mut out = BoxSizes::default();
    match source {
        BoxSource::Labels(dir) => {
            let mut files = Vec::new();
            collect_txt(dir, &mut files)?;
            files.sort();
            for f in files {
                read_label_file(&f, width, height, &mut out)?;
            }
        }
        BoxSource::Coco(json) => {
            let ds = crate::eval::dataset::Dataset::from_coco_json(json, None, None)?;
            out.files = ds.images.len();
            for b in ds.images.iter().flat_map(|im| &im.boxes) {
                let [_, _, w, h] = b.bbox_rel;
                if b.class >= out.class_counts.len() {
                    out.class_counts.resize(b.class + 1, 0);
                }
                out.class_counts[b.class] += 1;
                out.boxes.push([w * width as f32, h * height as f32]);
            }
        }
        BoxSource::Data(path) => {
            let (list, bases) = train_list(path)?;
            let text = std::fs::read_to_string(&list)
                .with_context(|| format!("reading image list {}", list.display()))?;
            for line in text.lines() {
                let img = line.trim();
                if img.is_empty() {
                    continue;
                }
                let label = PathBuf::from(replace_image_to_label(img));
                let label = resolve_relative(label, &bases);
                if label.exists() {
                    read_label_file(&label, width, height, &mut out)?;
                } else {
                    out.missing.push(label);
                }
            }
        }
    }
    if out.boxes.is_empty() {
        let what = match source {
            BoxSource::Labels(d) => format!("label folder {}", d.display()),
            BoxSource::Data(p) | BoxSource::Coco(p) => format!("dataset {}", p.display()),
        };
        let hint = match out.missing.first() {
            Some(m) => format!(
                " ({} label files missing, e.g. {})",
                out.missing.len(),
                m.display()
            ),
            None => String::new(),
        };
        bail!(
            "no boxes found in {what}: {} label files read{hint}",
            out.files
        );
    }
    Ok(out)
}

/// `p` itself when it exists or is absolute (Darknet: relative to the working directory), else the first
/// `base/p` that exists, else `p`.
fn resolve_relative(p: PathBuf, bases: &[PathBuf]) -> PathBuf {
    if p.is_absolute() || p.exists() {
        return p;
    }
    bases
        .iter()
        .map(|b| b.join(&p))
        .find(|c| c.exists())
        .unwrap_or(p)
}

/// The image list of a `.data` file (`train=`, default `data/train.list` as Darknet), or `path` itself when
/// it has no `train` key. Also returns the folders to resolve relative image paths against when they are
/// not found from the working directory: the `.data` file's folder, then the list's folder.
fn train_list(path: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let is_data = path.extension().is_some_and(|e| e == "data")
        || text
            .lines()
            .any(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == "train"));
    if !is_data {
        return Ok((path.to_path_buf(), vec![base]));
    }
    let train = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "train")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "data/train.list".to_string());
    let list = resolve_relative(PathBuf::from(&train), std::slice::from_ref(&base));
    let mut bases = vec![base];
    if let Some(d) = list.parent().filter(|d| !d.as_os_str().is_empty()) {
        bases.push(d.to_path_buf());
    }
    Ok((list, bases))
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

/// One label file (`read_boxes`): `class xc yc w h` per line, blank lines skipped.
fn read_label_file(path: &Path, width: u32, height: u32, out: &mut BoxSizes) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading label file {}", path.display()))?;
    out.files += 1;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let loc = || format!("{}:{}", path.display(), n + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            bail!("{}: expected 'class x y w h', got '{line}'", loc());
        }
        let id: usize = f[0]
            .parse()
            .with_context(|| format!("{}: bad class id '{}'", loc(), f[0]))?;
        let mut v = [0f32; 4];
        for (i, s) in f[1..5].iter().enumerate() {
            v[i] = s
                .parse()
                .with_context(|| format!("{}: bad number '{s}'", loc()))?;
        }
        let (w, h) = (v[2], v[3]);
        if !(w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0) {
            bail!(
                "{}: box width and height must be positive, got w = {w}, h = {h}",
                loc()
            );
        }
        if w > 1.0 || h > 1.0 {
            out.oversized += 1;
        }
        if id >= out.class_counts.len() {
            out.class_counts.resize(id + 1, 0);
        }
        out.class_counts[id] += 1;
        out.boxes.push([w * width as f32, h * height as f32]);
    }
    Ok(())
}
