//! The cfg text format, as Darknet's `read_cfg` (src/parser.c) and `read_option` / `option_find*`
//! (src/option_list.c) read it.
//!
//! Darknet strips *every* whitespace character from a line before looking at it, so `filters = 255` and
//! `filters=255` are the same; a line starting with `#` or `;` is a comment; `[name]` opens a section; anything
//! else is `key=value`. When a key occurs twice, `option_find` returns the first occurrence. Numbers are read
//! with C's `atoi`/`atof`, which parse the longest valid prefix (so `0.5#note` reads as 0.5) and give 0 for
//! garbage; we keep that prefix rule but report a value with no numeric prefix at all as an error with its line.
//! Deliberate difference: a line that is not `key=value` is an error (Darknet prints a message and goes on).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use super::error::{CfgError, CfgErrorKind, CfgResult};

/// One `key=value` line of a section.
#[derive(Debug, Clone)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub line: usize,
    used: Cell<bool>,
}

/// One `[type]` section with its options, in file order.
#[derive(Debug, Clone)]
pub struct Section {
    /// Section name without brackets, e.g. `convolutional`.
    pub name: String,
    pub line: usize,
    pub options: Vec<KeyValue>,
    /// The file the section came from, for error messages.
    pub file: PathBuf,
}

/// Splits cfg text into sections (`read_cfg`). `file` only names the source in errors.
pub fn read_cfg(text: &str, file: &Path) -> CfgResult<Vec<Section>> {
    let err = |line: usize, kind: CfgErrorKind| Err(CfgError::new(file, line, kind));
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        // `strip` in src/utils.c removes spaces, tabs and line ends anywhere in the line.
        let line: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
            .collect();
        match line.chars().next() {
            None | Some('#') | Some(';') => continue,
            Some('[') => {
                let Some(end) = line.find(']') else {
                    return err(line_no, CfgErrorKind::UnclosedSection(raw.to_string()));
                };
                sections.push(Section {
                    name: line[1..end].to_string(),
                    line: line_no,
                    options: Vec::new(),
                    file: file.to_path_buf(),
                });
            }
            Some(_) => {
                let Some(eq) = line.find('=') else {
                    return err(line_no, CfgErrorKind::NotKeyValue(raw.to_string()));
                };
                let Some(section) = sections.last_mut() else {
                    return err(line_no, CfgErrorKind::OptionBeforeSection(raw.to_string()));
                };
                section.options.push(KeyValue {
                    key: line[..eq].to_string(),
                    value: line[eq + 1..].to_string(),
                    line: line_no,
                    used: Cell::new(false),
                });
            }
        }
    }
    Ok(sections)
}

impl Section {
    /// `file:line` of this section's header, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// `option_find`: the first value for `key`, marking it used.
    pub fn find(&self, key: &str) -> Option<&KeyValue> {
        let kv = self.options.iter().find(|kv| kv.key == key)?;
        kv.used.set(true);
        Some(kv)
    }

    pub fn str_or(&self, key: &str, default: &str) -> String {
        self.find(key)
            .map(|kv| kv.value.clone())
            .unwrap_or_else(|| default.to_string())
    }

    pub fn str_opt(&self, key: &str) -> Option<String> {
        self.find(key).map(|kv| kv.value.clone())
    }

    /// `option_find_int`: C `atoi` of the value, or `default` when absent.
    pub fn int_or(&self, key: &str, default: i64) -> CfgResult<i64> {
        match self.find(key) {
            None => Ok(default),
            Some(kv) => {
                let v = atoi(&kv.value).ok_or_else(|| self.bad_value(kv, "an integer"))?;
                self.check_int(kv, v)
            }
        }
    }

    /// Darknet reads every cfg integer into a C `int`; beyond it `atoi` is undefined, so we refuse.
    fn check_int(&self, kv: &KeyValue, v: i64) -> CfgResult<i64> {
        if !(crate::limits::CFG_INT_MIN..=crate::limits::CFG_INT_MAX).contains(&v) {
            return Err(self.bad_value(
                kv,
                "an integer within Darknet's int range (-2147483648..=2147483647)",
            ));
        }
        Ok(v)
    }

    /// `option_find_float`: C `atof` of the value (as f32, like Darknet), or `default` when absent.
    pub fn float_or(&self, key: &str, default: f32) -> CfgResult<f32> {
        match self.find(key) {
            None => Ok(default),
            Some(kv) => atof(&kv.value)
                .map(|v| v as f32)
                .ok_or_else(|| self.bad_value(kv, "a number")),
        }
    }

    /// A comma-separated list of integers (`layers=-1,61`), each read with `atoi` as `parse_route` does.
    pub fn int_list(&self, key: &str) -> CfgResult<Option<Vec<i64>>> {
        let Some(kv) = self.find(key) else {
            return Ok(None);
        };
        let body = kv.value.split('#').next().unwrap_or("");
        body.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let v = atoi(s).ok_or_else(|| self.bad_value(kv, "a list of integers"))?;
                self.check_int(kv, v)
            })
            .collect::<CfgResult<Vec<_>>>()
            .map(Some)
    }

    /// A comma-separated list of floats (`anchors=...`, `scales=...`), stopping at `#` as Darknet's counters do.
    pub fn float_list(&self, key: &str) -> CfgResult<Option<Vec<f32>>> {
        let Some(kv) = self.find(key) else {
            return Ok(None);
        };
        let body = kv.value.split('#').next().unwrap_or("");
        body.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                atof(s)
                    .map(|v| v as f32)
                    .ok_or_else(|| self.bad_value(kv, "a list of numbers"))
            })
            .collect::<CfgResult<Vec<_>>>()
            .map(Some)
    }

    fn bad_value(&self, kv: &KeyValue, expected: &'static str) -> CfgError {
        self.error_at(
            kv.line,
            CfgErrorKind::BadValue {
                section: self.name.clone(),
                key: kv.key.clone(),
                value: kv.value.clone(),
                expected,
            },
        )
    }

    /// An error at `line` of this section's file.
    pub fn error_at(&self, line: usize, kind: CfgErrorKind) -> CfgError {
        CfgError::new(&self.file, line, kind)
    }

    /// An error at this section's `[header]` line.
    pub fn error(&self, kind: CfgErrorKind) -> CfgError {
        self.error_at(self.line, kind)
    }

    /// [`CfgErrorKind::Invalid`] at the line of `key` (the section's header when the key is absent).
    pub fn at_key(&self, key: &str, message: impl Into<String>) -> CfgError {
        let line = self
            .options
            .iter()
            .find(|kv| kv.key == key)
            .map_or(self.line, |kv| kv.line);
        self.error_at(
            line,
            CfgErrorKind::Invalid {
                section: self.name.clone(),
                message: message.into(),
            },
        )
    }

    /// [`CfgErrorKind::Invalid`] at this section's header: `file:line: [name] message`.
    pub fn invalid(&self, message: impl Into<String>) -> CfgError {
        self.error(CfgErrorKind::Invalid {
            section: self.name.clone(),
            message: message.into(),
        })
    }

    /// The options no parser asked for (Darknet's `option_unused`), as `file:line: ...` warnings.
    pub fn unused_warnings(&self) -> Vec<String> {
        self.options
            .iter()
            .filter(|kv| !kv.used.get())
            .map(|kv| {
                format!(
                    "{}:{}: warning: unused key '{}' in [{}] (not read by Darknet's parser for this layer type)",
                    self.file.display(),
                    kv.line,
                    kv.key,
                    self.name
                )
            })
            .collect()
    }
}

/// C `atoi`: optional sign and the longest run of digits; `None` when there is no digit at all.
pub fn atoi(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    let neg = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut v: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add((b[i] - b'0') as i64);
        i += 1;
    }
    if i == start {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// C `atof` (decimal forms only): the longest prefix that parses as a number; `None` when there is none.
pub fn atof(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut end = 0;
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let mut digits = false;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits = true;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits = true;
        }
    }
    if !digits {
        return None;
    }
    end = end.max(i);
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        let exp_start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_start {
            end = j;
        }
    }
    s[..end].parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_whitespace_and_comments_like_read_cfg() {
        let text = "[net]\n# c\n width = 416 \n;x\n\n[convolutional]\nfilters=3 2\nactivation = leaky\nfilters=9\n";
        let s = read_cfg(text, Path::new("t.cfg")).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].int_or("width", 0).unwrap(), 416);
        // "3 2" becomes "32" after Darknet's strip; the first occurrence wins.
        assert_eq!(s[1].int_or("filters", 1).unwrap(), 32);
        assert_eq!(s[1].str_or("activation", "logistic"), "leaky");
        assert_eq!(s[1].options[0].line, 7);
    }

    #[test]
    fn atoi_atof_prefix_rules() {
        assert_eq!(atoi("-12abc"), Some(-12));
        assert_eq!(atoi("abc"), None);
        assert_eq!(atof(".5#x"), Some(0.5));
        assert_eq!(atof("1e-3"), Some(1e-3));
        assert_eq!(atof("2e"), Some(2.0));
        assert_eq!(atof("x"), None);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let err = read_cfg("[net]\nwidth\n", Path::new("bad.cfg"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.cfg:2"), "{err}");
    }
}
