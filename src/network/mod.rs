//! The network: builds one layer object per cfg layer and runs them in order, as `forward_network`
//! (src/network.c) does, keeping each output only as long as a later `[route]`, `[shortcut]`,
//! `[scale_channels]` or `[sam]` needs it. One loop serves both modes: inference ([`Network::forward_heads`]
//! and friends) and training ([`trainable::TrainableNetwork::forward_train`], `state.train = 1`).

pub mod trainable;

pub use trainable::{TrainForward, TrainableNetwork};

use std::collections::HashMap;

use anyhow::Context;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::cfg::{LayerConfig, NetworkConfig};
use crate::layers::convolutional::Convolutional;
use crate::layers::maxpool::Maxpool;
use crate::layers::region::Region;
use crate::layers::reorg::Reorg;
use crate::layers::route::Route;
use crate::layers::shortcut::Shortcut;
use crate::layers::upsample::Upsample;
use crate::layers::yolo::Yolo;
use crate::layers::{avgpool, scale_channels, TrainState};
use crate::weights::NetWeights;

/// How to build the network.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Fold batch norm into the convolution as `fuse_conv_batchnorm` does (what `darknet detector test` runs).
    pub fuse_bn: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { fuse_bn: true }
    }
}

/// One built layer.
#[derive(Debug, Clone)]
pub enum Layer {
    Convolutional(Convolutional),
    Maxpool(Maxpool),
    Route(Route),
    Shortcut(Shortcut),
    Upsample(Upsample),
    Yolo(Yolo),
    Region(Region),
    Avgpool,
    Reorg(Reorg),
    ScaleChannels {
        from: usize,
        activation: crate::cfg::Activation,
    },
    Identity,
}

/// `(layer index, output)` of each detection head, in layer order.
pub type HeadOutputs = Vec<(usize, Tensor)>;

pub struct Network {
    pub cfg: NetworkConfig,
    pub layers: Vec<Layer>,
    /// For each layer, the last layer that reads its output (itself if none).
    last_use: Vec<usize>,
    pub device: Device,
}

/// Layers whose outputs layer `l` reads besides its direct input.
pub fn extra_inputs(config: &LayerConfig) -> Vec<usize> {
    match config {
        LayerConfig::Route(r) => r.layers.clone(),
        LayerConfig::Shortcut(s) => s.from.clone(),
        LayerConfig::ScaleChannels(s) => vec![s.from],
        LayerConfig::Sam(s) => vec![s.from],
        _ => vec![],
    }
}

impl Network {
    /// Builds the network from a `VarBuilder` holding the tensors named as in [`crate::weights`].
    pub fn load(cfg: &NetworkConfig, vb: VarBuilder, opts: &LoadOptions) -> Result<Self> {
        let device = vb.device().clone();
        let vbl = vb.pp("layers");
        let mut layers = Vec::with_capacity(cfg.layers.len());
        for spec in &cfg.layers {
            let built = build_layer(spec, &vbl, opts, &device).map_err(|e| {
                candle_core::Error::Msg(format!(
                    "building layer {} ({}): {e}",
                    spec.index,
                    spec.config.type_name()
                ))
            })?;
            layers.push(built);
        }
        let mut last_use: Vec<usize> = (0..cfg.layers.len()).collect();
        for spec in &cfg.layers {
            for i in extra_inputs(&spec.config) {
                last_use[i] = last_use[i].max(spec.index);
            }
            if spec.index > 0 {
                last_use[spec.index - 1] = last_use[spec.index - 1].max(spec.index);
            }
        }
        Ok(Network {
            cfg: cfg.clone(),
            layers,
            last_use,
            device,
        })
    }

    /// Builds the network from parsed weights.
    pub fn from_weights(
        cfg: &NetworkConfig,
        weights: &NetWeights,
        device: &Device,
        opts: &LoadOptions,
    ) -> anyhow::Result<Self> {
        let tensors: HashMap<String, Tensor> = weights.to_tensors(cfg, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Network::load(cfg, vb, opts).context("building the network")
    }

    /// Runs the network on `x` (`[batch, c, h, w]`, values in [0, 1]) and returns the outputs of the detection
    /// heads (`[yolo]`/`[region]`), in layer order, as `(layer index, tensor)`.
    pub fn forward_heads(&self, x: &Tensor) -> Result<Vec<(usize, Tensor)>> {
        let heads = self.cfg.head_indices();
        let outs = self.run(x, |i| heads.contains(&i))?;
        Ok(heads
            .into_iter()
            .map(|i| (i, outs[i].clone().expect("kept head output")))
            .collect())
    }

    /// Every layer's output (for layer-by-layer comparison).
    pub fn forward_all(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        Ok(self
            .run(x, |_| true)?
            .into_iter()
            .map(|t| t.expect("kept"))
            .collect())
    }

    /// Output of the last layer.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut outs = self.run(x, |i| i == last)?;
        Ok(outs.pop().flatten().expect("last output"))
    }

    /// Runs the network like [`Self::forward_heads`] and also returns each layer's wall time in milliseconds
    /// (the device is synchronised after every layer), as Darknet's `-benchmark_layers` measures them.
    pub fn forward_timed(&self, x: &Tensor) -> Result<(HeadOutputs, Vec<f64>)> {
        let heads = self.cfg.head_indices();
        let mut times = Vec::with_capacity(self.layers.len());
        let outs = self.run_impl(x, |i| heads.contains(&i), Some(&mut times), None)?;
        let heads = heads
            .into_iter()
            .map(|i| (i, outs[i].clone().expect("kept head output")))
            .collect();
        Ok((heads, times))
    }

    /// Runs every layer, keeping the outputs for which `keep` is true and dropping the others after their last use.
    fn run(&self, x: &Tensor, keep: impl Fn(usize) -> bool) -> Result<Vec<Option<Tensor>>> {
        self.run_impl(x, keep, None, None)
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let want = self.cfg.input_shape();
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != want.c || dims[2] != want.h || dims[3] != want.w {
            candle_core::bail!(
                "network input must be [batch, {}, {}, {}], got {:?}",
                want.c,
                want.h,
                want.w,
                dims
            );
        }
        Ok(())
    }

    /// `forward_network`: each layer on the previous output. `train` selects training mode (`state.train = 1`):
    /// batch statistics in batch norm, and gradients stop below `stopbackward=1` layers. `times` collects each
    /// layer's wall time.
    pub(crate) fn run_impl(
        &self,
        x: &Tensor,
        keep: impl Fn(usize) -> bool,
        mut times: Option<&mut Vec<f64>>,
        train: Option<&TrainState>,
    ) -> Result<Vec<Option<Tensor>>> {
        self.check_input(x)?;
        let mut outs: Vec<Option<Tensor>> = vec![None; self.layers.len()];
        let mut input = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let t0 = times.as_ref().map(|_| std::time::Instant::now());
            let inputs = Inputs {
                index: i,
                outs: &outs,
            };
            let y = match train {
                None => layer.forward(&input, &inputs),
                Some(t) => layer.forward_train(&input, &inputs, t),
            }
            .map_err(|e| {
                candle_core::Error::Msg(format!(
                    "layer {i} ({}): {e}",
                    self.cfg.layers[i].config.type_name()
                ))
            })?;
            if let (Some(times), Some(t0)) = (times.as_mut(), t0) {
                self.device.synchronize()?;
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            // `stopbackward=1`: backward_network stops at this layer (network.c `if (l.stopbackward) break;`).
            let y = if train.is_some() && self.cfg.layers[i].stopbackward {
                y.detach()
            } else {
                y
            };
            outs[i] = Some(y.clone());
            input = y;
            // Free what no later layer reads (training keeps every output for the backward pass).
            for j in 0..=i {
                if self.last_use[j] <= i && !keep(j) {
                    outs[j] = None;
                }
            }
        }
        Ok(outs)
    }
}

/// The outputs of earlier layers that a layer may read (`net.layers[j].output` in Darknet).
pub struct Inputs<'a> {
    /// The index of the running layer.
    pub index: usize,
    outs: &'a [Option<Tensor>],
}

impl Inputs<'_> {
    /// The output of layer `j`.
    pub fn output(&self, j: usize) -> Result<&Tensor> {
        self.outs[j].as_ref().ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "output of layer {j} was freed before layer {}",
                self.index
            ))
        })
    }

    /// The outputs of layers `js`, in order.
    pub fn outputs(&self, js: &[usize]) -> Result<Vec<&Tensor>> {
        js.iter().map(|&j| self.output(j)).collect()
    }
}

impl Layer {
    /// Inference forward (`state.train = 0`).
    pub fn forward(&self, x: &Tensor, inputs: &Inputs) -> Result<Tensor> {
        match self {
            Layer::Convolutional(c) => c.forward(x),
            Layer::Maxpool(m) => m.forward(x),
            Layer::Route(r) => r.forward(&inputs.outputs(&r.cfg.layers)?),
            Layer::Shortcut(s) => s.forward(x, &inputs.outputs(&s.cfg.from)?),
            Layer::Upsample(u) => u.forward(x),
            Layer::Yolo(y) => y.forward(x),
            Layer::Region(r) => r.forward(x),
            Layer::Avgpool => avgpool::forward(x),
            Layer::Reorg(r) => r.forward(x),
            Layer::ScaleChannels { from, activation } => {
                scale_channels::forward(x, inputs.output(*from)?, *activation)
            }
            Layer::Identity => Ok(x.clone()),
        }
    }

    /// Training forward (`state.train = 1`): only batch norm differs; every other layer runs its inference code,
    /// written with differentiable candle ops.
    pub fn forward_train(&self, x: &Tensor, inputs: &Inputs, train: &TrainState) -> Result<Tensor> {
        match self {
            Layer::Convolutional(c) => c.forward_train(x, inputs.index, train),
            other => other.forward(x, inputs),
        }
    }
}

fn build_layer(
    spec: &crate::cfg::LayerSpec,
    vbl: &VarBuilder,
    opts: &LoadOptions,
    device: &Device,
) -> Result<Layer> {
    Ok(match &spec.config {
        LayerConfig::Convolutional(c) => {
            // share_index: use the tensors of the layer that owns them.
            let owner = c.share_index.unwrap_or(spec.index);
            Layer::Convolutional(Convolutional::load(
                vbl.pp(owner),
                c,
                spec.input,
                spec.output,
                opts.fuse_bn,
            )?)
        }
        LayerConfig::Maxpool(m) => Layer::Maxpool(Maxpool::new(m, spec.input, spec.output)),
        LayerConfig::Route(r) => Layer::Route(Route { cfg: r.clone() }),
        LayerConfig::Shortcut(s) => Layer::Shortcut(Shortcut::new(s)?),
        LayerConfig::Upsample(u) => Layer::Upsample(Upsample {
            cfg: u.clone(),
            output: spec.output,
        }),
        LayerConfig::Yolo(y) => Layer::Yolo(Yolo { cfg: y.clone() }),
        LayerConfig::Region(r) => Layer::Region(Region { cfg: r.clone() }),
        LayerConfig::Avgpool => Layer::Avgpool,
        LayerConfig::Reorg(r) => Layer::Reorg(Reorg::new(r, spec.input, spec.output, device)?),
        LayerConfig::ScaleChannels(s) => Layer::ScaleChannels {
            from: s.from,
            activation: s.activation,
        },
        LayerConfig::Sam(s) => Layer::ScaleChannels {
            from: s.from,
            activation: s.activation,
        },
        LayerConfig::Dropout(_) | LayerConfig::Empty => Layer::Identity,
    })
}
