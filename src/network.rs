//! The network: builds one layer object per cfg layer and runs them in order, as `forward_network`
//! (src/network.c) does, keeping each output only as long as a later `[route]`, `[shortcut]`,
//! `[scale_channels]` or `[sam]` needs it.

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
use crate::layers::{avgpool, scale_channels};
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
        let outs = self.run_impl(x, |i| heads.contains(&i), Some(&mut times))?;
        let heads = heads
            .into_iter()
            .map(|i| (i, outs[i].clone().expect("kept head output")))
            .collect();
        Ok((heads, times))
    }

    /// Runs every layer, keeping the outputs for which `keep` is true and dropping the others after their last use.
    fn run(&self, x: &Tensor, keep: impl Fn(usize) -> bool) -> Result<Vec<Option<Tensor>>> {
        self.run_impl(x, keep, None)
    }

    fn run_impl(
        &self,
        x: &Tensor,
        keep: impl Fn(usize) -> bool,
        mut times: Option<&mut Vec<f64>>,
    ) -> Result<Vec<Option<Tensor>>> {
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
        let mut outs: Vec<Option<Tensor>> = vec![None; self.layers.len()];
        let mut input = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let t0 = times.as_ref().map(|_| std::time::Instant::now());
            let y = self.forward_layer(i, layer, &input, &outs).map_err(|e| {
                candle_core::Error::Msg(format!(
                    "layer {i} ({}): {e}",
                    self.cfg.layers[i].config.type_name()
                ))
            })?;
            if let (Some(times), Some(t0)) = (times.as_mut(), t0) {
                self.device.synchronize()?;
                times.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            outs[i] = Some(y.clone());
            input = y;
            // Free what no later layer reads.
            for j in 0..=i {
                if self.last_use[j] <= i && !keep(j) {
                    outs[j] = None;
                }
            }
        }
        Ok(outs)
    }

    fn forward_layer(
        &self,
        i: usize,
        layer: &Layer,
        x: &Tensor,
        outs: &[Option<Tensor>],
    ) -> Result<Tensor> {
        let get = |j: usize| -> Result<&Tensor> {
            outs[j].as_ref().ok_or_else(|| {
                candle_core::Error::Msg(format!("output of layer {j} was freed before layer {i}"))
            })
        };
        match layer {
            Layer::Convolutional(c) => c.forward(x),
            Layer::Maxpool(m) => m.forward(x),
            Layer::Route(r) => {
                let ins = r
                    .cfg
                    .layers
                    .iter()
                    .map(|&j| get(j))
                    .collect::<Result<Vec<_>>>()?;
                r.forward(&ins)
            }
            Layer::Shortcut(s) => {
                let from = s
                    .cfg
                    .from
                    .iter()
                    .map(|&j| get(j))
                    .collect::<Result<Vec<_>>>()?;
                s.forward(x, &from)
            }
            Layer::Upsample(u) => u.forward(x),
            Layer::Yolo(y) => y.forward(x),
            Layer::Region(r) => r.forward(x),
            Layer::Avgpool => avgpool::forward(x),
            Layer::Reorg(r) => r.forward(x),
            Layer::ScaleChannels { from, activation } => {
                scale_channels::forward(x, get(*from)?, *activation)
            }
            Layer::Identity => Ok(x.clone()),
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

/// Training mode: the network on candle `Var`s (unfused batch norm), as `forward_network` runs with
/// `state.train = 1`. Batch-normalised convolutions use the mini-batch statistics
/// ([`crate::train::batchnorm_train`], Darknet's CPU `forward_batchnorm_layer`) and update the rolling
/// mean/variance Vars in place (`.9·rolling + .1·batch`); every other layer runs its inference code, which is
/// written with differentiable candle ops (maxpool through `separable_max` or candle's `size == stride` pool).
///
/// Deliberate differences: max-pool and leaky ties (equal inputs) share the gradient where Darknet gives it to
/// the first index; shared (`share_index`) layers update the owner's rolling statistics.
pub struct TrainableNetwork {
    /// The layers, built on the Vars' tensors (so gradients reach the Vars).
    pub net: Network,
    /// Every parameter and rolling statistic, named as in [`crate::weights`].
    pub varmap: candle_nn::VarMap,
    /// `.9` on CPU Darknet (`DARKNET_CPU_ROLLING_MOMENTUM`).
    pub rolling_momentum: f64,
}

/// What [`TrainableNetwork::forward_train`] returns.
pub struct TrainForward {
    /// Every layer's output (training mode).
    pub outputs: Vec<Tensor>,
    /// For each `[yolo]` layer, `(layer index, its raw input)`: the tensor the Darknet delta belongs to.
    pub head_inputs: Vec<(usize, Tensor)>,
}

impl Network {
    /// Builds a trainable network whose parameters are `Var`s initialised from `weights`.
    pub fn load_trainable(
        cfg: &NetworkConfig,
        weights: &NetWeights,
        device: &Device,
    ) -> anyhow::Result<TrainableNetwork> {
        let tensors = weights.to_tensors(cfg, device)?;
        let varmap = candle_nn::VarMap::new();
        {
            let mut data = varmap.data().lock().expect("fresh VarMap lock");
            for (name, t) in tensors {
                data.insert(name, candle_core::Var::from_tensor(&t)?);
            }
        }
        TrainableNetwork::from_varmap(cfg, varmap, device)
    }
}

impl TrainableNetwork {
    /// Builds the layers on an existing `VarMap` (names as in [`crate::weights`]).
    pub fn from_varmap(
        cfg: &NetworkConfig,
        varmap: candle_nn::VarMap,
        device: &Device,
    ) -> anyhow::Result<Self> {
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = Network::load(cfg, vb, &LoadOptions { fuse_bn: false })
            .context("building the trainable network")?;
        Ok(TrainableNetwork {
            net,
            varmap,
            rolling_momentum: crate::train::DARKNET_CPU_ROLLING_MOMENTUM,
        })
    }

    /// The same Vars at another input size (Darknet's `resize_network` for `random=1`).
    pub fn resized(&self, width: usize, height: usize) -> anyhow::Result<Self> {
        let cfg = self.net.cfg.with_size(width, height)?;
        let mut t = TrainableNetwork::from_varmap(&cfg, self.varmap.clone(), &self.net.device)?;
        t.rolling_momentum = self.rolling_momentum;
        Ok(t)
    }

    /// The current parameters and rolling statistics as [`NetWeights`] (header `seen` as given).
    pub fn to_weights(&self, seen: u64) -> anyhow::Result<NetWeights> {
        let tensors: HashMap<String, Tensor> = self
            .varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        NetWeights::from_tensors(
            &self.net.cfg,
            crate::weights::Header::current(seen),
            &tensors,
        )
    }

    /// Layers with an index below the last `stopbackward=1` layer are not trained (parse_network_cfg sets
    /// `params.train = 0` for them, and update_network skips them); their BN still uses batch statistics.
    pub fn first_trained_layer(&self) -> usize {
        self.net
            .cfg
            .layers
            .iter()
            .rposition(|l| l.stopbackward)
            .unwrap_or(0)
    }

    /// Trainable parameters (rolling statistics and layers before the last `stopbackward` excluded), sorted by
    /// name.
    pub fn parameters(&self) -> Vec<(String, candle_core::Var)> {
        let first = self.first_trained_layer();
        let mut v: Vec<_> = self
            .varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .iter()
            .filter(|(k, _)| !k.contains("running_"))
            .filter(|(k, _)| {
                k.split('.')
                    .nth(1)
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_none_or(|i| i >= first)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn var(&self, name: &str) -> anyhow::Result<candle_core::Var> {
        self.varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .get(name)
            .cloned()
            .with_context(|| format!("no variable '{name}'"))
    }

    /// Training-mode forward of `x` (`[batch, c, h, w]`).
    pub fn forward_train(&self, x: &Tensor) -> anyhow::Result<TrainForward> {
        let net = &self.net;
        let want = net.cfg.input_shape();
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != want.c || dims[2] != want.h || dims[3] != want.w {
            anyhow::bail!(
                "network input must be [batch, {}, {}, {}], got {:?}",
                want.c,
                want.h,
                want.w,
                dims
            );
        }
        let mut outs: Vec<Option<Tensor>> = vec![None; net.layers.len()];
        let mut head_inputs = Vec::new();
        let mut input = x.clone();
        for (i, layer) in net.layers.iter().enumerate() {
            let y = match layer {
                Layer::Convolutional(c) if c.bn.is_some() => self.conv_bn_train(i, c, &input),
                Layer::Convolutional(c) => conv_train(c, &input)
                    .and_then(|y| {
                        let b = c.bias.as_ref().expect("conv without bn has a bias");
                        y.broadcast_add(&b.reshape((1, c.cfg.filters, 1, 1))?)
                    })
                    .and_then(|y| crate::layers::activation::activate(&y, c.cfg.activation))
                    .map_err(anyhow::Error::from),
                other => {
                    if matches!(other, Layer::Yolo(_)) {
                        head_inputs.push((i, input.clone()));
                    }
                    net.forward_layer(i, other, &input, &outs)
                        .map_err(anyhow::Error::from)
                }
            }
            .with_context(|| {
                format!(
                    "training forward, layer {i} ({})",
                    net.cfg.layers[i].config.type_name()
                )
            })?;
            // `stopbackward=1`: backward_network stops at this layer (network.c `if (l.stopbackward) break;`).
            let y = if net.cfg.layers[i].stopbackward {
                y.detach()
            } else {
                y
            };
            outs[i] = Some(y.clone());
            input = y;
        }
        Ok(TrainForward {
            outputs: outs.into_iter().map(|t| t.expect("kept")).collect(),
            head_inputs,
        })
    }

    fn conv_bn_train(&self, i: usize, c: &Convolutional, x: &Tensor) -> anyhow::Result<Tensor> {
        let bn = c.bn.as_ref().expect("checked");
        let owner = match &self.net.cfg.layers[i].config {
            LayerConfig::Convolutional(cc) => cc.share_index.unwrap_or(i),
            _ => i,
        };
        let rm = self.var(&format!("layers.{owner}.bn.running_mean"))?;
        let rv = self.var(&format!("layers.{owner}.bn.running_var"))?;
        let y = conv_train(c, x)?;
        let out = crate::train::batchnorm_train(
            &y,
            &bn.scale.flatten_all()?,
            &bn.bias.flatten_all()?,
            rm.as_tensor(),
            rv.as_tensor(),
            self.rolling_momentum,
        )?;
        rm.set(&out.rolling_mean)?;
        rv.set(&out.rolling_variance)?;
        Ok(crate::layers::activation::activate(
            &out.y,
            c.cfg.activation,
        )?)
    }
}

/// The convolution of the training path: always candle's differentiable `conv2d` (the inference path may
/// dispatch to kernels without a backward), with the same dilation padding as [`Convolutional::convolve`].
fn conv_train(c: &Convolutional, x: &Tensor) -> Result<Tensor> {
    let cc = &c.cfg;
    if cc.stride_x != cc.stride_y {
        candle_core::bail!("convolution with stride_x != stride_y is not supported");
    }
    if cc.dilation == 1 && cc.groups == 1 {
        return conv_im2col(x, &c.weight, cc.pad, cc.stride_x);
    }
    if cc.dilation == 1 {
        return x.conv2d(&c.weight, cc.pad, cc.stride_x, 1, cc.groups);
    }
    let extra = (cc.dilation - 1) * (cc.size - 1);
    let x = x
        .pad_with_zeros(2, cc.pad, cc.pad + extra)?
        .pad_with_zeros(3, cc.pad, cc.pad + extra)?;
    let y = x.conv2d(&c.weight, 0, cc.stride_x, cc.dilation, cc.groups)?;
    y.narrow(2, 0, c.output.h)?.narrow(3, 0, c.output.w)
}

/// Convolution as one matrix product over an im2col matrix built from candle ops (`im2col_cpu` + `gemm`, as
/// Darknet's `forward_convolutional_layer`), so that autograd's backward is two matrix products too:
/// candle's own `conv2d` backward goes through a slow direct `conv_transpose2d` on the CPU.
/// Layout: the columns are `[c·size·size, batch·out_h·out_w]` (Darknet's row order `c, ky, kx`).
pub fn conv_im2col(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (f, wc, k, k2) = w.dims4()?;
    if wc != c || k != k2 || stride == 0 || h + 2 * pad < k || wd + 2 * pad < k {
        candle_core::bail!(
            "conv_im2col: input {:?} and weight {:?} (pad {pad}, stride {stride}) do not fit",
            x.dims(),
            w.dims()
        );
    }
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (wd + 2 * pad - k) / stride + 1;
    let wm = w.reshape((f, c * k * k))?;
    // Channel-major input: [c, n, h, w].
    let xc = x.transpose(0, 1)?.contiguous()?;
    let col = if k == 1 && stride == 1 && pad == 0 {
        xc.reshape((c, n * h * wd))?
    } else {
        let xp = xc
            .pad_with_zeros(2, pad, pad)?
            .pad_with_zeros(3, pad, pad)?;
        let span_h = stride * (oh - 1) + 1;
        let span_w = stride * (ow - 1) + 1;
        let index = |len: usize| -> Result<Tensor> {
            let v: Vec<u32> = (0..len).map(|i| (i * stride) as u32).collect();
            Tensor::new(v.as_slice(), x.device())
        };
        let (rows, cols_idx) = (index(oh)?, index(ow)?);
        let mut parts = Vec::with_capacity(k * k);
        for ky in 0..k {
            for kx in 0..k {
                let mut p = xp.narrow(2, ky, span_h)?.narrow(3, kx, span_w)?;
                if stride > 1 {
                    p = p
                        .contiguous()?
                        .index_select(&rows, 2)?
                        .contiguous()?
                        .index_select(&cols_idx, 3)?;
                }
                parts.push(p);
            }
        }
        // [c, k·k, n, oh, ow] -> [c·k·k, n·oh·ow]
        Tensor::stack(&parts, 1)?.reshape((c * k * k, n * oh * ow))?
    };
    wm.matmul(&col)?
        .reshape((f, n, oh, ow))?
        .transpose(0, 1)?
        .contiguous()
}

#[cfg(test)]
mod im2col_tests {
    use super::*;

    #[test]
    fn conv_im2col_matches_conv2d_forward_and_backward() {
        let dev = Device::Cpu;
        for &(c, f, k, stride, pad, h, w) in &[
            (3usize, 4usize, 3usize, 1usize, 1usize, 7usize, 6usize),
            (3, 5, 3, 2, 1, 9, 11),
            (4, 2, 1, 1, 0, 5, 5),
            (2, 3, 5, 1, 2, 6, 7),
        ] {
            let x = candle_core::Var::from_tensor(
                &Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap(),
            )
            .unwrap();
            let wt = candle_core::Var::from_tensor(
                &Tensor::randn(0f32, 1.0, (f, c, k, k), &dev).unwrap(),
            )
            .unwrap();
            let a = conv_im2col(x.as_tensor(), wt.as_tensor(), pad, stride).unwrap();
            let b = x
                .as_tensor()
                .conv2d(wt.as_tensor(), pad, stride, 1, 1)
                .unwrap();
            assert_eq!(a.dims(), b.dims());
            let g = Tensor::randn(0f32, 1.0, a.dims(), &dev).unwrap();
            let ga = (&a * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let maxdiff = |p: &Tensor, q: &Tensor| -> f32 {
                (p - q)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar()
                    .unwrap()
            };
            assert!(maxdiff(&a, &b) < 1e-4);
            assert!(
                maxdiff(
                    ga.get(x.as_tensor()).unwrap(),
                    gb.get(x.as_tensor()).unwrap()
                ) < 1e-4
            );
            assert!(
                maxdiff(
                    ga.get(wt.as_tensor()).unwrap(),
                    gb.get(wt.as_tensor()).unwrap()
                ) < 1e-3
            );
        }
    }
}
