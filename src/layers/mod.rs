//! One file per Darknet layer type, as Darknet keeps `parse_X` (src/parser.c) and `make_/forward_X_layer`
//! (src/X_layer.c) together. Each file owns its layer type whole:
//! - its parsed config, read by `parse_X` with every key's Darknet default beside it;
//! - [`LayerType`] on that config: output shape (`make_X_layer`), the `info` line and BFLOPs of Darknet's layer
//!   table, the earlier layers it reads;
//! - its built layer and [`DarknetLayer`] on it (candle-transformers style: a Config and `load(vb)`): parameter
//!   names, inference forward and training forward.
//!
//! The network ([`crate::network`]) only iterates over [`Layer`]s. Adding a layer type = one new file here plus
//! one line in the [`layer_types!`] list at the bottom (docs/architecture.md walks through an example).

pub mod activation;
pub mod avgpool;
pub mod batchnorm;
pub mod contrastive;
pub mod convolutional;
pub mod crnn;
pub mod dropout;
pub mod empty;
pub mod im2col;
pub mod maxpool;
pub mod region;
pub mod reorg;
pub mod route;
pub mod sam;
pub mod scale_channels;
pub mod shortcut;
pub mod softmax_tree;
pub mod upsample;
pub mod xnor;
pub mod yolo;

use candle_core::{Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::cfg::error::{CfgErrorKind, CfgResult};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::{OnnxCtx, OnnxGraph};

/// The cfg half of a layer type: what `parse_X` reads and what `make_X_layer` derives from it.
pub trait LayerType {
    /// `parse_X`: the section's keys with Darknet's defaults; `index` is this layer's index (for relative
    /// layer references).
    fn parse(s: &Section, index: usize) -> CfgResult<Self>
    where
        Self: Sized;

    /// Darknet's name of the layer type, as in its layer table and the reference manifests.
    fn type_name(&self) -> &'static str;

    /// `l.out_c, l.out_h, l.out_w` as `make_X_layer` computes them from the input; `prev` are the layers
    /// before this one. The message says why the layer cannot be built on that input.
    fn output_shape(&self, input: Shape, prev: &[LayerSpec]) -> std::result::Result<Shape, String>;

    /// Earlier layers whose outputs this one reads besides its input (`layers=`, `from=`).
    fn extra_inputs(&self) -> Vec<usize> {
        Vec::new()
    }

    /// The line `parse_network_cfg` prints for this layer, after the index.
    fn info(&self, l: &LayerSpec) -> String;

    /// `l.bflops`: billions of floating point operations of one forward pass (0 for most layers).
    fn bflops(&self, _l: &LayerSpec) -> f64 {
        0.0
    }

    /// The parameter tensors this layer stores in a `.weights` file, in the file's order (`load_X_weights`),
    /// each named under `layers.{index}.` (the names [`DarknetLayer::load`] reads). Empty for most layers.
    fn parameters(&self, _l: &LayerSpec) -> Vec<Param> {
        Vec::new()
    }
}

/// One parameter tensor of a layer: its name under `layers.{index}.` and its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: &'static str,
    pub shape: Vec<usize>,
}

impl Param {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The built half of a layer type (candle-transformers style: a config and `load(vb)`, then forward).
pub trait DarknetLayer: Sized {
    type Config: LayerType;

    /// Builds the layer from its config and shapes, taking its parameters from `vb` (prefix `layers`: the layer
    /// picks `layers.{index}`, names as in [`crate::weights`]).
    fn load(
        cfg: &Self::Config,
        spec: &LayerSpec,
        vb: &VarBuilder,
        opts: &LoadOptions,
    ) -> Result<Self>;

    /// `forward_X_layer` with `state.train = 0`.
    fn forward(&self, x: &Tensor, inputs: &Inputs) -> Result<Tensor>;

    /// `forward_X_layer` with `state.train = 1`. Most layers compute the same thing in both modes with
    /// differentiable candle ops, hence the default.
    fn forward_train(&self, x: &Tensor, inputs: &Inputs, _train: &TrainState) -> Result<Tensor> {
        self.forward(x, inputs)
    }

    /// Which kernel runs the inference forward of this layer on a CPU f32 input (`bench --layers`): one of
    /// [`crate::cpu`]'s, or `candle` for candle's ops.
    fn kernel(&self) -> &'static str {
        "candle"
    }

    /// Whether [`Self::forward_parts`] reads a concatenation's parts in place (a CPU kernel that takes
    /// [`crate::cpu::planes`]); the network then skips materialising a `[route]` whose only reader this is.
    fn takes_parts(&self) -> bool {
        false
    }

    /// The inference forward on the channel-wise concatenation of `parts` (`[batch, c_i, h, w]` each): the
    /// same result as [`Self::forward`] on `Tensor::cat(parts, 1)`, which is the default.
    fn forward_parts(&self, parts: &[Tensor], inputs: &Inputs) -> Result<Tensor> {
        self.forward(&Tensor::cat(parts, 1)?, inputs)
    }

    /// The ONNX form of the inference forward (`candle-darknet export`, [`crate::export`]): adds this layer's
    /// nodes to `g`, reading the value named `x` (and earlier layers' outputs through `ctx`), and returns the name
    /// of its output. Standard ONNX ops with Darknet's exact semantics only; a layer type or option that has no
    /// exact form returns the reason, and the exporter refuses with the layer's index and type. Default: refused.
    fn to_onnx(
        &self,
        _g: &mut OnnxGraph,
        _x: &str,
        _ctx: &OnnxCtx,
    ) -> std::result::Result<String, String> {
        Err("this layer type has no ONNX form in the exporter".into())
    }
}

/// How to build the network.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Fold batch norm into the convolution as `fuse_conv_batchnorm` does (what `darknet detector test` runs).
    pub fuse_bn: bool,
    /// The CPU inference kernels ([`crate::cpu`]): used for f32 CPU tensors that track no gradient.
    pub cpu: crate::cpu::CpuOptions,
    /// Images per forward pass the network will run, for the memory estimate checked before building
    /// ([`crate::limits::MemoryEstimate`]).
    pub batch: usize,
    /// The memory the estimate may reach (`--max-memory`); `None`: the machine's RAM or `ulimit -v`.
    pub max_memory: Option<u64>,
    /// Load NaN/inf parameters instead of refusing them (`--allow-nonfinite`).
    pub allow_nonfinite: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            fuse_bn: true,
            cpu: crate::cpu::CpuOptions::default(),
            batch: 1,
            max_memory: None,
            allow_nonfinite: false,
        }
    }
}

/// The outputs of earlier layers that a layer may read (`net.layers[j].output` in Darknet).
pub struct Inputs<'a> {
    /// The index of the running layer.
    pub index: usize,
    outs: &'a [Option<Tensor>],
}

impl<'a> Inputs<'a> {
    pub fn new(index: usize, outs: &'a [Option<Tensor>]) -> Self {
        Inputs { index, outs }
    }

    /// The output of layer `j`.
    pub fn output(&self, j: usize) -> Result<&'a Tensor> {
        self.outs[j].as_ref().ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "output of layer {j} was freed before layer {}",
                self.index
            ))
        })
    }

    /// The outputs of layers `js`, in order.
    pub fn outputs(&self, js: &[usize]) -> Result<Vec<&'a Tensor>> {
        js.iter().map(|&j| self.output(j)).collect()
    }
}

/// What a training-mode forward (`state.train = 1`) needs besides the input: the Vars that hold the rolling
/// statistics, which batch norm moves in place, and the rolling factor.
pub struct TrainState<'a> {
    pub varmap: &'a VarMap,
    /// `.9` on CPU Darknet ([`batchnorm::DARKNET_CPU_ROLLING_MOMENTUM`]).
    pub rolling_momentum: f64,
    /// How the mini-batch mean and variance are summed ([`batchnorm::BnSums`]).
    pub bn_sums: batchnorm::BnSums,
}

impl TrainState<'_> {
    /// The Var named `name` (names as in [`crate::weights`]).
    pub fn var(&self, name: &str) -> Result<Var> {
        self.varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .get(name)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("no variable '{name}'")))
    }
}

/// Darknet layer types we know but do not implement (`string_to_layer_type`).
const UNSUPPORTED: &[&str] = &[
    "crop",
    "cost",
    "detection",
    "local",
    "activation",
    "gru",
    "lstm",
    "conv_lstm",
    "history",
    "rnn",
    "conn",
    "connected",
    "lrn",
    "normalization",
    "batchnorm",
    "soft",
    "softmax",
    "implicit",
];

/// Builds the registry: [`LayerConfig`] (every parsed config), [`Layer`] (every built layer) and their
/// dispatch, from one line per layer type: `Variant(module::Config => BuiltLayer) ["section", "alias"]`.
macro_rules! layer_types {
    ($( $(#[$doc:meta])* $variant:ident($module:ident::$config:ident => $layer:ident) [$($section:literal),+] ),+ $(,)?) => {
        /// Every layer type's parsed config.
        #[derive(Debug, Clone, serde::Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum LayerConfig {
            $( $(#[$doc])* $variant($module::$config), )+
        }

        /// Every built layer.
        #[derive(Debug, Clone)]
        pub enum Layer {
            $( $variant($module::$layer), )+
        }

        impl LayerConfig {
            /// `string_to_layer_type` then `parse_X`; unknown or unsupported types are errors with the line.
            pub fn parse(s: &Section, index: usize) -> CfgResult<Self> {
                match s.name.as_str() {
                    $( $($section)|+ => Ok(Self::$variant(<$module::$config as LayerType>::parse(s, index)?)), )+
                    name if UNSUPPORTED.contains(&name) => Err(s.error(CfgErrorKind::UnsupportedLayer {
                        section: name.to_string(),
                        index,
                    })),
                    name => Err(s.error(CfgErrorKind::UnknownLayer {
                        section: name.to_string(),
                        index,
                    })),
                }
            }

            /// This config as its [`LayerType`].
            pub fn as_layer_type(&self) -> &dyn LayerType {
                match self {
                    $( Self::$variant(c) => c, )+
                }
            }
        }

        impl Layer {
            /// Builds the layer `spec` describes (see [`DarknetLayer::load`]).
            pub fn load(spec: &LayerSpec, vb: &VarBuilder, opts: &LoadOptions) -> Result<Self> {
                Ok(match &spec.config {
                    $( LayerConfig::$variant(c) => Self::$variant(<$module::$layer as DarknetLayer>::load(c, spec, vb, opts)?), )+
                })
            }

            /// Inference forward (`state.train = 0`).
            pub fn forward(&self, x: &Tensor, inputs: &Inputs) -> Result<Tensor> {
                match self {
                    $( Self::$variant(l) => DarknetLayer::forward(l, x, inputs), )+
                }
            }

            /// Training forward (`state.train = 1`).
            pub fn forward_train(&self, x: &Tensor, inputs: &Inputs, train: &TrainState) -> Result<Tensor> {
                match self {
                    $( Self::$variant(l) => DarknetLayer::forward_train(l, x, inputs, train), )+
                }
            }

            /// The ONNX form of the inference forward ([`DarknetLayer::to_onnx`]).
            pub fn to_onnx(&self, g: &mut OnnxGraph, x: &str, ctx: &OnnxCtx) -> std::result::Result<String, String> {
                match self {
                    $( Self::$variant(l) => DarknetLayer::to_onnx(l, g, x, ctx), )+
                }
            }

            /// The kernel of the inference forward on the CPU ([`DarknetLayer::kernel`]).
            pub fn kernel(&self) -> &'static str {
                match self {
                    $( Self::$variant(l) => DarknetLayer::kernel(l), )+
                }
            }

            /// [`DarknetLayer::takes_parts`].
            pub fn takes_parts(&self) -> bool {
                match self {
                    $( Self::$variant(l) => DarknetLayer::takes_parts(l), )+
                }
            }

            /// [`DarknetLayer::forward_parts`].
            pub fn forward_parts(&self, parts: &[Tensor], inputs: &Inputs) -> Result<Tensor> {
                match self {
                    $( Self::$variant(l) => DarknetLayer::forward_parts(l, parts, inputs), )+
                }
            }
        }
    };
}

impl LayerConfig {
    /// Darknet's layer type name ([`LayerType::type_name`]).
    pub fn type_name(&self) -> &'static str {
        self.as_layer_type().type_name()
    }

    /// Earlier layers this one reads besides its input ([`LayerType::extra_inputs`]).
    pub fn extra_inputs(&self) -> Vec<usize> {
        self.as_layer_type().extra_inputs()
    }

    /// Whether this is a detection head (`[yolo]`, `[Gaussian_yolo]`, `[region]`).
    pub fn is_head(&self) -> bool {
        matches!(self, Self::Yolo(_) | Self::Region(_))
    }
}

// The registry: one line per layer type (variant, config => built layer, cfg section names).
layer_types! {
    Convolutional(convolutional::ConvConfig => Convolutional) ["convolutional", "conv"],
    Maxpool(maxpool::MaxpoolConfig => Maxpool) ["maxpool", "max", "local_avgpool", "local_avg"],
    Route(route::RouteConfig => Route) ["route"],
    Shortcut(shortcut::ShortcutConfig => Shortcut) ["shortcut"],
    Upsample(upsample::UpsampleConfig => Upsample) ["upsample"],
    Yolo(yolo::YoloConfig => Yolo) ["yolo", "Gaussian_yolo"],
    Region(region::RegionConfig => Region) ["region"],
    Avgpool(avgpool::AvgpoolConfig => Avgpool) ["avgpool", "avg"],
    Reorg(reorg::ReorgConfig => Reorg) ["reorg", "reorg3d"],
    ScaleChannels(scale_channels::ScaleChannelsConfig => ScaleChannels) ["scale_channels"],
    Sam(sam::SamConfig => Sam) ["sam"],
    Dropout(dropout::DropoutConfig => Dropout) ["dropout"],
    /// `[crnn]`: a convolutional recurrent layer (one step from the zero state).
    Crnn(crnn::CrnnConfig => Crnn) ["crnn"],
    /// `[empty]`/`[silence]`: passes its input through.
    Empty(empty::EmptyConfig => Empty) ["empty", "silence"],
    /// `[contrastive]`: zeros at inference (its forward only runs when training).
    Contrastive(contrastive::ContrastiveConfig => Contrastive) ["contrastive"],
}

/// `input -> output` as Darknet's layer table prints them (`w x h x c`).
pub(crate) fn io_shapes(l: &LayerSpec) -> String {
    let (i, o) = (l.input, l.output);
    format!(
        "{:4} x{:4} x{:4} -> {:4} x{:4} x{:4}",
        i.w, i.h, i.c, o.w, o.h, o.c
    )
}
