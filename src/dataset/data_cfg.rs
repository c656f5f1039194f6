//! The `.data` file: Darknet's `read_data_cfg` / `read_option` (src/option_list.c) and `option_find`.

use std::path::{Path, PathBuf};

use super::error::{darknet_lines, read_text, DatasetError, DatasetErrorKind};
use super::list::resolve_in;

/// The options of a Darknet `.data` file: key/value pairs in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataCfg {
    pub path: PathBuf,
    pub options: Vec<(String, String)>,
}

/// `read_data_cfg`'s line: every whitespace character removed (Darknet's `strip`).
fn strip(line: &str) -> String {
    line.chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
        .collect()
}

fn is_comment_or_blank(stripped: &str) -> bool {
    stripped.is_empty() || stripped.starts_with('#') || stripped.starts_with(';')
}

/// Whether `path` is a `.data` file rather than an image list (see the module policy): its extension is
/// `.data`, or its first line that is not blank or a comment contains `=`.
pub fn is_data_file(path: &Path) -> Result<bool, DatasetError> {
    if path.extension().is_some_and(|e| e == "data") {
        return Ok(true);
    }
    let text = read_text(path)?;
    let first = darknet_lines(&text)
        .map(strip)
        .find(|l| !is_comment_or_blank(l));
    Ok(first.is_some_and(|l| l.contains('=')))
}

impl DataCfg {
    /// `read_data_cfg`: whitespace stripped from each line, blank/`#`/`;` lines skipped, `key=value` required
    /// (an error naming file:line; Darknet prints "Config file error" and goes on).
    pub fn read(path: &Path) -> Result<DataCfg, DatasetError> {
        let text = read_text(path)?;
        let mut options = Vec::new();
        for (n, line) in darknet_lines(&text).enumerate() {
            let line = strip(line);
            if is_comment_or_blank(&line) {
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) if !v.is_empty() => options.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(DatasetError::at(
                        path,
                        n + 1,
                        DatasetErrorKind::ExpectedKeyValue(line),
                    ))
                }
            }
        }
        Ok(DataCfg {
            path: path.to_path_buf(),
            options,
        })
    }

    /// `option_find`: the first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `option_find_int(options, "classes", default)`: an error when the value is not a number.
    pub fn classes(&self) -> Result<Option<usize>, DatasetError> {
        let Some(v) = self.get("classes") else {
            return Ok(None);
        };
        v.parse().map(Some).map_err(|_| {
            DatasetError::new(
                &self.path,
                None,
                DatasetErrorKind::BadValue {
                    key: "classes".into(),
                    value: v.into(),
                },
            )
        })
    }

    /// A path named in this file, resolved by the module's rule (as given, else beside the `.data` file).
    pub fn resolve(&self, p: &str) -> PathBuf {
        resolve_in(p, &[self.dir()])
    }

    /// The training list: `train=`, default `data/train.txt` (`train_detector`).
    pub fn train_list(&self) -> PathBuf {
        self.resolve(self.get("train").unwrap_or("data/train.txt"))
    }

    /// The validation list: `valid=`, default the training list (`train_detector`).
    pub fn valid_list(&self) -> PathBuf {
        match self.get("valid") {
            Some(v) => self.resolve(v),
            None => self.train_list(),
        }
    }

    /// The class names file: `names=`, default `data/names.list`.
    pub fn names(&self) -> PathBuf {
        self.resolve(self.get("names").unwrap_or("data/names.list"))
    }

    /// The folder of the `.data` file (empty for a bare file name: the working directory).
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cfg_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.data");
        std::fs::write(
            &p,
            "valid = a b.txt\r\n;c\nvalid=second\n\nnames=n\nclasses = 3\n",
        )
        .unwrap();
        let c = DataCfg::read(&p).unwrap();
        // All whitespace removed; the first key wins.
        assert_eq!(c.get("valid"), Some("ab.txt"));
        assert_eq!(c.get("names"), Some("n"));
        assert_eq!(c.classes().unwrap(), Some(3));
        // Defaults: train = data/train.txt, valid = train.
        assert_eq!(c.train_list(), PathBuf::from("data/train.txt"));
        std::fs::write(&p, "train = t.txt\n").unwrap();
        let c = DataCfg::read(&p).unwrap();
        assert_eq!(c.valid_list(), c.train_list());
        assert_eq!(c.names(), PathBuf::from("data/names.list"));
        std::fs::write(&p, "valid\n").unwrap();
        let e = DataCfg::read(&p).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.to_string().contains("x.data:1"), "{e}");
        assert!(matches!(e.kind, DatasetErrorKind::ExpectedKeyValue(_)));
        std::fs::write(&p, "classes = many\n").unwrap();
        let e = DataCfg::read(&p).unwrap().classes().unwrap_err();
        assert!(matches!(e.kind, DatasetErrorKind::BadValue { .. }), "{e}");
    }

    #[test]
    fn data_file_detection() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
        std::fs::write(&a, "# c\n\nclasses = 2\ntrain = x\n").unwrap();
        std::fs::write(&b, "img/x.jpg\n").unwrap();
        assert!(is_data_file(&a).unwrap());
        assert!(!is_data_file(&b).unwrap());
        assert!(is_data_file(Path::new("never/read.data")).unwrap());
    }
}
