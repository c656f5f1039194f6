//! `[yolo]` and `[Gaussian_yolo]`: mirror `parse_yolo` / `parse_gaussian_yolo` (src/parser.c) and, at inference,
//! the activation part of `forward_yolo_layer` (src/yolo_layer.c) and `forward_gaussian_yolo_layer`
//! (src/gaussian_yolo_layer.c); the training branch (deltas, cost) is `train::loss`. The layer output keeps
//! Darknet's layout: for each anchor `a`, planes `x, y, w, h, obj, cls…` of `h × w`.
//!
//! yolo: `x, y ← logistic(t)·scale_x_y − (scale_x_y − 1)/2`; `obj, cls ← logistic(t)`; `w, h` stay raw. With
//! `new_coords=1` nothing is activated (the conv before is already logistic) but `x, y` are still scaled.
//! Gaussian_yolo (8 box entries: μx σx μy σy μw σw μh σh): logistic on μx σx μy σy σw σh obj cls, scale on μx μy.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::activation::logistic;
use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::options::{anchor_pairs, read_inert, usize_of};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::cpu::yolo::EntryOp;
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// Box loss of a yolo layer (`iou_loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IouLoss {
    Mse,
    Iou,
    Giou,
    Diou,
    Ciou,
}

/// NMS variant (`nms_kind`). Darknet's parser only knows `greedynms` and `diounms`; anything else is the default
/// (`do_nms_sort`). `cornersnms` exists in box.c but is not reachable from a cfg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NmsKind {
    #[default]
    Default,
    Greedy,
    Diou,
    Corners,
}

impl NmsKind {
    /// `parse_yolo`: `greedynms` and `diounms` select their kinds, every other name (`cornersnms` included) is
    /// the default `do_nms_sort`.
    pub fn from_cfg(name: &str) -> Self {
        match name {
            "greedynms" => NmsKind::Greedy,
            "diounms" => NmsKind::Diou,
            _ => NmsKind::Default,
        }
    }

    /// The cfg spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NmsKind::Default => "default",
            NmsKind::Greedy => "greedynms",
            NmsKind::Diou => "diounms",
            NmsKind::Corners => "cornersnms",
        }
    }
}

/// Which point of the box the predicted x, y are (`yolo_point`; only `get_gaussian_yolo_box` uses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum YoloPoint {
    #[default]
    Center,
    LeftTop,
    RightBottom,
}

impl YoloPoint {
    /// `parse_yolo` / `parse_gaussian_yolo`: `left_top`, `right_bottom`, anything else is the centre.
    pub fn from_cfg(name: &str) -> Self {
        match name {
            "left_top" => YoloPoint::LeftTop,
            "right_bottom" => YoloPoint::RightBottom,
            _ => YoloPoint::Center,
        }
    }
}

/// `[yolo]` and `[Gaussian_yolo]` (`parse_yolo`, `parse_gaussian_yolo`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct YoloConfig {
    pub classes: usize,
    /// `num`: the number of anchors listed in `anchors`.
    pub total: usize,
    /// Indices into `anchors` used by this layer (`mask`; all of them when absent).
    pub mask: Vec<usize>,
    /// All anchors as (w, h) pairs in network pixels.
    pub anchors: Vec<(f32, f32)>,
    pub max_boxes: usize,
    pub max_delta: f32,
    /// Per-class delta multipliers from `counters_per_class` (`get_classes_multipliers`).
    pub classes_multipliers: Option<Vec<f32>>,
    pub label_smooth_eps: f32,
    pub scale_x_y: f32,
    pub objectness_smooth: bool,
    pub new_coords: bool,
    pub iou_normalizer: f32,
    pub obj_normalizer: f32,
    pub cls_normalizer: f32,
    pub delta_normalizer: f32,
    pub uc_normalizer: f32,
    pub iou_loss: IouLoss,
    pub iou_thresh_kind: IouLoss,
    pub beta_nms: f32,
    pub nms_kind: NmsKind,
    pub jitter: f32,
    pub resize: f32,
    pub focal_loss: bool,
    pub ignore_thresh: f32,
    pub truth_thresh: f32,
    pub iou_thresh: f32,
    pub random: f32,
    pub show_details: bool,
    /// `[Gaussian_yolo]`: 8 box entries (mean and uncertainty of x, y, w, h) instead of 4.
    pub gaussian: bool,
    /// `yolo_point`.
    pub yolo_point: YoloPoint,
}

impl YoloConfig {
    /// The anchors this layer predicts with, in mask order.
    pub fn masked_anchors(&self) -> Vec<(f32, f32)> {
        self.mask
            .iter()
            .map(|&m| self.anchors.get(m).copied().unwrap_or((0.0, 0.0)))
            .collect()
    }

    /// Entries per anchor in the layer output: box, objectness, classes.
    pub fn entries(&self) -> usize {
        (if self.gaussian { 8 } else { 4 }) + 1 + self.classes
    }
}

fn parse_iou_kind(v: &str, s: &Section, key: &str) -> CfgResult<IouLoss> {
    Ok(match v {
        "mse" => IouLoss::Mse,
        "iou" => IouLoss::Iou,
        "giou" => IouLoss::Giou,
        "diou" => IouLoss::Diou,
        "ciou" => IouLoss::Ciou,
        other => return Err(s.invalid(format!("unknown {key} '{other}'"))),
    })
}

/// `get_classes_multipliers`: max count / count per class, capped at `max_delta`.
fn classes_multipliers(s: &Section, classes: usize, max_delta: f32) -> CfgResult<Option<Vec<f32>>> {
    let Some(counts) = s.int_list("counters_per_class")? else {
        return Ok(None);
    };
    if counts.len() != classes {
        return Err(s.invalid(format!(
            "counters_per_class has {} values, classes={classes}",
            counts.len()
        )));
    }
    let counts: Vec<f32> = counts.iter().map(|&c| c.max(1) as f32).collect();
    let max = counts.iter().cloned().fold(0.0f32, f32::max);
    Ok(Some(
        counts.iter().map(|&c| (max / c).min(max_delta)).collect(),
    ))
}

/// `parse_yolo` and, with `gaussian`, `parse_gaussian_yolo` (src/parser.c), each key with its Darknet default.
pub fn parse_yolo(s: &Section, gaussian: bool) -> CfgResult<YoloConfig> {
    let classes = usize_of(s.int_or("classes", 20)?, s, "classes", 0)?;
    let total = usize_of(s.int_or("num", 1)?, s, "num", 1)?;
    let mask = match s.int_list("mask")? {
        Some(m) => m
            .iter()
            .map(|&v| {
                if v < 0 || v as usize >= total {
                    return Err(s.invalid(format!("mask value {v} is outside 0..num={total}")));
                }
                Ok(v as usize)
            })
            .collect::<CfgResult<Vec<_>>>()?,
        None => (0..total).collect(),
    };
    let max_boxes = usize_of(s.int_or("max", 200)?, s, "max", 1)?;
    let max_delta = s.float_or("max_delta", f32::MAX)?;
    let classes_multipliers = classes_multipliers(s, classes, max_delta)?;
    let nms_kind = NmsKind::from_cfg(&s.str_or("nms_kind", "default"));
    let mut anchors = anchor_pairs(&s.float_list("anchors")?.unwrap_or_default(), s)?;
    anchors.truncate(total);
    anchors.resize(total, (0.0, 0.0));
    let cfg = YoloConfig {
        classes,
        total,
        mask,
        anchors,
        max_boxes,
        max_delta,
        classes_multipliers,
        label_smooth_eps: s.float_or("label_smooth_eps", 0.0)?,
        scale_x_y: s.float_or("scale_x_y", 1.0)?,
        objectness_smooth: s.int_or("objectness_smooth", 0)? != 0,
        new_coords: s.int_or("new_coords", 0)? != 0,
        iou_normalizer: s.float_or("iou_normalizer", 0.75)?,
        obj_normalizer: s.float_or("obj_normalizer", 1.0)?,
        cls_normalizer: s.float_or("cls_normalizer", 1.0)?,
        delta_normalizer: s.float_or("delta_normalizer", 1.0)?,
        uc_normalizer: s.float_or("uc_normalizer", 1.0)?,
        iou_loss: parse_iou_kind(&s.str_or("iou_loss", "mse"), s, "iou_loss")?,
        iou_thresh_kind: parse_iou_kind(&s.str_or("iou_thresh_kind", "iou"), s, "iou_thresh_kind")?,
        beta_nms: s.float_or("beta_nms", 0.6)?,
        nms_kind,
        jitter: s.float_or("jitter", 0.2)?,
        resize: s.float_or("resize", 1.0)?,
        focal_loss: s.int_or("focal_loss", 0)? != 0,
        ignore_thresh: s.float_or("ignore_thresh", 0.5)?,
        truth_thresh: s.float_or("truth_thresh", 1.0)?,
        iou_thresh: s.float_or("iou_thresh", 1.0)?,
        random: s.float_or("random", 0.0)?,
        show_details: s.int_or("show_details", 1)? != 0,
        gaussian,
        yolo_point: YoloPoint::from_cfg(&s.str_or("yolo_point", "center")),
    };
    // Tracking/embedding keys only matter for Darknet's tracker; read so they do not warn.
    read_inert(
        s,
        &[
            "track_history_size",
            "sim_thresh",
            "dets_for_track",
            "dets_for_show",
            "track_ciou_norm",
            "embedding_layer",
            "map",
        ],
    );
    Ok(cfg)
}

impl LayerType for YoloConfig {
    fn parse(s: &Section, _index: usize) -> CfgResult<Self> {
        parse_yolo(s, s.name == "Gaussian_yolo")
    }

    fn type_name(&self) -> &'static str {
        if self.gaussian {
            "Gaussian_yolo"
        } else {
            "yolo"
        }
    }

    /// `make_yolo_layer`: the input's shape, which must hold `mask × (box + 1 + classes)` channels.
    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        let want = self.mask.len() * self.entries();
        if i.c != want {
            return Err(format!(
                "input has {} channels but mask ({} anchors) x (classes {} + {}) = {want}: filters= of the [convolutional] before does not match classes=/mask=",
                i.c,
                self.mask.len(),
                self.classes,
                self.entries() - self.classes
            ));
        }
        Ok(i)
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!("yolo                          {}", io_shapes(l))
    }
}

#[derive(Debug, Clone)]
pub struct Yolo {
    pub cfg: YoloConfig,
    /// Run f32 CPU inputs that track no gradient through [`crate::cpu::yolo`] (`LoadOptions::cpu`).
    pub cpu_kernel: bool,
}

/// What happens to one entry of an anchor's block.
type Op = EntryOp;

impl Yolo {
    fn ops(&self) -> Vec<Op> {
        let c = &self.cfg;
        let mut ops = vec![Op::Logistic; c.entries()];
        if c.gaussian {
            ops[0] = Op::LogisticScaled;
            ops[2] = Op::LogisticScaled;
            ops[4] = Op::Raw;
            ops[6] = Op::Raw;
        } else if c.new_coords {
            ops.iter_mut().for_each(|o| *o = Op::Raw);
            ops[0] = Op::Scaled;
            ops[1] = Op::Scaled;
        } else {
            ops[0] = Op::LogisticScaled;
            ops[1] = Op::LogisticScaled;
            ops[2] = Op::Raw;
            ops[3] = Op::Raw;
        }
        ops
    }

    /// What the CPU kernel does to each entry, and `scale_x_y` with its shift (`-0.5·(scale_x_y - 1)`): for
    /// [`crate::cpu::yolo`], or a convolution's epilogue when the network folds this layer into it.
    pub fn cpu_ops(&self) -> (Vec<EntryOp>, f32, f32) {
        let s = self.cfg.scale_x_y as f64;
        (self.ops(), s as f32, (-0.5 * (s - 1.0)) as f32)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let n = self.cfg.mask.len();
        let e = self.cfg.entries();
        let x5 = x.reshape((b, n, e, h, w))?;
        let s = self.cfg.scale_x_y as f64;
        let shift = -0.5 * (s - 1.0);
        let ops = self.ops();
        if x.device().is_cpu() && x.dtype() == DType::F32 && !x.track_op() && self.cpu_kernel {
            // One pass on the CPU (src/cpu/yolo.rs).
            let (ops, s, shift) = self.cpu_ops();
            return crate::cpu::yolo::forward(&x.contiguous()?, &ops, s, shift);
        }
        // Apply each op to its run of consecutive entries.
        let mut parts = Vec::new();
        let mut start = 0;
        while start < e {
            let op = ops[start];
            let mut end = start + 1;
            while end < e && ops[end] == op {
                end += 1;
            }
            let t = x5.narrow(2, start, end - start)?;
            parts.push(match op {
                Op::Raw => t,
                Op::Logistic => logistic(&t)?,
                // scal_add_cpu(x, scale, bias): x*scale + bias, in f32.
                Op::LogisticScaled => logistic(&t)?.affine(s, shift)?,
                Op::Scaled => t.affine(s, shift)?,
            });
            start = end;
        }
        Tensor::cat(&parts, 2)?.reshape((b, c, h, w))
    }
}

impl DarknetLayer for Yolo {
    type Config = YoloConfig;

    fn load(cfg: &YoloConfig, _: &LayerSpec, _: &VarBuilder, opts: &LoadOptions) -> Result<Self> {
        Ok(Yolo {
            cfg: cfg.clone(),
            cpu_kernel: opts.cpu.enabled,
        })
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Yolo::forward(self, x)
    }

    /// `forward_yolo_layer`'s in-place activation as whole-tensor ops with per-channel constants: with `M` 1 on
    /// the entries that go through the logistic, `y = (sigmoid(x)·M + x·(1-M))·A + B`, `A`/`B` = `scale_x_y` and
    /// `-(scale_x_y-1)/2` on the scaled entries and 1/0 elsewhere. Multiplying by exact 0/1 and adding 0 changes no
    /// bit, so every entry is Darknet's formula; the ops are the most portable ones (no `Where`).
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, _ctx: &OnnxCtx) -> OnnxResult {
        let ops = self.ops();
        let n = self.cfg.mask.len();
        let s = self.cfg.scale_x_y;
        let shift = (-0.5 * (s as f64 - 1.0)) as f32;
        let (mut m, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            for op in &ops {
                let logistic = matches!(op, Op::Logistic | Op::LogisticScaled);
                let scaled = matches!(op, Op::LogisticScaled | Op::Scaled);
                m.push(if logistic { 1.0 } else { 0.0 });
                a.push(if scaled { s } else { 1.0 });
                b.push(if scaled { shift } else { 0.0 });
            }
        }
        let shape = [1, m.len(), 1, 1];
        let keep: Vec<f32> = m.iter().map(|v| 1.0 - v).collect();
        let sig = g.node("Sigmoid", &[x], vec![]);
        let mc = g.const_f32(&shape, &m);
        let kc = g.const_f32(&shape, &keep);
        let p = g.node("Mul", &[&sig, &mc], vec![]);
        let q = g.node("Mul", &[x, &kc], vec![]);
        let sel = g.node("Add", &[&p, &q], vec![]);
        let y = if a.iter().all(|&v| v == 1.0) {
            sel
        } else {
            let ac = g.const_f32(&shape, &a);
            let bc = g.const_f32(&shape, &b);
            let y = g.node("Mul", &[&sel, &ac], vec![]);
            g.node("Add", &[&y, &bc], vec![])
        };
        Ok(y)
    }

    fn kernel(&self) -> &'static str {
        if self.cpu_kernel {
            "cpu-yolo"
        } else {
            "candle"
        }
    }
}
