//! The hierarchical softmax tree of `[region] tree=` (yolo9000): mirrors `read_tree` and
//! `hierarchy_predictions` (src/tree.c) and `softmax_tree` (src/softmax_layer.c).
//!
//! A tree file has one node per line, `<id> <parent index>` (parent -1 for a root). Consecutive nodes with the
//! same parent form a group; the region layer applies a softmax within each group, and the decoder multiplies
//! each node's probability by its parent's (so a node holds the absolute probability of its path).

use std::path::{Path, PathBuf};

/// `tree` of src/tree.h (the fields inference reads).
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// The file it was read from.
    pub file: PathBuf,
    /// Node names (`t.name`).
    pub names: Vec<String>,
    /// Parent of each node, -1 for a root (`t.parent`).
    pub parent: Vec<i32>,
    /// Consecutive (offset, size) of every group (`t.group_offset`, `t.group_size`).
    pub groups: Vec<(usize, usize)>,
}

/// Why a tree file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: parent {parent} of node {node} is not an earlier node", file.display())]
    BadParent {
        file: PathBuf,
        line: usize,
        node: usize,
        parent: i64,
    },
}

impl Tree {
    /// `read_tree`: nodes in file order, a new group whenever the parent changes from the previous line's.
    pub fn read(file: &Path) -> Result<Tree, TreeError> {
        let text = std::fs::read_to_string(file).map_err(|source| TreeError::Io {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(&text, file)
    }

    /// [`Self::read`] on text already in memory; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Tree, TreeError> {
        let mut names = Vec::new();
        let mut parent = Vec::new();
        let mut groups = Vec::new();
        // read_tree starts with last_parent = -1 and group_size = 0, so the roots form group 0.
        let mut last_parent = -1i64;
        let mut group_size = 0usize;
        for (i, line) in text.lines().enumerate() {
            let mut it = line.split_whitespace();
            let id = it.next().unwrap_or("").to_string();
            // `sscanf("%s %d")` leaves parent at -1 when the number is missing.
            let p: i64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(-1);
            let n = names.len();
            // Darknet does not check this; a later or out-of-range parent would read past its arrays.
            if p >= n as i64 || p < -1 {
                return Err(TreeError::BadParent {
                    file: file.to_path_buf(),
                    line: i + 1,
                    node: n,
                    parent: p,
                });
            }
            if p != last_parent {
                groups.push((n - group_size, group_size));
                group_size = 0;
                last_parent = p;
            }
            names.push(id);
            parent.push(p as i32);
            group_size += 1;
        }
        groups.push((names.len() - group_size, group_size));
        Ok(Tree {
            file: file.to_path_buf(),
            names,
            parent,
            groups,
        })
    }

    /// Number of nodes (`t.n`).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `softmax_tree(input, 1, 0, 1, tree, output)`: Darknet's `softmax` (src/blas.c) within each group, in place.
    pub fn softmax(&self, x: &mut [f32]) {
        for &(offset, size) in &self.groups {
            softmax_darknet(&mut x[offset..offset + size]);
        }
    }

    /// `hierarchy_predictions(predictions, n, tree, 0)`: each node times its parent, in node order (a parent
    /// always comes first, so it already holds its path's probability).
    pub fn hierarchy_predictions(&self, p: &mut [f32]) {
        for j in 0..p.len().min(self.parent.len()) {
            if let Ok(parent) = usize::try_from(self.parent[j]) {
                p[j] *= p[parent];
            }
        }
    }
}

/// `softmax(input, n, temp=1, output, stride=1)` of src/blas.c: `e = exp(x - largest)` (C's double `exp` of
/// a float difference, stored as float), float sum, then each divided by the sum.
pub fn softmax_darknet(x: &mut [f32]) {
    let largest = x
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        let e = f64::from(*v - largest).exp() as f32;
        sum += e;
        *v = e;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_parent_changes() {
        let t = Tree::parse("a -1\nb -1\nc 0\nd 0\ne 1\nf 2\n", Path::new("t")).unwrap();
        assert_eq!(t.groups, vec![(0, 2), (2, 2), (4, 1), (5, 1)]);
        let mut p = vec![0.5, 0.5, 0.2, 0.8, 1.0, 0.5];
        t.hierarchy_predictions(&mut p);
        assert_eq!(p, vec![0.5, 0.5, 0.1, 0.4, 0.5, 0.05]);
        let mut s = vec![0.0, 0.0, 1.0, 1.0, 3.0, -2.0];
        t.softmax(&mut s);
        assert_eq!(s, vec![0.5, 0.5, 0.5, 0.5, 1.0, 1.0]);
    }

    #[test]
    fn a_forward_parent_is_an_error_with_its_line() {
        let e = Tree::parse("a -1\nb 5\n", Path::new("t.tree")).unwrap_err();
        assert!(e.to_string().starts_with("t.tree:2:"), "{e}");
    }
}
