//! Label files: `replace_image_to_label` (src/utils.c) and `read_boxes` (src/data.c), with the strict line
//! rules of the module policy.

use std::path::Path;

use super::error::{read_text, DatasetError, DatasetErrorKind};

/// One label line: `class xc yc w h`, relative to the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelBox {
    pub class: usize,
    /// `[xc, yc, w, h]`, exactly as read (f32, correctly rounded like `strtof`).
    pub bbox: [f32; 4],
    /// 1-based line in the label file.
    pub line: usize,
}

/// `find_replace`: the first occurrence of `orig` replaced.
fn find_replace(s: &str, orig: &str, rep: &str) -> String {
    s.replacen(orig, rep, 1)
}

/// `find_replace_extension`: `orig` replaced only when its last occurrence ends the string.
fn find_replace_extension(s: &str, orig: &str, rep: &str) -> String {
    match s.strip_suffix(orig) {
        Some(stem) => format!("{stem}{rep}"),
        None => s.to_string(),
    }
}

/// `replace_image_to_label` of `src/utils.c` (59596d7): the COCO `images/{train,val}{2014,2017}/` and VOC
/// `JPEGImages/` directories become `labels/` (first occurrence each, both separators), spaces/tabs trimmed,
/// and the image extension (jpg, jpeg, png, bmp, ppm, tiff; lower or upper case) becomes `.txt`. The generic
/// `/images/` → `/labels/` is commented out in that commit, so other layouts keep labels beside the images.
pub fn replace_image_to_label(path: &str) -> String {
    let mut s = find_replace(path, "/images/train2017/", "/labels/train2017/");
    for (o, r) in [
        ("/images/val2017/", "/labels/val2017/"),
        ("/JPEGImages/", "/labels/"),
        ("\\images\\train2017\\", "\\labels\\train2017\\"),
        ("\\images\\val2017\\", "\\labels\\val2017\\"),
        ("\\images\\train2014\\", "\\labels\\train2014\\"),
        ("\\images\\val2014\\", "\\labels\\val2014\\"),
        ("/images/train2014/", "/labels/train2014/"),
        ("/images/val2014/", "/labels/val2014/"),
        ("\\JPEGImages\\", "\\labels\\"),
    ] {
        s = find_replace(&s, o, r);
    }
    let mut s = s.trim_matches(|c| c == ' ' || c == '\t').to_string();
    for ext in [
        ".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".ppm", ".PPM", ".tiff",
        ".TIFF",
    ] {
        s = find_replace_extension(&s, ext, ".txt");
    }
    s
}

/// One line `class xc yc w h` of `file` (1-based `line`).
fn parse_line(
    fields: &[&str],
    text: &str,
    file: &Path,
    line: usize,
    classes: Option<usize>,
) -> Result<LabelBox, DatasetError> {
    let err = |kind| DatasetError::at(file, line, kind);
    if fields.len() != 5 {
        return Err(err(DatasetErrorKind::LabelFields(text.to_string())));
    }
    let class: usize = fields[0]
        .parse()
        .map_err(|_| err(DatasetErrorKind::BadClassId(fields[0].to_string())))?;
    // Without a class count, ids are still bounded: callers size per-class tables by the largest id.
    let classes = Some(classes.unwrap_or(crate::limits::MAX_CLASSES));
    if let Some(classes) = classes.filter(|&c| class >= c) {
        return Err(err(DatasetErrorKind::ClassOutOfRange { class, classes }));
    }
    let mut bbox = [0f32; 4];
    for (v, f) in bbox.iter_mut().zip(&fields[1..]) {
        *v = f
            .parse()
            .map_err(|_| err(DatasetErrorKind::BadNumber(f.to_string())))?;
        if !v.is_finite() {
            return Err(err(DatasetErrorKind::NonFinite(f.to_string())));
        }
    }
    Ok(LabelBox { class, bbox, line })
}

/// `read_boxes`' loop on the text of label file `file`: every non-blank line one box (module policy);
/// `classes`, when known, bounds the class ids.
pub fn parse_labels(
    text: &str,
    file: &Path,
    classes: Option<usize>,
) -> Result<Vec<LabelBox>, DatasetError> {
    let mut boxes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields.is_empty() {
            boxes.push(parse_line(&fields, line, file, n + 1, classes)?);
        }
    }
    Ok(boxes)
}

/// `read_boxes`: the boxes of label file `path`, or `None` when it does not exist (no objects; Darknet
/// prints "Can't open label file", we leave the warning to the caller).
pub fn read_labels(
    path: &Path,
    classes: Option<usize>,
) -> Result<Option<Vec<LabelBox>>, DatasetError> {
    match read_text(path) {
        Ok(text) => parse_labels(&text, path, classes).map(Some),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_paths_like_darknet() {
        assert_eq!(
            replace_image_to_label("/d/coco/images/val2017/0001.jpg"),
            "/d/coco/labels/val2017/0001.txt"
        );
        assert_eq!(
            replace_image_to_label("/d/VOC2007/JPEGImages/0001.JPEG"),
            "/d/VOC2007/labels/0001.txt"
        );
        // Generic images/ is not replaced in 59596d7.
        assert_eq!(
            replace_image_to_label("data/obj/images/a.png"),
            "data/obj/images/a.txt"
        );
        // Only a trailing extension is replaced.
        assert_eq!(replace_image_to_label("x.jpg.d/a.bmp"), "x.jpg.d/a.txt");
        assert_eq!(replace_image_to_label("  a.tiff\t"), "a.txt");
        assert_eq!(replace_image_to_label("a.gif"), "a.gif");
    }

    #[test]
    fn label_lines_are_strict_and_errors_say_where() {
        let f = Path::new("l.txt");
        let b = parse_labels("1 0.5 0.25 0.1 0.2\n\n  \n0 1 1 1 1\n", f, Some(2)).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            LabelBox {
                class: 1,
                bbox: [0.5, 0.25, 0.1, 0.2],
                line: 1
            }
        );
        assert_eq!(b[1].line, 4);
        let kind = |t: &str, c| parse_labels(t, f, c).unwrap_err();
        let e = kind("0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n", Some(2));
        assert_eq!(e.line, Some(2));
        assert!(matches!(
            e.kind,
            DatasetErrorKind::ClassOutOfRange {
                class: 2,
                classes: 2
            }
        ));
        assert!(e.to_string().starts_with("l.txt:2: class id 2"), "{e}");
        // Without a class count any id below the limit is accepted.
        assert!(parse_labels("7 0.5 0.5 0.1 0.1\n", f, None).is_ok());
        assert!(matches!(
            kind("1000000000 0.5 0.5 0.1 0.1\n", None).kind,
            DatasetErrorKind::ClassOutOfRange { .. }
        ));
        assert!(matches!(
            kind("0 0.5 0.5 0.1\n", None).kind,
            DatasetErrorKind::LabelFields(_)
        ));
        assert!(matches!(
            kind("0 0.5 0.5 0.1 0.1 9\n", None).kind,
            DatasetErrorKind::LabelFields(_)
        ));
        assert!(matches!(
            kind("-1 0.5 0.5 0.1 0.1\n", None).kind,
            DatasetErrorKind::BadClassId(_)
        ));
        assert!(matches!(
            kind("0 0.5 x 0.1 0.1\n", None).kind,
            DatasetErrorKind::BadNumber(_)
        ));
        assert!(matches!(
            kind("0 0.5 inf 0.1 0.1\n", None).kind,
            DatasetErrorKind::NonFinite(_)
        ));
    }

    #[test]
    fn missing_label_file_is_none_other_errors_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_labels(&dir.path().join("no.txt"), None).unwrap(), None);
        // A directory cannot be read as a label file: an error, not "no objects".
        assert!(read_labels(dir.path(), None).is_err());
        std::fs::write(dir.path().join("e.txt"), "").unwrap();
        assert_eq!(
            read_labels(&dir.path().join("e.txt"), None).unwrap(),
            Some(vec![])
        );
    }
}
