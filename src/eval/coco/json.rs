//! The COCO ground-truth (instances json) and results-format readers and writers: what pycocotools'
//! `COCO(annotation_file)` and `COCO.loadRes` read for bbox evaluation.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One image of a COCO instances file.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoImage {
    pub id: i64,
    pub width: u32,
    pub height: u32,
    pub file_name: String,
}

/// One category of a COCO instances file.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoCategory {
    pub id: i64,
    pub name: String,
}

/// One ground-truth annotation. `area` is the json's `area` field (the segmentation area in real COCO), *not*
/// `w·h`: the small/medium/large split of `COCOeval` uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoAnn {
    pub id: i64,
    pub image_id: i64,
    pub category_id: i64,
    /// `[x, y, w, h]` in pixels, top-left corner.
    pub bbox: [f64; 4],
    pub area: f64,
    pub iscrowd: bool,
}

/// The ground truth of a COCO evaluation (what pycocotools' `COCO(annotation_file)` holds for bbox eval).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoGt {
    pub images: Vec<CocoImage>,
    pub categories: Vec<CocoCategory>,
    pub annotations: Vec<CocoAnn>,
}

/// One detection in COCO results format (`[{"image_id", "category_id", "bbox": [x,y,w,h], "score"}]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CocoDet {
    pub image_id: i64,
    pub category_id: i64,
    pub bbox: [f64; 4],
    pub score: f64,
}

#[derive(Deserialize)]
struct RawGt {
    images: Vec<RawImage>,
    #[serde(default)]
    annotations: Vec<RawAnn>,
    #[serde(default)]
    categories: Vec<RawCategory>,
}

#[derive(Deserialize)]
struct RawImage {
    id: i64,
    #[serde(default)]
    width: Option<f64>,
    #[serde(default)]
    height: Option<f64>,
    #[serde(default)]
    file_name: Option<String>,
}

#[derive(Deserialize)]
struct RawCategory {
    id: i64,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawAnn {
    id: i64,
    image_id: i64,
    category_id: i64,
    bbox: [f64; 4],
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Option<serde_json::Value>,
}

fn check_finite(v: &[f64], what: impl Fn() -> String) -> Result<()> {
    if v.iter().any(|x| !x.is_finite()) {
        bail!("{}: non-finite number in {:?}", what(), v);
    }
    Ok(())
}

/// pycocotools tests `iscrowd` for truthiness (`int(o['iscrowd'])`, `gt['iscrowd']`).
fn truthy(v: &Option<serde_json::Value>) -> bool {
    match v {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().map(|x| x != 0.0).unwrap_or(false),
        Some(_) => true,
    }
}

impl CocoGt {
    /// Reads a COCO instances json (`images`, `annotations`, `categories`).
    pub fn read(path: &Path) -> Result<CocoGt> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in COCO instances file {}", path.display()))
    }

    /// Parses the text of a COCO instances json; errors carry serde's line/column.
    pub fn parse(text: &str) -> Result<CocoGt> {
        let raw: RawGt = serde_json::from_str(text).context("parsing COCO instances json")?;
        let mut images = Vec::with_capacity(raw.images.len());
        let mut seen = BTreeSet::new();
        for (i, im) in raw.images.into_iter().enumerate() {
            if !seen.insert(im.id) {
                bail!("images[{i}]: duplicate image id {}", im.id);
            }
            let dim = |v: Option<f64>, name: &str| -> Result<u32> {
                match v {
                    None => Ok(0),
                    Some(x) if x.is_finite() && x >= 0.0 && x <= u32::MAX as f64 => Ok(x as u32),
                    Some(x) => bail!("images[{i}] (id {}): bad {name} {x}", im.id),
                }
            };
            images.push(CocoImage {
                id: im.id,
                width: dim(im.width, "width")?,
                height: dim(im.height, "height")?,
                file_name: im.file_name.unwrap_or_default(),
            });
        }
        let mut cat_seen = BTreeSet::new();
        let mut categories = Vec::with_capacity(raw.categories.len());
        for (i, c) in raw.categories.into_iter().enumerate() {
            if !cat_seen.insert(c.id) {
                bail!("categories[{i}]: duplicate category id {}", c.id);
            }
            categories.push(CocoCategory {
                id: c.id,
                name: c.name.unwrap_or_else(|| c.id.to_string()),
            });
        }
        let mut annotations = Vec::with_capacity(raw.annotations.len());
        for (i, a) in raw.annotations.into_iter().enumerate() {
            check_finite(&a.bbox, || format!("annotations[{i}] (id {}) bbox", a.id))?;
            let area = a.area.unwrap_or(a.bbox[2] * a.bbox[3]);
            check_finite(&[area], || format!("annotations[{i}] (id {}) area", a.id))?;
            annotations.push(CocoAnn {
                id: a.id,
                image_id: a.image_id,
                category_id: a.category_id,
                bbox: a.bbox,
                area,
                iscrowd: truthy(&a.iscrowd),
            });
        }
        Ok(CocoGt {
            images,
            categories,
            annotations,
        })
    }

    /// Writes the ground truth as a COCO instances json (atomic write).
    pub fn write(&self, path: &Path) -> Result<()> {
        let images: Vec<_> = self
            .images
            .iter()
            .map(|i| serde_json::json!({"id": i.id, "width": i.width, "height": i.height, "file_name": i.file_name}))
            .collect();
        let categories: Vec<_> = self
            .categories
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "name": c.name}))
            .collect();
        let annotations: Vec<_> = self
            .annotations
            .iter()
            .map(|a| {
                serde_json::json!({"id": a.id, "image_id": a.image_id, "category_id": a.category_id,
                    "bbox": a.bbox, "area": a.area, "iscrowd": a.iscrowd as i32})
            })
            .collect();
        let v = serde_json::json!({"images": images, "categories": categories, "annotations": annotations});
        crate::util::write_atomic(path, serde_json::to_string(&v)?.as_bytes())
    }
}

/// Reads a COCO results json (a list of `{"image_id", "category_id", "bbox", "score"}`; extra keys ignored).
pub fn read_results(path: &Path) -> Result<Vec<CocoDet>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_results(&text).with_context(|| format!("in COCO results file {}", path.display()))
}

/// Parses COCO results json text.
pub fn parse_results(text: &str) -> Result<Vec<CocoDet>> {
    let dets: Vec<CocoDet> = serde_json::from_str(text).context("parsing COCO results json")?;
    for (i, d) in dets.iter().enumerate() {
        check_finite(&d.bbox, || format!("results[{i}] bbox"))?;
        check_finite(&[d.score], || format!("results[{i}] score"))?;
    }
    Ok(dets)
}

/// Writes detections in COCO results format (atomic write), one detection per line.
pub fn write_results(path: &Path, dets: &[CocoDet]) -> Result<()> {
    crate::util::write_atomic_with(path, |w| {
        use std::io::Write;
        w.write_all(b"[")?;
        for (i, d) in dets.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"\n")?;
            serde_json::to_writer(&mut *w, d)?;
        }
        w.write_all(b"\n]\n")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_json_error_names_line() {
        let e = CocoGt::parse("{\"images\": [\n{\"id\": \"x\"}]}").unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
    }
}
