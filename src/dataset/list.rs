//! Image lists and class-name lists (`get_paths`, `get_labels_custom` in src/data.c), and the rule that
//! resolves the relative paths they hold (see the module policy in [`crate::dataset`]).

use std::path::{Path, PathBuf};

use super::data_cfg::{is_data_file, DataCfg};
use super::error::{darknet_lines, read_text, DatasetError};
use super::labels::replace_image_to_label;

/// A relative path `p`: as given when it exists from the working directory (Darknet), else the first
/// `base/p` that exists, else `p` as given (so the error names what the file says). Absolute paths as given.
pub fn resolve_in(p: &str, bases: &[PathBuf]) -> PathBuf {
    let given = PathBuf::from(p);
    if given.is_absolute() || given.exists() {
        return given;
    }
    bases
        .iter()
        .map(|b| b.join(&given))
        .find(|c| c.exists())
        .unwrap_or(given)
}

/// The folders relative paths of one list are tried under, after the working directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolver {
    pub bases: Vec<PathBuf>,
}

impl Resolver {
    /// Relative paths resolve under `dir` (after the working directory).
    pub fn under(dir: impl Into<PathBuf>) -> Self {
        Resolver {
            bases: vec![dir.into()],
        }
    }

    pub fn resolve(&self, p: &str) -> PathBuf {
        resolve_in(p, &self.bases)
    }
}

/// `get_paths`: one entry per line, `\r` removed; blank lines skipped (module policy).
pub fn read_list(path: &Path) -> Result<Vec<String>, DatasetError> {
    let text = read_text(path)?;
    Ok(darknet_lines(&text)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// Class names, one per line (`get_labels_custom`): every line kept (an empty line is a class named ""),
/// `\r` removed, nothing after a final newline.
pub fn read_names(path: &Path) -> Result<Vec<String>, DatasetError> {
    let text = read_text(path)?;
    Ok(darknet_lines(&text).map(str::to_string).collect())
}

fn parent_dir(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// An image list with the resolver for its paths: the training or validation split of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageList {
    /// The list file.
    pub list: PathBuf,
    /// The paths exactly as written (they name the label files and seed Darknet's track ids).
    pub paths: Vec<String>,
    pub resolver: Resolver,
}

impl ImageList {
    /// Reads `list`; its relative paths resolve (after the working directory) under `data_dir` (the folder
    /// of the `.data` file that named the list, if any) and then under the list's folder.
    pub fn read(list: &Path, data_dir: Option<&Path>) -> Result<Self, DatasetError> {
        let paths = read_list(list)?;
        let mut bases: Vec<PathBuf> = data_dir.map(Path::to_path_buf).into_iter().collect();
        let own = parent_dir(list);
        if !bases.contains(&own) {
            bases.push(own);
        }
        Ok(ImageList {
            list: list.to_path_buf(),
            paths,
            resolver: Resolver { bases },
        })
    }

    /// The `train=` list of a `.data` file.
    pub fn train_of(data: &DataCfg) -> Result<Self, DatasetError> {
        Self::read(&data.train_list(), Some(&data.dir()))
    }

    /// The `valid=` list of a `.data` file.
    pub fn valid_of(data: &DataCfg) -> Result<Self, DatasetError> {
        Self::read(&data.valid_list(), Some(&data.dir()))
    }

    /// A `.data` file's training list, or `path` itself when it is an image list; with the `.data` options.
    pub fn open_train(path: &Path) -> Result<(Self, Option<DataCfg>), DatasetError> {
        if is_data_file(path)? {
            let data = DataCfg::read(path)?;
            Ok((Self::train_of(&data)?, Some(data)))
        } else {
            Ok((Self::read(path, None)?, None))
        }
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The `i`-th image file.
    pub fn image(&self, i: usize) -> PathBuf {
        self.resolver.resolve(&self.paths[i])
    }

    /// The `i`-th label file: `replace_image_to_label` of the path as written, resolved like the image.
    pub fn label(&self, i: usize) -> PathBuf {
        self.resolver
            .resolve(&replace_image_to_label(&self.paths[i]))
    }

    /// The label files that do not exist (their images have no objects; the caller warns).
    pub fn missing_labels(&self) -> Vec<PathBuf> {
        (0..self.len())
            .map(|i| self.label(i))
            .filter(|l| !l.exists())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_skip_blank_lines_and_names_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.txt");
        std::fs::write(&p, "a.jpg\r\n\n  \nb.jpg").unwrap();
        assert_eq!(read_list(&p).unwrap(), vec!["a.jpg", "b.jpg"]);
        std::fs::write(&p, "x\r\n\ny\n").unwrap();
        assert_eq!(read_names(&p).unwrap(), vec!["x", "", "y"]);
        assert!(read_names(&dir.path().join("missing"))
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn relative_paths_resolve_by_one_rule() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Darknet's layout: obj.data at the root, the list in lists/ naming root-relative images.
        std::fs::create_dir_all(d.join("lists")).unwrap();
        std::fs::create_dir_all(d.join("obj")).unwrap();
        std::fs::write(d.join("obj/a.jpg"), "").unwrap();
        std::fs::write(d.join("lists/b.jpg"), "").unwrap();
        std::fs::write(d.join("lists/train.txt"), "obj/a.jpg\nb.jpg\nnone.jpg\n").unwrap();
        std::fs::write(d.join("obj.data"), "train = lists/train.txt\n").unwrap();
        let (list, data) = ImageList::open_train(&d.join("obj.data")).unwrap();
        assert!(data.is_some());
        assert_eq!(list.image(0), d.join("obj/a.jpg"));
        assert_eq!(list.image(1), d.join("lists/b.jpg"));
        // Found nowhere: as written.
        assert_eq!(list.image(2), PathBuf::from("none.jpg"));
        assert_eq!(list.label(0), PathBuf::from("obj/a.txt"));
        assert_eq!(list.missing_labels().len(), 3);
        std::fs::write(d.join("obj/a.txt"), "").unwrap();
        assert_eq!(list.label(0), d.join("obj/a.txt"));
        assert_eq!(list.missing_labels().len(), 2);
        // The list itself: relative to its own folder only.
        let (direct, data) = ImageList::open_train(&d.join("lists/train.txt")).unwrap();
        assert!(data.is_none());
        assert_eq!(direct.image(1), d.join("lists/b.jpg"));
        assert_eq!(direct.image(0), PathBuf::from("obj/a.jpg"));
    }
}
