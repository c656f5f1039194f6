//! One typed config per Darknet layer type, read with the defaults of its `parse_*` function in src/parser.c.
//! Options Darknet accepts but we do not implement are refused here with the file and line, so a cfg either
//! builds exactly or fails up front.

use anyhow::{bail, Result};

use super::reader::Section;

/// Activation functions (`get_activation` in src/activations.c) that the detector cfgs and common cfgs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Linear,
    Leaky,
    Relu,
    Relu6,
    Logistic,
    Loggy,
    Tanh,
    Elu,
    Selu,
    Gelu,
    Mish,
    HardMish,
    Swish,
    Relie,
    Ramp,
}

impl Activation {
    /// `get_activation`; deliberate difference: an unknown name is an error (Darknet silently uses ReLU).
    pub fn parse(name: &str, s: &Section) -> Result<Self> {
        Ok(match name {
            "linear" => Self::Linear,
            "leaky" => Self::Leaky,
            "relu" => Self::Relu,
            "relu6" => Self::Relu6,
            "logistic" => Self::Logistic,
            "loggy" => Self::Loggy,
            "tanh" => Self::Tanh,
            "elu" => Self::Elu,
            "selu" => Self::Selu,
            "gelu" => Self::Gelu,
            "mish" => Self::Mish,
            "hard_mish" => Self::HardMish,
            "swish" => Self::Swish,
            "relie" => Self::Relie,
            "ramp" => Self::Ramp,
            other => bail!(
                "{}: [{}] activation '{other}' is not supported",
                s.location(),
                s.name
            ),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Leaky => "leaky",
            Self::Relu => "relu",
            Self::Relu6 => "relu6",
            Self::Logistic => "logistic",
            Self::Loggy => "loggy",
            Self::Tanh => "tanh",
            Self::Elu => "elu",
            Self::Selu => "selu",
            Self::Gelu => "gelu",
            Self::Mish => "mish",
            Self::HardMish => "hard_mish",
            Self::Swish => "swish",
            Self::Relie => "relie",
            Self::Ramp => "ramp",
        }
    }
}

/// `[convolutional]` (`parse_convolutional`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConvConfig {
    pub filters: usize,
    pub size: usize,
    pub stride_x: usize,
    pub stride_y: usize,
    pub dilation: usize,
    /// Zero padding in pixels on the top/left (`padding`, or `size/2` when `pad=1`).
    pub pad: usize,
    pub groups: usize,
    pub activation: Activation,
    pub batch_normalize: bool,
    /// Absolute index of the layer whose weights this one uses (`share_index`), if any.
    pub share_index: Option<usize>,
    /// `flipped=1`: the file stores the weight matrix transposed (`load_convolutional_weights`).
    pub flipped: bool,
}

/// `[maxpool]` and `[local_avgpool]` (`parse_maxpool`, `parse_local_avgpool`; both build a maxpool layer).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MaxpoolConfig {
    pub size: usize,
    pub stride_x: usize,
    pub stride_y: usize,
    /// Darknet's `padding` (default `size-1`); the window starts at `-padding/2`.
    pub padding: usize,
    /// `maxpool_depth=1`: max over channel groups instead of space.
    pub maxpool_depth: bool,
    pub out_channels: usize,
    /// `[local_avgpool]`: average instead of max.
    pub avg: bool,
}

/// `[route]` (`parse_route`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteConfig {
    /// Absolute indices of the input layers.
    pub layers: Vec<usize>,
    pub groups: usize,
    pub group_id: usize,
}

/// Weights of a weighted `[shortcut]` (`weights_type` in `parse_shortcut`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortcutWeights {
    None,
    PerFeature,
    PerChannel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsNormalization {
    None,
    Relu,
    Softmax,
}

/// `[shortcut]` (`parse_shortcut`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShortcutConfig {
    /// Absolute indices of the added layers (`from`).
    pub from: Vec<usize>,
    pub activation: Activation,
    pub weights_type: ShortcutWeights,
    pub weights_normalization: WeightsNormalization,
}

/// `[upsample]` (`parse_upsample`); a negative stride downsamples (`reverse` in make_upsample_layer).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpsampleConfig {
    pub stride: i64,
    pub scale: f32,
}

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

/// `[reorg]` (old, `make_reorg_old_layer`) and `[reorg3d]` (`make_reorg_layer`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReorgConfig {
    pub stride: usize,
    pub reverse: bool,
    /// `[reorg]` is Darknet's `REORG_OLD`, `[reorg3d]` is `REORG`; they permute differently.
    pub old: bool,
}

/// `[scale_channels]` (`parse_scale_channels`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleChannelsConfig {
    pub from: usize,
    pub scale_wh: bool,
    pub activation: Activation,
}

/// `[sam]` (`parse_sam`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SamConfig {
    pub from: usize,
    pub activation: Activation,
}

/// `[dropout]` (`parse_dropout`): identity at inference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DropoutConfig {
    pub probability: f32,
    pub dropblock: bool,
}

/// Every layer type the detector cfgs use.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerConfig {
    Convolutional(ConvConfig),
    Maxpool(MaxpoolConfig),
    Route(RouteConfig),
    Shortcut(ShortcutConfig),
    Upsample(UpsampleConfig),
    Yolo(YoloConfig),
    Region(RegionConfig),
    Avgpool,
    Reorg(ReorgConfig),
    ScaleChannels(ScaleChannelsConfig),
    Sam(SamConfig),
    Dropout(DropoutConfig),
    /// `[empty]`/`[silence]`: passes its input through.
    Empty,
}

impl LayerConfig {
    /// Darknet's layer type name, as in its layer table and the reference manifests.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Convolutional(_) => "convolutional",
            Self::Maxpool(m) if m.avg => "local_avgpool",
            Self::Maxpool(_) => "maxpool",
            Self::Route(_) => "route",
            Self::Shortcut(_) => "shortcut",
            Self::Upsample(_) => "upsample",
            Self::Yolo(y) if y.gaussian => "Gaussian_yolo",
            Self::Yolo(_) => "yolo",
            Self::Region(_) => "region",
            Self::Avgpool => "avgpool",
            Self::Reorg(r) if r.old => "reorg",
            Self::Reorg(_) => "reorg3d",
            Self::ScaleChannels(_) => "scale_channels",
            Self::Sam(_) => "sam",
            Self::Dropout(_) => "dropout",
            Self::Empty => "empty",
        }
    }
}

/// Resolves a possibly negative layer reference as Darknet does (`index < 0 => current + index`) and checks it
/// points to an earlier layer.
pub(crate) fn resolve_index(raw: i64, current: usize, s: &Section, key: &str) -> Result<usize> {
    let abs = if raw < 0 { current as i64 + raw } else { raw };
    if abs < 0 || abs >= current as i64 {
        bail!(
            "{}: [{}] (layer {current}) {key} refers to layer {raw} (absolute {abs}), which is not an earlier layer",
            s.location(),
            s.name
        );
    }
    Ok(abs as usize)
}

/// Options that change a layer's computation in ways we do not implement: refuse them with their line.
fn refuse_nonzero(s: &Section, keys: &[&str]) -> Result<()> {
    for k in keys {
        if let Some(kv) = s.find(k) {
            if super::reader::atof(&kv.value).unwrap_or(1.0) != 0.0 {
                bail!(
                    "{}:{}: [{}] option '{}={}' is not supported by candle-darknet",
                    s.file.display(),
                    kv.line,
                    s.name,
                    kv.key,
                    kv.value
                );
            }
        }
    }
    Ok(())
}

fn usize_of(v: i64, s: &Section, key: &str, min: i64) -> Result<usize> {
    if v < min {
        bail!(
            "{}: [{}] {key}={v} must be at least {min}",
            s.location(),
            s.name
        );
    }
    Ok(v as usize)
}

pub(crate) fn parse_conv(s: &Section, index: usize) -> Result<ConvConfig> {
    let filters = usize_of(s.int_or("filters", 1)?, s, "filters", 1)?;
    let groups = usize_of(s.int_or("groups", 1)?, s, "groups", 1)?;
    let size = usize_of(s.int_or("size", 1)?, s, "size", 1)?;
    let sx = s.int_or("stride_x", -1)?;
    let sy = s.int_or("stride_y", -1)?;
    let stride = s.int_or("stride", 1)?;
    let stride_x = usize_of(if sx < 1 { stride } else { sx }, s, "stride", 1)?;
    let stride_y = usize_of(if sy < 1 { stride } else { sy }, s, "stride", 1)?;
    let mut dilation = usize_of(s.int_or("dilation", 1)?, s, "dilation", 1)?;
    if size == 1 {
        dilation = 1;
    }
    let pad_flag = s.int_or("pad", 0)? != 0;
    let padding = usize_of(s.int_or("padding", 0)?, s, "padding", 0)?;
    let pad = if pad_flag { size / 2 } else { padding };
    let activation = Activation::parse(&s.str_or("activation", "logistic"), s)?;
    let share = s.int_or("share_index", -1_000_000_000)?;
    let share_index = if share == -1_000_000_000 {
        None
    } else {
        Some(resolve_index(share, index, s, "share_index")?)
    };
    let batch_normalize = s.int_or("batch_normalize", 0)? != 0;
    refuse_nonzero(
        s,
        &[
            "xnor",
            "binary",
            "antialiasing",
            "assisted_excitation",
            "sway",
            "rotate",
            "stretch",
            "stretch_sway",
            "coordconv",
            "cbn",
        ],
    )?;
    let flipped = s.int_or("flipped", 0)? != 0;
    // Read but inert at inference (training/GPU knobs).
    for k in [
        "dot",
        "angle",
        "grad_centr",
        "reverse",
        "stream",
        "wait_stream",
        "bin_output",
    ] {
        let _ = s.find(k);
    }
    if filters % groups != 0 {
        bail!(
            "{}: [convolutional] filters={filters} is not divisible by groups={groups}",
            s.location()
        );
    }
    Ok(ConvConfig {
        filters,
        size,
        stride_x,
        stride_y,
        dilation,
        pad,
        groups,
        activation,
        batch_normalize,
        share_index,
        flipped,
    })
}

pub(crate) fn parse_maxpool(s: &Section, avg: bool) -> Result<MaxpoolConfig> {
    let stride = s.int_or("stride", 1)?;
    let stride_x = usize_of(s.int_or("stride_x", stride)?, s, "stride_x", 1)?;
    let stride_y = usize_of(s.int_or("stride_y", stride)?, s, "stride_y", 1)?;
    let size = usize_of(s.int_or("size", stride)?, s, "size", 1)?;
    let padding = usize_of(s.int_or("padding", size as i64 - 1)?, s, "padding", 0)?;
    let (maxpool_depth, out_channels) = if avg {
        (false, 1)
    } else {
        (
            s.int_or("maxpool_depth", 0)? != 0,
            usize_of(s.int_or("out_channels", 1)?, s, "out_channels", 1)?,
        )
    };
    if !avg {
        refuse_nonzero(s, &["antialiasing", "maxpool_zero_nonmax"])?;
    }
    Ok(MaxpoolConfig {
        size,
        stride_x,
        stride_y,
        padding,
        maxpool_depth,
        out_channels,
        avg,
    })
}

pub(crate) fn parse_route(s: &Section, index: usize) -> Result<RouteConfig> {
    let Some(raw) = s.int_list("layers")? else {
        bail!("{}: [route] must specify layers=", s.location());
    };
    if raw.is_empty() {
        bail!("{}: [route] layers= is empty", s.location());
    }
    let layers = raw
        .iter()
        .map(|&r| resolve_index(r, index, s, "layers"))
        .collect::<Result<Vec<_>>>()?;
    let groups = usize_of(s.int_or("groups", 1)?, s, "groups", 1)?;
    let group_id = usize_of(s.int_or("group_id", 0)?, s, "group_id", 0)?;
    if group_id >= groups {
        bail!(
            "{}: [route] group_id={group_id} must be below groups={groups}",
            s.location()
        );
    }
    for k in ["stream", "wait_stream"] {
        let _ = s.find(k);
    }
    Ok(RouteConfig {
        layers,
        groups,
        group_id,
    })
}

pub(crate) fn parse_shortcut(s: &Section, index: usize) -> Result<ShortcutConfig> {
    let activation = Activation::parse(&s.str_or("activation", "linear"), s)?;
    let weights_type = match s.str_or("weights_type", "none").as_str() {
        "none" => ShortcutWeights::None,
        "per_feature" | "per_layer" => ShortcutWeights::PerFeature,
        "per_channel" => ShortcutWeights::PerChannel,
        other => bail!(
            "{}: [shortcut] unknown weights_type '{other}'",
            s.location()
        ),
    };
    let weights_normalization = match s.str_or("weights_normalization", "none").as_str() {
        "relu" | "avg_relu" => WeightsNormalization::Relu,
        "softmax" => WeightsNormalization::Softmax,
        "none" => WeightsNormalization::None,
        other => bail!(
            "{}: [shortcut] unknown weights_normalization '{other}'",
            s.location()
        ),
    };
    let Some(raw) = s.int_list("from")? else {
        bail!("{}: [shortcut] must specify from=", s.location());
    };
    let from = raw
        .iter()
        .map(|&r| resolve_index(r, index, s, "from"))
        .collect::<Result<Vec<_>>>()?;
    if from.is_empty() {
        bail!("{}: [shortcut] from= is empty", s.location());
    }
    Ok(ShortcutConfig {
        from,
        activation,
        weights_type,
        weights_normalization,
    })
}

fn parse_iou_kind(v: &str, s: &Section, key: &str) -> Result<IouLoss> {
    Ok(match v {
        "mse" => IouLoss::Mse,
        "iou" => IouLoss::Iou,
        "giou" => IouLoss::Giou,
        "diou" => IouLoss::Diou,
        "ciou" => IouLoss::Ciou,
        other => bail!("{}: [{}] unknown {key} '{other}'", s.location(), s.name),
    })
}

fn anchor_pairs(values: &[f32]) -> Vec<(f32, f32)> {
    values
        .chunks(2)
        .map(|c| (c[0], c.get(1).copied().unwrap_or(0.0)))
        .collect()
}

/// `get_classes_multipliers`: max count / count per class, capped at `max_delta`.
fn classes_multipliers(s: &Section, classes: usize, max_delta: f32) -> Result<Option<Vec<f32>>> {
    let Some(counts) = s.int_list("counters_per_class")? else {
        return Ok(None);
    };
    if counts.len() != classes {
        bail!(
            "{}: [{}] counters_per_class has {} values, classes={classes}",
            s.location(),
            s.name,
            counts.len()
        );
    }
    let counts: Vec<f32> = counts.iter().map(|&c| c.max(1) as f32).collect();
    let max = counts.iter().cloned().fold(0.0f32, f32::max);
    Ok(Some(
        counts.iter().map(|&c| (max / c).min(max_delta)).collect(),
    ))
}

pub(crate) fn parse_yolo(s: &Section, gaussian: bool) -> Result<YoloConfig> {
    let classes = usize_of(s.int_or("classes", 20)?, s, "classes", 0)?;
    let total = usize_of(s.int_or("num", 1)?, s, "num", 1)?;
    let mask = match s.int_list("mask")? {
        Some(m) => m
            .iter()
            .map(|&v| {
                if v < 0 || v as usize >= total {
                    bail!(
                        "{}: [{}] mask value {v} is outside 0..num={total}",
                        s.location(),
                        s.name
                    )
                }
                Ok(v as usize)
            })
            .collect::<Result<Vec<_>>>()?,
        None => (0..total).collect(),
    };
    let max_boxes = usize_of(s.int_or("max", 200)?, s, "max", 1)?;
    let max_delta = s.float_or("max_delta", f32::MAX)?;
    let classes_multipliers = classes_multipliers(s, classes, max_delta)?;
    let nms_kind = NmsKind::from_cfg(&s.str_or("nms_kind", "default"));
    let mut anchors = anchor_pairs(&s.float_list("anchors")?.unwrap_or_default());
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
    };
    // Tracking/embedding keys only matter for Darknet's tracker; read so they do not warn.
    for k in [
        "track_history_size",
        "sim_thresh",
        "dets_for_track",
        "dets_for_show",
        "track_ciou_norm",
        "embedding_layer",
        "map",
    ] {
        let _ = s.find(k);
    }
    Ok(cfg)
}

pub(crate) fn parse_region(s: &Section) -> Result<RegionConfig> {
    let coords = usize_of(s.int_or("coords", 4)?, s, "coords", 4)?;
    let classes = usize_of(s.int_or("classes", 20)?, s, "classes", 0)?;
    let num = usize_of(s.int_or("num", 1)?, s, "num", 1)?;
    let max_boxes = usize_of(s.int_or("max", 200)?, s, "max", 1)?;
    let mut anchors = anchor_pairs(&s.float_list("anchors")?.unwrap_or_default());
    anchors.truncate(num);
    anchors.resize(num, (0.0, 0.0));
    if let Some(kv) = s.find("tree") {
        bail!(
            "{}:{}: [region] tree= (hierarchical softmax) is not supported",
            s.file.display(),
            kv.line
        );
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
    for k in [
        "log",
        "sqrt",
        "focal_loss",
        "resize",
        "classfix",
        "mask_scale",
        "map",
    ] {
        let _ = s.find(k);
    }
    if coords != 4 {
        bail!(
            "{}: [region] coords={coords} is not supported (only 4)",
            s.location()
        );
    }
    Ok(cfg)
}

pub(crate) fn parse_reorg(s: &Section, old: bool) -> Result<ReorgConfig> {
    Ok(ReorgConfig {
        stride: usize_of(s.int_or("stride", 1)?, s, "stride", 1)?,
        reverse: s.int_or("reverse", 0)? != 0,
        old,
    })
}

pub(crate) fn parse_scale_channels(s: &Section, index: usize) -> Result<ScaleChannelsConfig> {
    let Some(raw) = s.int_list("from")?.and_then(|v| v.first().copied()) else {
        bail!("{}: [scale_channels] must specify from=", s.location());
    };
    Ok(ScaleChannelsConfig {
        from: resolve_index(raw, index, s, "from")?,
        scale_wh: s.int_or("scale_wh", 0)? != 0,
        activation: Activation::parse(&s.str_or("activation", "linear"), s)?,
    })
}

pub(crate) fn parse_sam(s: &Section, index: usize) -> Result<SamConfig> {
    let Some(raw) = s.int_list("from")?.and_then(|v| v.first().copied()) else {
        bail!("{}: [sam] must specify from=", s.location());
    };
    Ok(SamConfig {
        from: resolve_index(raw, index, s, "from")?,
        activation: Activation::parse(&s.str_or("activation", "linear"), s)?,
    })
}

pub(crate) fn parse_dropout(s: &Section) -> Result<DropoutConfig> {
    let probability = s.float_or("probability", 0.2)?;
    let dropblock = s.int_or("dropblock", 0)? != 0;
    for k in ["dropblock_size_rel", "dropblock_size_abs"] {
        let _ = s.find(k);
    }
    Ok(DropoutConfig {
        probability,
        dropblock,
    })
}

pub(crate) fn parse_upsample(s: &Section) -> Result<UpsampleConfig> {
    let stride = s.int_or("stride", 2)?;
    if stride == 0 {
        bail!("{}: [upsample] stride=0", s.location());
    }
    Ok(UpsampleConfig {
        stride,
        scale: s.float_or("scale", 1.0)?,
    })
}
