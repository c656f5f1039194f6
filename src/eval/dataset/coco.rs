//! COCO instances json → [`Dataset`]: categories matched to the model's classes by name, and Darknet's
//! 80-class ↔ COCO category id table (`coco_ids` in src/detector.c).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{pixel_to_relative, Dataset, GtBox, ImageEntry};
use crate::eval::coco::{CocoGt, CocoImage};

/// COCO category id of each of the 80 Darknet classes (`coco_ids` in `src/detector.c`).
pub const COCO80_CATEGORY_IDS: [i64; 80] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
];

/// The six classes whose Darknet name differs from the COCO json name (Darknet, COCO).
const COCO_NAME_ALIASES: [(&str, &str); 6] = [
    ("motorbike", "motorcycle"),
    ("aeroplane", "airplane"),
    ("sofa", "couch"),
    ("pottedplant", "potted plant"),
    ("diningtable", "dining table"),
    ("tvmonitor", "tv"),
];

/// COCO category id of Darknet COCO class `class` (0..80).
pub fn coco80_category_id(class: usize) -> Option<i64> {
    COCO80_CATEGORY_IDS.get(class).copied()
}

/// Darknet COCO class index of COCO category id `id` (1..=90, 80 of them used).
pub fn coco80_class_index(id: i64) -> Option<usize> {
    COCO80_CATEGORY_IDS.iter().position(|&c| c == id)
}

fn names_match(model: &str, coco: &str) -> bool {
    let norm = |s: &str| s.trim().to_lowercase();
    let (m, c) = (norm(model), norm(coco));
    m == c
        || COCO_NAME_ALIASES
            .iter()
            .any(|&(d, j)| (m == d && c == j) || (m == j && c == d))
}
impl Dataset {
    /// Reads a COCO instances json; `image_dir` is prepended to `file_name`. With `class_names` (the model's
    /// classes) categories are matched by name (Darknet spellings such as `motorbike` match COCO's
    /// `motorcycle`); annotations of categories the model lacks are dropped. Without it the classes are the
    /// json's categories sorted by id.
    pub fn from_coco_json(
        json: &Path,
        image_dir: Option<&Path>,
        class_names: Option<&[String]>,
    ) -> Result<Dataset> {
        let gt = CocoGt::read(json)?;
        Self::from_coco_gt(&gt, image_dir, class_names)
            .with_context(|| format!("in {}", json.display()))
    }

    /// [`Dataset::from_coco_json`] on an already parsed ground truth.
    pub fn from_coco_gt(
        gt: &CocoGt,
        image_dir: Option<&Path>,
        class_names: Option<&[String]>,
    ) -> Result<Dataset> {
        let mut cats = gt.categories.clone();
        cats.sort_by_key(|c| c.id);
        let (classes, category_ids, cat_to_class): (
            Vec<String>,
            Vec<Option<i64>>,
            HashMap<i64, usize>,
        ) = match class_names {
            None => (
                cats.iter().map(|c| c.name.clone()).collect(),
                cats.iter().map(|c| Some(c.id)).collect(),
                cats.iter().enumerate().map(|(i, c)| (c.id, i)).collect(),
            ),
            Some(names) => {
                let mut ids = vec![None; names.len()];
                let mut map = HashMap::new();
                for c in &cats {
                    if let Some(k) = names.iter().position(|n| names_match(n, &c.name)) {
                        if ids[k].is_some() {
                            bail!("two categories match model class {:?}", names[k]);
                        }
                        ids[k] = Some(c.id);
                        map.insert(c.id, k);
                    }
                }
                (names.to_vec(), ids, map)
            }
        };
        let mut index: HashMap<i64, usize> = HashMap::new();
        let mut images: Vec<ImageEntry> = gt
            .images
            .iter()
            .enumerate()
            .map(|(i, im): (usize, &CocoImage)| {
                index.insert(im.id, i);
                let path = match image_dir {
                    Some(d) => crate::util::join_within(d, &im.file_name)
                        .with_context(|| format!("images[{i}] (id {}): file_name", im.id))?,
                    None => PathBuf::from(&im.file_name),
                };
                Ok(ImageEntry {
                    id: im.id,
                    path,
                    width: im.width,
                    height: im.height,
                    boxes: Vec::new(),
                })
            })
            .collect::<Result<_>>()?;
        for (j, a) in gt.annotations.iter().enumerate() {
            let Some(&i) = index.get(&a.image_id) else {
                bail!(
                    "annotations[{j}] (id {}): image_id {} is not in images",
                    a.id,
                    a.image_id
                );
            };
            let Some(&class) = cat_to_class.get(&a.category_id) else {
                continue;
            };
            let im = &mut images[i];
            if im.width == 0 || im.height == 0 {
                bail!(
                    "image id {}: width/height missing (needed for relative boxes)",
                    im.id
                );
            }
            let bbox_rel = pixel_to_relative(a.bbox, im.width, im.height);
            im.boxes.push(GtBox {
                id: a.id,
                class,
                bbox: a.bbox,
                bbox_rel,
                area: a.area,
                iscrowd: a.iscrowd,
                difficult: false,
            });
        }
        Ok(Dataset {
            classes,
            category_ids,
            images,
            missing_labels: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coco80_mapping() {
        assert_eq!(coco80_category_id(0), Some(1));
        assert_eq!(coco80_category_id(11), Some(13));
        assert_eq!(coco80_category_id(79), Some(90));
        assert_eq!(coco80_class_index(90), Some(79));
        assert_eq!(coco80_class_index(12), None);
        assert!(names_match("motorbike", "motorcycle"));
        assert!(names_match("tv", "tvmonitor"));
    }

    #[test]
    fn coco_json_maps_categories_by_name() {
        let gt = CocoGt::parse(
            r#"{"images":[{"id":5,"width":100,"height":50,"file_name":"f.jpg"}],
                "categories":[{"id":4,"name":"motorcycle"},{"id":1,"name":"person"},{"id":9,"name":"zebra"}],
                "annotations":[{"id":1,"image_id":5,"category_id":4,"bbox":[0,0,10,10],"area":70,"iscrowd":1},
                               {"id":2,"image_id":5,"category_id":9,"bbox":[0,0,10,10],"area":100}]}"#,
        )
        .unwrap();
        let names: Vec<String> = ["person", "motorbike", "car"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ds = Dataset::from_coco_gt(&gt, Some(Path::new("imgs")), Some(&names)).unwrap();
        assert_eq!(ds.category_ids, vec![Some(1), Some(4), None]);
        assert_eq!(ds.images[0].path, PathBuf::from("imgs/f.jpg"));
        // zebra is not a model class: dropped.
        assert_eq!(ds.images[0].boxes.len(), 1);
        let b = &ds.images[0].boxes[0];
        assert_eq!((b.class, b.area, b.iscrowd), (1, 70.0, true));
        assert_eq!(b.bbox_rel, [0.05, 0.1, 0.1, 0.2]);
        let ds = Dataset::from_coco_gt(&gt, None, None).unwrap();
        assert_eq!(ds.classes, vec!["person", "motorcycle", "zebra"]);
    }
}
