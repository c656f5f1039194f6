//! `[convolutional]`: mirrors `parse_convolutional` (src/parser.c), `make_convolutional_layer` and
//! `forward_convolutional_layer` (src/convolutional_layer.c): convolution (im2col +
//! gemm in Darknet; candle's conv2d here), then batch norm with the rolling statistics (`normalize_cpu`,
//! `scale_bias`) or, when fused, nothing, then `add_bias` and the activation.
//!
//! Fusion mirrors `fuse_conv_batchnorm` (src/network.c) in double precision:
//! `b' = b - scale·mean/sqrt(var + .00001)`, `w' = w · scale/sqrt(var + .00001)`, each rounded to f32 once.
//! Output size as `convolutional_out_height`: `(h + 2·pad - size)/stride + 1`, which ignores dilation; with
//! dilation > 1 the input is zero-padded on the bottom/right as far as Darknet's im2col reads past the edge.
//!
//! [`Convolutional::forward`] dispatches: on the CPU, with no gradient tracked, it runs [`crate::cpu::conv`]
//! (weights packed at load, bias/BN/activation fused into the GEMM epilogue); elsewhere (CUDA, autograd) the
//! candle ops of [`Convolutional::forward_candle`]. [`Convolutional::forward_train`] is the same layer with
//! `state.train = 1`: batch statistics in the batch norm ([`super::batchnorm`]) and a convolution whose backward
//! is two matrix products ([`conv_im2col`]).

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::activation::{activate, activate_onnx};
use super::batchnorm::batchnorm_train_with;
use super::im2col::conv_im2col;
use super::xnor::XnorWeights;
use super::{
    io_shapes, DarknetLayer, Inputs, LayerConfig, LayerType, LoadOptions, Param, TrainState,
};
use crate::cfg::error::CfgResult;
use crate::cfg::options::{read_inert, refuse_nonzero, resolve_index, usize_of, Activation};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::cpu::conv::{BnTensors, PackedConv};
use crate::export::graph::{int, ints};
use crate::export::{OnnxCtx, OnnxGraph};

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
    /// `xnor=1`: binary weights and inputs at inference ([`super::xnor`]).
    pub xnor: bool,
    /// `bin_output=1` on an xnor layer: `calculate_binary_weights` makes its activation linear.
    pub bin_output: bool,
}

/// `parse_convolutional` (src/parser.c), each key with its Darknet default.
pub fn parse_convolutional(s: &Section, index: usize) -> CfgResult<ConvConfig> {
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
    read_inert(
        s,
        &[
            "dot",
            "angle",
            "grad_centr",
            "reverse",
            "stream",
            "wait_stream",
        ],
    );
    let xnor = s.int_or("xnor", 0)? != 0;
    let bin_output = s.int_or("bin_output", 0)? != 0;
    if xnor && (groups != 1 || stride_x != stride_y || dilation != 1) {
        return Err(s.invalid(
            "xnor=1 is supported with groups=1, equal x/y strides and no dilation (Darknet's bit-packed path)",
        ));
    }
    if !filters.is_multiple_of(groups) {
        return Err(s.invalid(format!(
            "filters={filters} is not divisible by groups={groups}"
        )));
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
        xnor,
        bin_output,
    })
}

impl LayerType for ConvConfig {
    fn parse(s: &Section, index: usize) -> CfgResult<Self> {
        parse_convolutional(s, index)
    }

    fn type_name(&self) -> &'static str {
        "convolutional"
    }

    /// `convolutional_out_height`/`_width`: `(h + 2·pad - size)/stride + 1`; dilation does not enter Darknet's
    /// output size.
    fn output_shape(&self, i: Shape, prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        if i.numel() == 0 {
            return Err("the layer before [convolutional] must output an image".into());
        }
        if !i.c.is_multiple_of(self.groups) {
            return Err(format!(
                "input channels {} not divisible by groups={}",
                i.c, self.groups
            ));
        }
        if let Some(s) = self.share_index {
            let same = match &prev[s].config {
                LayerConfig::Convolutional(o) => {
                    o.filters == self.filters
                        && o.size == self.size
                        && o.groups == self.groups
                        && prev[s].input.c == i.c
                }
                _ => false,
            };
            if !same {
                return Err(format!("share_index={s} does not point to a convolutional layer with the same weight shape"));
            }
        }
        let oh = (i.h + 2 * self.pad)
            .checked_sub(self.size)
            .map(|v| v / self.stride_y + 1);
        let ow = (i.w + 2 * self.pad)
            .checked_sub(self.size)
            .map(|v| v / self.stride_x + 1);
        match (oh, ow) {
            (Some(h), Some(w)) => Ok(Shape::new(self.filters, h, w)),
            _ => Err(format!("kernel {} larger than padded input {i}", self.size)),
        }
    }

    /// `l.bflops = (2.0 * l.nweights * l.out_h*l.out_w) / 1e9`.
    fn bflops(&self, l: &LayerSpec) -> f64 {
        let nweights = (l.input.c / self.groups) * self.filters * self.size * self.size;
        2.0 * nweights as f64 * (l.output.h * l.output.w) as f64 / 1e9
    }

    /// `load_convolutional_weights` order: biases, [scales, rolling mean, rolling variance], weights. A
    /// `share_index` layer stores nothing (it reads its owner's).
    fn parameters(&self, l: &LayerSpec) -> Vec<Param> {
        if self.share_index.is_some() {
            return Vec::new();
        }
        let f = self.filters;
        let weight = vec![f, l.input.c / self.groups, self.size, self.size];
        let p = |name, shape: Vec<usize>| Param { name, shape };
        if self.batch_normalize {
            vec![
                p("bn.bias", vec![f]),
                p("bn.weight", vec![f]),
                p("bn.running_mean", vec![f]),
                p("bn.running_var", vec![f]),
                p("conv.weight", weight),
            ]
        } else {
            vec![p("conv.bias", vec![f]), p("conv.weight", weight)]
        }
    }

    fn info(&self, l: &LayerSpec) -> String {
        let g = if self.groups > 1 {
            format!("{:2}/{:4}", self.groups, self.filters)
        } else {
            format!("   {:4}", self.filters)
        };
        let dil = if self.dilation > 1 {
            format!("({})", self.dilation)
        } else {
            "   ".into()
        };
        format!(
            "conv  {g}    {:2} x{:2}/{:2}{dil} {} {:.3} BF",
            self.size,
            self.size,
            self.stride_x,
            io_shapes(l),
            self.bflops(l)
        )
    }
}

impl DarknetLayer for Convolutional {
    type Config = ConvConfig;

    /// `share_index`: the tensors of the layer that owns them.
    fn load(
        cfg: &ConvConfig,
        spec: &LayerSpec,
        vb: &VarBuilder,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let owner = cfg.share_index.unwrap_or(spec.index);
        Convolutional::load(vb.pp(owner), cfg, spec.input, spec.output, opts)
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Convolutional::forward(self, x)
    }

    fn forward_train(&self, x: &Tensor, inputs: &Inputs, train: &TrainState) -> Result<Tensor> {
        Convolutional::forward_train(self, x, inputs.index, train)
    }

    fn kernel(&self) -> &'static str {
        self.cpu.as_ref().map_or("candle", |p| p.kernel_name())
    }

    /// `Conv` with the (fused) weights and bias, Darknet's zero padding and output size, then the activation.
    fn to_onnx(
        &self,
        g: &mut OnnxGraph,
        x: &str,
        _ctx: &OnnxCtx,
    ) -> std::result::Result<String, String> {
        Convolutional::to_onnx(self, g, x).map_err(|e| e.to_string())
    }

    fn takes_parts(&self) -> bool {
        self.cpu.is_some()
    }

    fn forward_parts(&self, parts: &[Tensor], _inputs: &Inputs) -> Result<Tensor> {
        // (The folded form, `Convolutional::forward_post`, is chosen by the network.)
        match &self.cpu {
            Some(p) if parts.iter().all(cpu_input) => {
                let y = p.forward_parts(parts)?;
                match p.post_activation {
                    Some(a) => activate(&y, a),
                    None => Ok(y),
                }
            }
            _ => Convolutional::forward(self, &Tensor::cat(parts, 1)?),
        }
    }
}

/// Whether `x` can go to the CPU kernels: an f32 CPU tensor that tracks no gradient.
fn cpu_input(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && !x.track_op()
}

/// Batch-norm tensors of an unfused layer, shaped `[1, C, 1, 1]` for broadcasting.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub scale: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

#[derive(Debug, Clone)]
pub struct Convolutional {
    pub cfg: ConvConfig,
    pub input: Shape,
    pub output: Shape,
    /// `[filters, in_c/groups, size, size]`.
    pub weight: Tensor,
    /// Added after the (optional) normalisation: the conv bias, or the fused bias.
    pub bias: Option<Tensor>,
    pub bn: Option<BatchNorm>,
    /// `xnor=1`: the binarised weights of Darknet's bit-packed inference path.
    pub xnor: Option<XnorWeights>,
    /// The CPU inference form of this layer, packed at load (None on other devices, for trainable weights, or
    /// when `LoadOptions::cpu` turns the CPU kernels off).
    pub cpu: Option<Arc<PackedConv>>,
}

/// Darknet's `normalize_cpu` epsilon (and `fuse_conv_batchnorm`'s).
pub const BN_EPS: f64 = 0.00001;

impl Convolutional {
    /// Loads `conv.weight` and `conv.bias` or `bn.*` from `vb` (the prefix `layers.{i}` of this layer, or of the
    /// layer named by `share_index`).
    pub fn load(
        vb: VarBuilder,
        cfg: &ConvConfig,
        input: Shape,
        output: Shape,
        opts: &LoadOptions,
    ) -> Result<Self> {
        // Darknet's bit-packed xnor path skips the batch norm: it only runs after fuse_conv_batchnorm.
        let fuse_bn = opts.fuse_bn || cfg.xnor;
        let w_shape = (cfg.filters, input.c / cfg.groups, cfg.size, cfg.size);
        let weight = vb.pp("conv").get(w_shape, "weight")?;
        // (weight, bias added after the convolution, unfused batch norm)
        let (weight, bias, bn) = if !cfg.batch_normalize {
            (weight, Some(vb.pp("conv").get(cfg.filters, "bias")?), None)
        } else {
            let bnvb = vb.pp("bn");
            let scale = bnvb.get(cfg.filters, "weight")?;
            let bias = bnvb.get(cfg.filters, "bias")?;
            let mean = bnvb.get(cfg.filters, "running_mean")?;
            let var = bnvb.get(cfg.filters, "running_var")?;
            if fuse_bn {
                let (weight, bias) = fuse(&weight, &bias, &scale, &mean, &var)?;
                (weight, Some(bias), None)
            } else {
                let r = |t: Tensor| t.reshape((1, cfg.filters, 1, 1));
                let bn = BatchNorm {
                    scale: r(scale)?,
                    bias: r(bias)?,
                    running_mean: r(mean)?,
                    running_var: r(var)?,
                };
                (weight, None, Some(bn))
            }
        };
        if cfg.xnor {
            let dropped = XnorWeights::drops_input(
                input.c,
                (input.h, input.w),
                (output.h, output.w),
                cfg.stride_x,
                cfg.pad,
            );
            let xnor = Some(XnorWeights::new(&weight, dropped)?);
            let mut cfg = cfg.clone();
            if cfg.bin_output {
                cfg.activation = Activation::Linear;
            }
            return Ok(Self {
                cfg,
                input,
                output,
                weight,
                bias,
                bn,
                xnor,
                cpu: None,
            });
        }
        Self {
            cfg: cfg.clone(),
            input,
            output,
            weight,
            bias,
            bn,
            xnor: None,
            cpu: None,
        }
        .packed(&opts.cpu)
    }

    /// Adds the CPU inference form when the weights live on the CPU and are not trainable variables.
    fn packed(mut self, opts: &crate::cpu::CpuOptions) -> Result<Self> {
        if !self.weight.device().is_cpu() || self.weight.is_variable() || !opts.enabled {
            return Ok(self);
        }
        let bn = self.bn.as_ref().map(|bn| BnTensors {
            scale: &bn.scale,
            bias: &bn.bias,
            mean: &bn.running_mean,
            var: &bn.running_var,
            eps: BN_EPS,
        });
        let p = PackedConv::new(
            &self.cfg,
            self.input,
            self.output,
            &self.weight,
            self.bias.as_ref(),
            bn,
            opts,
        )?;
        self.cpu = p.map(Arc::new);
        Ok(self)
    }

    /// The convolution alone (`gemm` over `im2col_cpu_ext`), without bias or normalisation. For training
    /// (`differentiable_gemm`) an ungrouped, undilated convolution runs as [`conv_im2col`], whose backward is two
    /// matrix products; otherwise candle's `conv2d`.
    pub fn convolve(&self, x: &Tensor, differentiable_gemm: bool) -> Result<Tensor> {
        let c = &self.cfg;
        if c.stride_x != c.stride_y {
            candle_core::bail!(
                "convolution with stride_x={} != stride_y={} is not supported",
                c.stride_x,
                c.stride_y
            );
        }
        if c.dilation == 1 && c.groups == 1 && differentiable_gemm {
            return conv_im2col(x, &self.weight, c.pad, c.stride_x);
        }
        if c.dilation == 1 {
            return x.conv2d(&self.weight, c.pad, c.stride_x, 1, c.groups);
        }
        // Darknet's output is (h + 2p - size)/s + 1 even with dilation; pad the far side so candle reads the same
        // zeros im2col_cpu_ext reads, then keep Darknet's output size.
        let extra = (c.dilation - 1) * (c.size - 1);
        let x =
            x.pad_with_zeros(2, c.pad, c.pad + extra)?
                .pad_with_zeros(3, c.pad, c.pad + extra)?;
        let y = x.conv2d(&self.weight, 0, c.stride_x, c.dilation, c.groups)?;
        y.narrow(2, 0, self.output.h)?.narrow(3, 0, self.output.w)
    }

    /// Inference forward with the rolling statistics (or fused weights): the CPU kernel when the input is a
    /// CPU f32 tensor that tracks no gradient, else [`Self::forward_candle`]. Both give Darknet's result (the
    /// CPU kernel sums in a different order: differences of a few ulp).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(xw) = &self.xnor {
            let y = xw.forward(x, self.cfg.pad, self.cfg.stride_x)?;
            let y = match &self.bias {
                Some(b) => y.broadcast_add(&b.reshape((1, self.cfg.filters, 1, 1))?)?,
                None => y,
            };
            return activate(&y, self.cfg.activation);
        }
        if let Some(p) = &self.cpu {
            if cpu_input(x) {
                let y = p.forward(x)?;
                return match p.post_activation {
                    Some(a) => activate(&y, a),
                    None => Ok(y),
                };
            }
        }
        self.forward_candle(x)
    }

    /// The inference forward on `parts` (one tensor, or the parts of an in-place route) with the next layer
    /// folded into the CPU kernel's epilogue (`post`, [`crate::cpu::conv::Post`]): that layer's output, or
    /// `None` when the CPU kernel does not run this layer (the caller then runs both layers as usual).
    pub fn forward_post(
        &self,
        parts: &[Tensor],
        post: &crate::cpu::conv::Post,
    ) -> Result<Option<Tensor>> {
        match &self.cpu {
            Some(p) if p.post_activation.is_none() && parts.iter().all(cpu_input) => {
                p.forward_post(parts, Some(post)).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The forward with candle ops (every device, differentiable).
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.convolve(x, false)?;
        let y = match (&self.bn, &self.bias) {
            (Some(bn), _) => {
                // normalize_cpu: (x - mean) / sqrt(var + .00001f), then scale_bias, then add_bias.
                let std = (&bn.running_var + BN_EPS)?.sqrt()?;
                let y = y.broadcast_sub(&bn.running_mean)?.broadcast_div(&std)?;
                y.broadcast_mul(&bn.scale)?.broadcast_add(&bn.bias)?
            }
            (None, Some(b)) => y.broadcast_add(&b.reshape((1, self.cfg.filters, 1, 1))?)?,
            (None, None) => y,
        };
        activate(&y, self.cfg.activation)
    }
}

impl Convolutional {
    /// The ONNX form of [`Self::forward`]. The padding is `pad` on every side, plus, with dilation, the extra
    /// zeros on the bottom/right that Darknet's im2col reads (its output size ignores dilation, as
    /// [`Self::convolve`]). An unfused batch norm (never the case for `export`, which fuses as Darknet's
    /// `fuse_conv_batchnorm`) is spelled out as `normalize_cpu` + `scale_bias`.
    pub fn to_onnx(&self, g: &mut OnnxGraph, x: &str) -> Result<String> {
        let c = &self.cfg;
        if c.xnor {
            // Binarised weights and inputs (popcount of bits, zero padding as -1): no standard op computes it.
            candle_core::bail!("xnor=1 (Darknet's binary convolution) has no exact ONNX form");
        }
        let vec = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
        let w = g.weight(self.weight.dims(), &vec(&self.weight)?);
        let extra = (c.dilation - 1) * (c.size - 1);
        let (p, q) = (c.pad as i64, (c.pad + extra) as i64);
        let attrs = vec![
            ints("kernel_shape", &[c.size as i64, c.size as i64]),
            ints("strides", &[c.stride_y as i64, c.stride_x as i64]),
            ints("dilations", &[c.dilation as i64, c.dilation as i64]),
            ints("pads", &[p, p, q, q]),
            int("group", c.groups as i64),
        ];
        let y = match (&self.bn, &self.bias) {
            (None, Some(b)) => {
                let b = g.weight(&[c.filters], &vec(b)?);
                g.node("Conv", &[x, &w, &b], attrs)
            }
            (None, None) => g.node("Conv", &[x, &w], attrs),
            (Some(bn), _) => {
                let y = g.node("Conv", &[x, &w], attrs);
                let shape = [1, c.filters, 1, 1];
                let std: Vec<f32> = vec(&bn.running_var)?
                    .iter()
                    .map(|v| (v + BN_EPS as f32).sqrt())
                    .collect();
                let mean = g.weight(&shape, &vec(&bn.running_mean)?);
                let std = g.weight(&shape, &std);
                let scale = g.weight(&shape, &vec(&bn.scale)?);
                let bias = g.weight(&shape, &vec(&bn.bias)?);
                let y = g.node("Sub", &[&y, &mean], vec![]);
                let y = g.node("Div", &[&y, &std], vec![]);
                let y = g.node("Mul", &[&y, &scale], vec![]);
                g.node("Add", &[&y, &bias], vec![])
            }
        };
        Ok(activate_onnx(g, &y, c.activation))
    }

    /// Training-mode forward (`forward_convolutional_layer` with `state.train = 1`): the differentiable
    /// convolution, then batch norm with the mini-batch statistics, which also moves the rolling statistics of
    /// the parameters' owner (`.9·rolling + .1·batch`), or the bias; then the activation. `index` is this
    /// layer's index (a `share_index` layer updates the owner's statistics).
    pub fn forward_train(&self, x: &Tensor, index: usize, train: &TrainState) -> Result<Tensor> {
        if self.cfg.xnor {
            candle_core::bail!("training an xnor=1 convolution is not supported");
        }
        let y = self.convolve(x, true)?;
        let owner = self.cfg.share_index.unwrap_or(index);
        let y = match (&self.bn, &self.bias) {
            (Some(bn), _) => self.batchnorm_train(&y, bn, owner, train)?,
            (None, Some(b)) => y.broadcast_add(&b.reshape((1, self.cfg.filters, 1, 1))?)?,
            (None, None) => y,
        };
        activate(&y, self.cfg.activation)
    }

    /// [`batchnorm_train_with`] with this layer's scales and biases; writes the new rolling statistics into the
    /// owner's `bn.running_mean` / `bn.running_var` Vars.
    fn batchnorm_train(
        &self,
        y: &Tensor,
        bn: &BatchNorm,
        owner: usize,
        train: &TrainState,
    ) -> Result<Tensor> {
        let rm = train.var(&format!("layers.{owner}.bn.running_mean"))?;
        let rv = train.var(&format!("layers.{owner}.bn.running_var"))?;
        let out = batchnorm_train_with(
            y,
            &bn.scale.flatten_all()?,
            &bn.bias.flatten_all()?,
            rm.as_tensor(),
            rv.as_tensor(),
            train.rolling_momentum,
            train.bn_sums,
        )?;
        rm.set(&out.rolling_mean)?;
        rv.set(&out.rolling_variance)?;
        Ok(out.y)
    }
}

/// `fuse_conv_batchnorm` for one layer, in f64 like the C.
pub fn fuse(
    weight: &Tensor,
    bias: &Tensor,
    scale: &Tensor,
    mean: &Tensor,
    var: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let dev = weight.device().clone();
    let shape = weight.shape().clone();
    let v = |t: &Tensor| {
        t.to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()
    };
    let (mut w, mut b, s, m, var) = (v(weight)?, v(bias)?, v(scale)?, v(mean)?, v(var)?);
    let per = w.len() / b.len();
    for f in 0..b.len() {
        let denom = (var[f] as f64 + BN_EPS).sqrt();
        b[f] = (b[f] as f64 - s[f] as f64 * m[f] as f64 / denom) as f32;
        let k = s[f] as f64 / denom;
        for x in &mut w[f * per..(f + 1) * per] {
            *x = (*x as f64 * k) as f32;
        }
    }
    let n = b.len();
    Ok((
        Tensor::from_vec(w, shape, &dev)?,
        Tensor::from_vec(b, n, &dev)?,
    ))
}
