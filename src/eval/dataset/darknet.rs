//! Darknet `.data` / image lists → [`Dataset`] (read by [`crate::dataset`]), Darknet's `difficult=` list, and
//! the way back: a dataset written in Darknet's layout for the training loader.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{read_names, Dataset, GtBox, ImageEntry, COCO80_CATEGORY_IDS};
use crate::dataset::{read_labels, DataCfg, ImageList};

impl Dataset {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
