//! `[region]` (YOLOv2 head): mirrors `parse_region` (src/parser.c) and, at inference, the CPU branch of
//! `forward_region_layer` (src/region_layer.c):
//! the output is first `flatten`ed to location-major order (for each cell, for each anchor: coords, obj,
//! classes), then `obj ← logistic(obj)` and, with `softmax=1`, the classes ← softmax. x, y, w, h stay raw here;
//! the decoder (`crate::detect::region_boxes`, Darknet's `custom_get_region_detections`) applies the box
//! transform. With `tree=` (yolo9000) the classes get `softmax_tree` (one softmax per group of the tree,
//! [`super::softmax_tree`]) instead, whatever `softmax=` says, as in the C.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

use super::activation::logistic;
use super::softmax_tree::Tree;
use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::{CfgErrorKind, CfgResult};
use crate::cfg::options::{anchor_pairs, read_inert, usize_of};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::graph::{int, ints};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[region]` (`parse_region`): the YOLOv2 head.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionConfig {
    pub classes: usize,
    pub coords: usize,
    pub num: usize,
    pub anchors: Vec<(f32, f32)>,
    pub softmax: bool,
    pub max_boxes: usize,
    pub jitter: f32,
    pub rescore: bool,
    pub thresh: f32,
    pub absolute: bool,
    pub random: f32,
    pub coord_scale: f32,
    pub object_scale: f32,
    pub noobject_scale: f32,
    pub class_scale: f32,
    pub bias_match: bool,
    /// `classfix=-1`: `get_region_boxes` zeroes objectness below .5.
    pub classfix: i64,
    /// `tree=`: the hierarchical softmax tree (`read_tree`), read when the cfg is parsed.
    #[serde(serialize_with = "tree_file")]
    pub tree: Option<Arc<Tree>>,
}

fn tree_file<S: serde::Serializer>(
    t: &Option<Arc<Tree>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.file),
        None => s.serialize_none(),
    }
}

/// Where `tree=` points. Darknet opens the path relative to its working directory (it is run from the
/// repository root, so `data/9k.tree`); we try that, then the directory above the cfg's (Darknet's
/// `cfg/` + `data/` layout), then the cfg's own directory.
fn locate_tree(value: &str, cfg_file: &Path) -> Vec<PathBuf> {
    let p = PathBuf::from(value);
    if p.is_absolute() {
        return vec![p];
    }
    let mut c = vec![p.clone()];
    if let Some(dir) = cfg_file.parent() {
        if let Some(up) = dir.parent() {
            c.push(up.join(&p));
        }
        c.push(dir.join(&p));
    }
    c
}

fn read_region_tree(s: &Section, classes: usize) -> CfgResult<Option<Arc<Tree>>> {
    let Some(kv) = s.find("tree") else {
        return Ok(None);
    };
    let invalid = |message: String| {
        s.error_at(
            kv.line,
            CfgErrorKind::Invalid {
                section: s.name.clone(),
                message,
            },
        )
    };
    let candidates = locate_tree(&kv.value, &s.file);
    let Some(found) = candidates.iter().find(|p| p.is_file()) else {
        // Darknet's read_tree calls fgetl on the NULL FILE* and crashes.
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(invalid(format!(
            "tree file {} not found (looked at {})",
            kv.value,
            tried.join(", ")
        )));
    };
    let tree = Tree::read(found).map_err(|e| invalid(e.to_string()))?;
    if tree.len() != classes {
        return Err(invalid(format!(
            "tree {} has {} nodes but classes={classes}",
            found.display(),
            tree.len()
        )));
    }
    Ok(Some(Arc::new(tree)))
}

/// `parse_region`, each key with its Darknet default.
pub fn parse_region(s: &Section) -> CfgResult<RegionConfig> {
    let coords = usize_of(s.int_or("coords", 4)?, s, "coords", 4)?;
    let classes = usize_of(s.int_or("classes", 20)?, s, "classes", 0)?;
    let num = usize_of(s.int_or("num", 1)?, s, "num", 1)?;
    let max_boxes = usize_of(s.int_or("max", 200)?, s, "max", 1)?;
    let mut anchors = anchor_pairs(&s.float_list("anchors")?.unwrap_or_default(), s)?;
    anchors.truncate(num);
    anchors.resize(num, (0.0, 0.0));
    let tree = read_region_tree(s, classes)?;
    let cfg = RegionConfig {
        classes,
        coords,
        num,
        anchors,
        softmax: s.int_or("softmax", 0)? != 0,
        max_boxes,
        jitter: s.float_or("jitter", 0.2)?,
        rescore: s.int_or("rescore", 0)? != 0,
        thresh: s.float_or("thresh", 0.5)?,
        absolute: s.int_or("absolute", 0)? != 0,
        random: s.float_or("random", 0.0)?,
        coord_scale: s.float_or("coord_scale", 1.0)?,
        object_scale: s.float_or("object_scale", 1.0)?,
        noobject_scale: s.float_or("noobject_scale", 1.0)?,
        class_scale: s.float_or("class_scale", 1.0)?,
        bias_match: s.int_or("bias_match", 0)? != 0,
        classfix: s.int_or("classfix", 0)?,
        tree,
    };
    read_inert(
        s,
        &["log", "sqrt", "focal_loss", "resize", "mask_scale", "map"],
    );
    if coords != 4 {
        return Err(s.invalid(format!("coords={coords} is not supported (only 4)")));
    }
    Ok(cfg)
}

impl LayerType for RegionConfig {
    fn parse(s: &Section, _index: usize) -> CfgResult<Self> {
        parse_region(s)
    }

    fn type_name(&self) -> &'static str {
        "region"
    }

    /// `make_region_layer`: the input's shape, which must hold `num × (coords + 1 + classes)` channels.
    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        let want = self.num * (self.coords + 1 + self.classes);
        if i.c != want {
            return Err(format!(
                "input has {} channels but num x (coords + 1 + classes) = {want}",
                i.c
            ));
        }
        Ok(i)
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!("detection (region)            {}", io_shapes(l))
    }
}

#[derive(Debug, Clone)]
pub struct Region {
    pub cfg: RegionConfig,
}

impl Region {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let size = self.cfg.coords + 1 + self.cfg.classes;
        // flatten(output, h*w, size*n, batch, 1): (c, hw) -> (hw, c); c = n*size stays anchor-major.
        let t =
            x.reshape((b, c, h * w))?
                .transpose(1, 2)?
                .reshape((b, h * w, self.cfg.num, size))?;
        let coords = t.narrow(D::Minus1, 0, self.cfg.coords)?;
        let obj = logistic(&t.narrow(D::Minus1, self.cfg.coords, 1)?)?;
        let cls = t.narrow(D::Minus1, self.cfg.coords + 1, self.cfg.classes)?;
        let cls = if let Some(tree) = &self.cfg.tree {
            softmax_tree(&cls, tree)?
        } else if self.cfg.softmax {
            softmax_darknet(&cls)?
        } else {
            cls
        };
        Tensor::cat(&[coords, obj, cls], D::Minus1)?
            .reshape((b, h * w * c))?
            .reshape((b, c, h, w))
    }
}

/// `softmax_tree` on every (cell, anchor) row of classes: on the host, group by group.
fn softmax_tree(x: &Tensor, tree: &Tree) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let classes = *dims.last().unwrap_or(&0);
    let mut v = x
        .flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    for row in v.chunks_mut(classes.max(1)) {
        tree.softmax(row);
    }
    Tensor::from_vec(v, dims, x.device())?.to_dtype(x.dtype())
}

/// `softmax` in src/blas.c: exp(x - max) / sum, over the last dim.
fn softmax_darknet(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

impl DarknetLayer for Region {
    type Config = RegionConfig;

    fn load(cfg: &RegionConfig, _: &LayerSpec, _: &VarBuilder, _: &LoadOptions) -> Result<Self> {
        Ok(Region { cfg: cfg.clone() })
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Region::forward(self, x)
    }

    /// [`Region::forward`] in ONNX: Darknet's `flatten` (`[b, c, h·w]` transposed to `[b, h·w, num, size]`, which
    /// stays the output's memory order), logistic on the objectness entry, Darknet's softmax over the classes
    /// (`Softmax` on that axis: `exp(x - max)/sum` as `softmax` in blas.c), back to a `[b, c, h, w]` view.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, ctx: &OnnxCtx) -> OnnxResult {
        let c = &self.cfg;
        if c.tree.is_some() {
            return Err(
                "tree= (softmax_tree over the hierarchy's groups) has no ONNX form in the exporter"
                    .into(),
            );
        }
        let o = ctx.spec.output;
        let size = (c.coords + 1 + c.classes) as i64;
        let hw = (o.h * o.w) as i64;
        let v = g.reshape(x, &[0, o.c as i64, hw]);
        let v = g.node("Transpose", &[&v], vec![ints("perm", &[0, 2, 1])]);
        let v = g.reshape(&v, &[0, hw, c.num as i64, size]);
        let k = c.coords as i64;
        let coords = g.slice(&v, 3, 0, k);
        let obj = g.slice(&v, 3, k, k + 1);
        let obj = g.node("Sigmoid", &[&obj], vec![]);
        let cls = g.slice(&v, 3, k + 1, size);
        let cls = if c.softmax {
            g.node("Softmax", &[&cls], vec![int("axis", 3)])
        } else {
            cls
        };
        let y = g.node("Concat", &[&coords, &obj, &cls], vec![int("axis", 3)]);
        Ok(g.reshape(&y, &[0, o.c as i64, o.h as i64, o.w as i64]))
    }
}
