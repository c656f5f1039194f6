//! `[region]` (YOLOv2 head): mirrors `parse_region` (src/parser.c) and, at inference, the CPU branch of
//! `forward_region_layer` (src/region_layer.c):
//! the output is first `flatten`ed to location-major order (for each cell, for each anchor: coords, obj,
//! classes), then `obj ← logistic(obj)` and, with `softmax=1`, the classes ← softmax. x, y, w, h stay raw here;
//! `get_region_detections` applies the box transform.

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;

use super::activation::logistic;
use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::{CfgErrorKind, CfgResult};
use crate::cfg::options::{anchor_pairs, read_inert, usize_of};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};

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
    if let Some(kv) = s.find("tree") {
        return Err(s.error_at(
            kv.line,
            CfgErrorKind::Invalid {
                section: s.name.clone(),
                message: "tree= (hierarchical softmax) is not supported".into(),
            },
        ));
    }
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
    };
    read_inert(
        s,
        &[
            "log",
            "sqrt",
            "focal_loss",
            "resize",
            "classfix",
            "mask_scale",
            "map",
        ],
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
        let cls = if self.cfg.softmax {
            softmax_darknet(&cls)?
        } else {
            cls
        };
        Tensor::cat(&[coords, obj, cls], D::Minus1)?
            .reshape((b, h * w * c))?
            .reshape((b, c, h, w))
    }
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
}
