//! Validation datasets in memory, read from a COCO instances json or from a Darknet `.data` file.
//!
//! The Darknet files (`.data`, lists, names, label files, `replace_image_to_label`) are read by
//! [`crate::dataset`] with its one policy (relative paths, missing label files = no objects, reported in
//! [`Dataset::missing_labels`], strict label lines); this module adds the image sizes, Darknet's `difficult=`
//! list (`validate_detector_map`) and the COCO category mapping.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::coco::{CocoGt, CocoImage};
use crate::dataset::{read_labels, DataCfg, ImageList};

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

    /// Reads the `valid=` split of a Darknet `.data` file (defaults and paths: [`crate::dataset`]), with
    /// `names=` and the optional `difficult=` list (same order as `valid`). With `eval=coco` the classes get
    /// the 80 COCO category ids, otherwise none.
    pub fn from_darknet_data(data_path: &Path) -> Result<Dataset> {
        let cfg = DataCfg::read(data_path)?;
        let names_path = cfg.names();
        let classes = read_names(&names_path)?;
        let valid = ImageList::valid_of(&cfg)?;
        let difficult = match cfg.get("difficult") {
            Some(d) => Some(ImageList::read(&cfg.resolve(d), Some(&cfg.dir()))?),
            None => None,
        };
        let mut ds = Dataset::from_image_list(&valid, difficult.as_ref(), classes)?;
        if cfg.get("eval") == Some("coco") {
            if ds.classes.len() != 80 {
                bail!(
                    "{}: eval=coco needs 80 classes, {} has {}",
                    data_path.display(),
                    names_path.display(),
                    ds.classes.len()
                );
            }
            ds.category_ids = COCO80_CATEGORY_IDS.iter().map(|&c| Some(c)).collect();
        }
        Ok(ds)
    }

    /// [`Dataset::from_image_list`] on the list file `list` and an optional difficult list file.
    pub fn from_darknet_list(
        list: &Path,
        difficult_list: Option<&Path>,
        classes: Vec<String>,
    ) -> Result<Dataset> {
        let valid = ImageList::read(list, None)?;
        let difficult = match difficult_list {
            Some(d) => Some(ImageList::read(d, None)?),
            None => None,
        };
        Dataset::from_image_list(&valid, difficult.as_ref(), classes)
    }

    /// The images of `valid` with their labels and sizes; entry `i` of the optional `difficult` list names
    /// an image path whose label file holds image `i`'s difficult boxes (Darknet reads only that label file).
    pub fn from_image_list(
        valid: &ImageList,
        difficult: Option<&ImageList>,
        classes: Vec<String>,
    ) -> Result<Dataset> {
        if let Some(d) = difficult.filter(|d| d.len() < valid.len()) {
            bail!(
                "{} has {} entries but {} has {}",
                d.list.display(),
                d.len(),
                valid.list.display(),
                valid.len()
            );
        }
        let mut images = Vec::with_capacity(valid.len());
        let mut missing_labels = Vec::new();
        let mut next_id = 1i64;
        for i in 0..valid.len() {
            let path = valid.image(i);
            let (width, height) = image::image_dimensions(&path).with_context(|| {
                format!(
                    "{}: entry {}: reading image size of {}",
                    valid.list.display(),
                    i + 1,
                    path.display()
                )
            })?;
            let mut boxes = Vec::new();
            let mut add = |label: PathBuf, difficult: bool| -> Result<()> {
                let Some(read) = read_labels(&label, Some(classes.len()))? else {
                    missing_labels.push(label);
                    return Ok(());
                };
                for b in read {
                    boxes.push(GtBox::from_relative(
                        next_id, b.class, b.bbox, width, height, difficult,
                    ));
                    next_id += 1;
                }
                Ok(())
            };
            add(valid.label(i), false)?;
            if let Some(d) = difficult {
                add(d.label(i), true)?;
            }
            images.push(ImageEntry {
                id: i as i64,
                path,
                width,
                height,
                boxes,
            });
        }
        let category_ids = vec![None; classes.len()];
        Ok(Dataset {
            classes,
            category_ids,
            images,
            missing_labels,
        })
    }

    /// Writes this dataset in Darknet's layout under `dir` (so the training loader, which reads Darknet label files
    /// beside the images, can use a COCO json): `img/<n>_<file>` links to the images, `img/<n>_<stem>.txt` labels
    /// (`class xc yc w h`, crowd boxes left out as Darknet has no crowd), `list.txt`, `names.txt` and
    /// `dataset.data` (train = valid = the list). Returns the `.data` path.
    pub fn write_darknet(&self, dir: &Path) -> Result<PathBuf> {
        let img = dir.join("img");
        std::fs::create_dir_all(&img).with_context(|| format!("creating {}", img.display()))?;
        let mut list = String::new();
        for (n, im) in self.images.iter().enumerate() {
            let file = im
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let link = img.join(format!("{n}_{file}"));
            let target = std::fs::canonicalize(&im.path)
                .with_context(|| format!("image {}", im.path.display()))?;
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("linking {}", link.display()))?;
            let label: String = im
                .boxes
                .iter()
                .filter(|b| !b.iscrowd)
                .map(|b| {
                    format!(
                        "{} {} {} {} {}\n",
                        b.class, b.bbox_rel[0], b.bbox_rel[1], b.bbox_rel[2], b.bbox_rel[3]
                    )
                })
                .collect();
            crate::util::write_atomic(
                Path::new(&crate::dataset::replace_image_to_label(
                    &link.to_string_lossy(),
                )),
                label.as_bytes(),
            )?;
            list.push_str(&format!("{}\n", link.display()));
        }
        crate::util::write_atomic(&dir.join("list.txt"), list.as_bytes())?;
        crate::util::write_atomic(
            &dir.join("names.txt"),
            (self.classes.join("\n") + "\n").as_bytes(),
        )?;
        let data = dir.join("dataset.data");
        let text = format!(
            "classes = {}\ntrain = {}\nvalid = {}\nnames = {}\n",
            self.classes.len(),
            dir.join("list.txt").display(),
            dir.join("list.txt").display(),
            dir.join("names.txt").display()
        );
        crate::util::write_atomic(&data, text.as_bytes())?;
        Ok(data)
    }

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
                    Some(d) => d.join(&im.file_name),
                    None => PathBuf::from(&im.file_name),
                };
                ImageEntry {
                    id: im.id,
                    path,
                    width: im.width,
                    height: im.height,
                    boxes: Vec::new(),
                }
            })
            .collect();
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
    fn darknet_dataset_reads_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        image::RgbImage::new(40, 20).save(d.join("a.png")).unwrap();
        image::RgbImage::new(10, 10).save(d.join("b.jpg")).unwrap();
        std::fs::write(d.join("a.txt"), "1 0.5 0.5 0.5 0.5\n\n0 0.25 0.5 0.1 0.2\n").unwrap();
        std::fs::write(d.join("b.txt"), "").unwrap();
        std::fs::write(d.join("names"), "x\ny\n").unwrap();
        std::fs::write(d.join("list.txt"), "a.png\nb.jpg\n").unwrap();
        std::fs::write(
            d.join("v.data"),
            "classes= 2\n# c\nvalid = list.txt\nnames=names\n",
        )
        .unwrap();
        let ds = Dataset::from_darknet_data(&d.join("v.data")).unwrap();
        assert_eq!(ds.classes, vec!["x", "y"]);
        assert_eq!(ds.images.len(), 2);
        let a = &ds.images[0];
        assert_eq!((a.width, a.height), (40, 20));
        assert_eq!(a.boxes.len(), 2);
        assert_eq!(a.boxes[0].class, 1);
        assert_eq!(a.boxes[0].bbox, [10.0, 5.0, 20.0, 10.0]);
        assert_eq!(a.boxes[1].bbox_rel, [0.25, 0.5, 0.1, 0.2]);
        assert!(ds.images[1].boxes.is_empty());
        let same: Vec<String> = vec!["x".into(), "y".into()];
        assert_eq!(
            Dataset::open(&d.join("v.data"), None, Some(&same)).unwrap(),
            ds
        );
        let other: Vec<String> = vec!["x".into(), "z".into()];
        assert!(Dataset::open(&d.join("v.data"), None, Some(&other)).is_err());

        std::fs::write(d.join("a.txt"), "1 0.5 0.5 0.5 0.5\n2 0.5 0.5 0.5 0.5\n").unwrap();
        let e = format!(
            "{:#}",
            Dataset::from_darknet_data(&d.join("v.data")).unwrap_err()
        );
        assert!(e.contains("a.txt:2") && e.contains("out of range"), "{e}");
        std::fs::write(d.join("a.txt"), "1 0.5 0.5 0.5\n").unwrap();
        let e = format!(
            "{:#}",
            Dataset::from_darknet_data(&d.join("v.data")).unwrap_err()
        );
        assert!(e.contains("a.txt:1"), "{e}");
        // A missing label file: no objects, reported to the caller.
        std::fs::remove_file(d.join("b.txt")).unwrap();
        std::fs::write(d.join("a.txt"), "").unwrap();
        let ds = Dataset::from_darknet_data(&d.join("v.data")).unwrap();
        // Found nowhere: named as the list has it.
        assert_eq!(ds.missing_labels, vec![PathBuf::from("b.txt")]);
        assert!(ds.images.iter().all(|im| im.boxes.is_empty()));
        let e = format!(
            "{:#}",
            Dataset::from_darknet_data(&d.join("missing.data")).unwrap_err()
        );
        assert!(e.contains("missing.data"), "{e}");
    }

    #[test]
    fn difficult_list_and_voc_layout() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "VOC/JPEGImages",
            "VOC/labels",
            "DIF/JPEGImages",
            "DIF/labels",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        image::RgbImage::new(8, 4)
            .save(d.join("VOC/JPEGImages/a.jpg"))
            .unwrap();
        std::fs::write(d.join("VOC/labels/a.txt"), "0 0.5 0.5 0.5 0.5\n").unwrap();
        // Darknet reads only the label file of the difficult path; the image need not exist.
        std::fs::write(d.join("DIF/labels/a.txt"), "0 0.25 0.25 0.5 0.5\n").unwrap();
        let list = d.join("valid.txt");
        std::fs::write(
            &list,
            format!("{}\n", d.join("VOC/JPEGImages/a.jpg").display()),
        )
        .unwrap();
        let dif = d.join("dif.txt");
        std::fs::write(
            &dif,
            format!("{}\n", d.join("DIF/JPEGImages/a.jpg").display()),
        )
        .unwrap();
        let ds = Dataset::from_darknet_list(&list, Some(&dif), vec!["x".into()]).unwrap();
        let b = &ds.images[0].boxes;
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].difficult, b[1].difficult), (false, true));
        assert_eq!(b[1].bbox, [0.0, 0.0, 4.0, 2.0]);
        assert_eq!((b[0].id, b[1].id), (1, 2));
        std::fs::write(&dif, "").unwrap();
        let e = format!(
            "{:#}",
            Dataset::from_darknet_list(&list, Some(&dif), vec!["x".into()]).unwrap_err()
        );
        assert!(e.contains("dif.txt has 0 entries"), "{e}");
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

#[cfg(test)]
mod darknet_layout_tests {
    use super::*;

    /// A COCO json written in Darknet's layout reads back with the same boxes (crowd left out), so training on a
    /// COCO json sees exactly its annotations.
    #[test]
    fn coco_json_round_trips_through_darknet_layout() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("a.jpg");
        image::RgbImage::new(200, 100).save(&img).unwrap();
        let json = d.path().join("gt.json");
        std::fs::write(
            &json,
            r#"{"images":[{"id":7,"width":200,"height":100,"file_name":"a.jpg"}],
                "categories":[{"id":3,"name":"car"},{"id":1,"name":"person"}],
                "annotations":[{"id":1,"image_id":7,"category_id":3,"bbox":[10,20,50,40],"area":2000,"iscrowd":0},
                               {"id":2,"image_id":7,"category_id":1,"bbox":[0,0,100,100],"area":10000,"iscrowd":1},
                               {"id":3,"image_id":7,"category_id":1,"bbox":[100,50,20,10],"area":200,"iscrowd":0}]}"#,
        )
        .unwrap();
        let ds = Dataset::from_coco_json(&json, Some(d.path()), None).unwrap();
        let data = ds.write_darknet(&d.path().join("out")).unwrap();
        let back = Dataset::from_darknet_data(&data).unwrap();
        assert_eq!(back.classes, vec!["person".to_string(), "car".to_string()]);
        assert_eq!(back.images.len(), 1);
        let got: Vec<(usize, [f32; 4])> = back.images[0]
            .boxes
            .iter()
            .map(|b| (b.class, b.bbox_rel))
            .collect();
        // Classes are the json's categories sorted by id: person = 0, car = 1; the crowd box is gone.
        let want = [
            (1usize, [35.0 / 200.0, 40.0 / 100.0, 0.25, 0.4]),
            (0, [110.0 / 200.0, 55.0 / 100.0, 0.1, 0.1]),
        ];
        assert_eq!(got.len(), 2, "{got:?}");
        for ((c, b), (wc, wb)) in got.iter().zip(want) {
            assert_eq!(*c, wc);
            for k in 0..4 {
                assert!((b[k] - wb[k]).abs() < 1e-6, "{got:?}");
            }
        }
    }
}
