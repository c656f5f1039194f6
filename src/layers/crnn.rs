//! `[crnn]`: mirrors `parse_crnn` (src/parser.c), `make_crnn_layer` and `forward_crnn_layer`
//! (src/crnn_layer.c) at inference, as `detector test` runs it (`parse_network_cfg_custom(cfg, 1, 1)`: batch 1,
//! `time_steps` 1, so one step per image).
//!
//! Three convolutions of the same `size`/`stride`/`pad`/`activation`/`batch_normalize`: `input` (c → hidden),
//! `self` (hidden → hidden) and `output` (hidden → output). One step: `state = [state +] input(x) +
//! self(state)` (`shortcut=1` keeps the old state, else it is cleared first), then `output(state)` is the
//! layer's output. Weights in the file: the three convolutions in that order, each as
//! `load_convolutional_weights` (names `layers.{i}.input.*`, `.self.*`, `.output.*`). `fuse_conv_batchnorm`
//! only fuses `[convolutional]` layers, so the three keep their batch norm unfused, as here.
//!
//! Deliberate difference: Darknet keeps the hidden state (`l.state`, zero at load) across `network_predict`
//! calls, which is what the tracking cfg relies on for video; every forward here starts from the zero state,
//! i.e. each image is computed as Darknet's first prediction after loading. Training is refused.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::convolutional::{ConvConfig, Convolutional};
use super::{DarknetLayer, Inputs, LayerType, LoadOptions, Param, TrainState};
use crate::cfg::error::CfgResult;
use crate::cfg::options::{usize_of, Activation};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};

/// `[crnn]` (`parse_crnn`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CrnnConfig {
    /// `hidden`: channels of the state.
    pub hidden: usize,
    /// `output`: channels of the output.
    pub output: usize,
    pub size: usize,
    pub stride: usize,
    pub dilation: usize,
    /// Zero padding in pixels (`padding`, or `size/2` when `pad=1`).
    pub pad: usize,
    pub groups: usize,
    pub activation: Activation,
    pub batch_normalize: bool,
    /// `shortcut=1`: the state accumulates over steps instead of being replaced.
    pub shortcut: bool,
}

/// `parse_crnn`, each key with its Darknet default.
pub fn parse_crnn(s: &Section) -> CfgResult<CrnnConfig> {
    let size = usize_of(s.int_or("size", 3)?, s, "size", 1)?;
    let stride = usize_of(s.int_or("stride", 1)?, s, "stride", 1)?;
    let dilation = usize_of(s.int_or("dilation", 1)?, s, "dilation", 1)?;
    let pad_flag = s.int_or("pad", 0)? != 0;
    let padding = usize_of(s.int_or("padding", 0)?, s, "padding", 0)?;
    let pad = if pad_flag { size / 2 } else { padding };
    let output = usize_of(s.int_or("output", 1)?, s, "output", 1)?;
    let hidden = usize_of(s.int_or("hidden", 1)?, s, "hidden", 1)?;
    let groups = usize_of(s.int_or("groups", 1)?, s, "groups", 1)?;
    let activation = Activation::parse(&s.str_or("activation", "logistic"), s)?;
    let batch_normalize = s.int_or("batch_normalize", 0)? != 0;
    if s.int_or("xnor", 0)? != 0 {
        return Err(s.invalid("xnor=1 in [crnn] is not supported"));
    }
    let shortcut = s.int_or("shortcut", 0)? != 0;
    if !hidden.is_multiple_of(groups) || !output.is_multiple_of(groups) {
        return Err(s.invalid(format!(
            "hidden={hidden} and output={output} must be divisible by groups={groups}"
        )));
    }
    Ok(CrnnConfig {
        hidden,
        output,
        size,
        stride,
        dilation: if size == 1 { 1 } else { dilation },
        pad,
        groups,
        activation,
        batch_normalize,
        shortcut,
    })
}

/// The three convolutions, in the file's order, with their input channel counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Input,
    SelfState,
    Output,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Input, Part::SelfState, Part::Output];

    /// The tensor-name prefix of this convolution.
    pub fn prefix(self) -> &'static str {
        match self {
            Part::Input => "input",
            Part::SelfState => "self",
            Part::Output => "output",
        }
    }
}

impl CrnnConfig {
    /// The `[convolutional]` config of one of the three (`make_crnn_layer`'s `make_convolutional_layer` calls).
    pub fn conv(&self, part: Part) -> ConvConfig {
        ConvConfig {
            filters: match part {
                Part::Output => self.output,
                _ => self.hidden,
            },
            size: self.size,
            stride_x: self.stride,
            stride_y: self.stride,
            dilation: self.dilation,
            pad: self.pad,
            groups: self.groups,
            activation: self.activation,
            batch_normalize: self.batch_normalize,
            share_index: None,
            flipped: false,
            xnor: false,
            bin_output: false,
        }
    }

    /// Input channels of one of the three.
    pub fn in_channels(&self, part: Part, input_c: usize) -> usize {
        match part {
            Part::Input => input_c,
            _ => self.hidden,
        }
    }

    /// `(filters, weights per filter)` of each convolution, in file order, for an input of `input_c` channels.
    pub fn units(&self, input_c: usize) -> Vec<(usize, usize)> {
        Part::ALL
            .iter()
            .map(|&p| {
                let c = self.conv(p);
                (
                    c.filters,
                    self.in_channels(p, input_c) / self.groups * self.size * self.size,
                )
            })
            .collect()
    }

    /// The spatial output size of each convolution (`convolutional_out_height`).
    fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let f = |x: usize| {
            (x + 2 * self.pad)
                .checked_sub(self.size)
                .map(|v| v / self.stride + 1)
        };
        Some((f(h)?, f(w)?))
    }
}

const PARAM_NAMES: [[&str; 5]; 3] = [
    [
        "input.bn.bias",
        "input.bn.weight",
        "input.bn.running_mean",
        "input.bn.running_var",
        "input.conv.weight",
    ],
    [
        "self.bn.bias",
        "self.bn.weight",
        "self.bn.running_mean",
        "self.bn.running_var",
        "self.conv.weight",
    ],
    [
        "output.bn.bias",
        "output.bn.weight",
        "output.bn.running_mean",
        "output.bn.running_var",
        "output.conv.weight",
    ],
];
const PARAM_NAMES_NO_BN: [[&str; 2]; 3] = [
    ["input.conv.bias", "input.conv.weight"],
    ["self.conv.bias", "self.conv.weight"],
    ["output.conv.bias", "output.conv.weight"],
];

impl LayerType for CrnnConfig {
    fn parse(s: &Section, _index: usize) -> CfgResult<Self> {
        parse_crnn(s)
    }

    fn type_name(&self) -> &'static str {
        "crnn"
    }

    /// `make_crnn_layer`: the output convolution's size; the state must keep the input's size (Darknet asserts
    /// `input_layer->outputs == output_layer->inputs`).
    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        if i.numel() == 0 {
            return Err("the layer before [crnn] must output an image".into());
        }
        if !i.c.is_multiple_of(self.groups) {
            return Err(format!(
                "input channels {} not divisible by groups={}",
                i.c, self.groups
            ));
        }
        match self.out_hw(i.h, i.w) {
            Some((h, w)) if (h, w) == (i.h, i.w) => Ok(Shape::new(self.output, h, w)),
            Some((h, w)) => Err(format!(
                "the state ({h}x{w}) must keep the input size {}x{} (Darknet asserts it)",
                i.h, i.w
            )),
            None => Err(format!("kernel {} larger than padded input {i}", self.size)),
        }
    }

    /// `l.bflops`: the sum of the three convolutions'.
    fn bflops(&self, l: &LayerSpec) -> f64 {
        let hw = (l.output.h * l.output.w) as f64;
        self.units(l.input.c)
            .iter()
            .map(|(n, per)| 2.0 * (n * per) as f64 * hw / 1e9)
            .sum()
    }

    /// `load_weights`' CRNN case: `load_convolutional_weights` of input, self, output.
    fn parameters(&self, l: &LayerSpec) -> Vec<Param> {
        let mut v = Vec::new();
        for (k, &part) in Part::ALL.iter().enumerate() {
            let c = self.conv(part);
            let f = c.filters;
            let weight = vec![
                f,
                self.in_channels(part, l.input.c) / self.groups,
                self.size,
                self.size,
            ];
            let p = |name, shape: Vec<usize>| Param { name, shape };
            if self.batch_normalize {
                let n = PARAM_NAMES[k];
                v.extend([
                    p(n[0], vec![f]),
                    p(n[1], vec![f]),
                    p(n[2], vec![f]),
                    p(n[3], vec![f]),
                    p(n[4], weight),
                ]);
            } else {
                let n = PARAM_NAMES_NO_BN[k];
                v.extend([p(n[0], vec![f]), p(n[1], weight)]);
            }
        }
        v
    }

    /// `make_crnn_layer`'s line.
    fn info(&self, l: &LayerSpec) -> String {
        format!(
            "CRNN Layer: {} x {} x {} image, {} filters",
            l.input.h, l.input.w, l.input.c, self.output
        )
    }
}

/// The built `[crnn]` layer (its convolutions boxed: three inline would make every [`super::Layer`] large).
#[derive(Debug, Clone)]
pub struct Crnn {
    pub cfg: CrnnConfig,
    pub input: Box<Convolutional>,
    pub state: Box<Convolutional>,
    pub output: Box<Convolutional>,
}

impl DarknetLayer for Crnn {
    type Config = CrnnConfig;

    /// The three convolutions from `layers.{i}.input/self/output`, batch norm unfused (see the module doc).
    fn load(
        cfg: &CrnnConfig,
        spec: &LayerSpec,
        vb: &VarBuilder,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let opts = LoadOptions {
            fuse_bn: false,
            ..*opts
        };
        let vb = vb.pp(spec.index);
        let (h, w) = (spec.input.h, spec.input.w);
        let load = |part: Part| {
            let c = cfg.conv(part);
            let input = Shape::new(cfg.in_channels(part, spec.input.c), h, w);
            let output = Shape::new(c.filters, h, w);
            Convolutional::load(vb.pp(part.prefix()), &c, input, output, &opts).map(Box::new)
        };
        Ok(Crnn {
            cfg: cfg.clone(),
            input: load(Part::Input)?,
            state: load(Part::SelfState)?,
            output: load(Part::Output)?,
        })
    }

    /// One step of `forward_crnn_layer` from the zero state.
    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        let (n, _, h, w) = x.dims4()?;
        let zero = Tensor::zeros((n, self.cfg.hidden, h, w), x.dtype(), x.device())?;
        let from_input = self.input.forward(x)?;
        let from_state = self.state.forward(&zero)?;
        // shortcut=1: copy the old state (zero here), then add both; else fill 0, then add both.
        let state = (from_input + from_state)?;
        self.output.forward(&state)
    }

    fn forward_train(&self, _x: &Tensor, inputs: &Inputs, _train: &TrainState) -> Result<Tensor> {
        candle_core::bail!(
            "layer {}: training a [crnn] layer is not implemented",
            inputs.index
        )
    }
}
