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
use crate::layers::TrainState;
pub use crate::layers::{Inputs, Layer, LoadOptions};
use crate::weights::NetWeights;

/// `(layer index, output)` of each detection head, in layer order.
pub type HeadOutputs = Vec<(usize, Tensor)>;

pub struct Network {
    pub cfg: NetworkConfig,
    pub layers: Vec<Layer>,
    /// For each layer, the last layer that reads its output (itself if none).
    last_use: Vec<usize>,
    /// `[route]` layers whose concatenation the next layer, their only reader, reads in place at inference
    /// ([`crate::cpu::planes`]): the route hands over its parts instead of copying them.
    in_place_route: Vec<bool>,
    /// Convolutions whose next layer, their only reader, runs inside their CPU kernel's epilogue at inference
    /// ([`crate::cpu::conv::Post`]; [`fold_next`]).
    fold_next: Vec<bool>,
    /// Whether inference runs the CPU kernels ([`crate::cpu::CpuOptions::enabled`]), whose parallel loops are
    /// all rayon's: only then do the pool's workers poll for work during a forward ([`crate::cpu::on_busy_pool`];
    /// candle's ops run on candle's own threads, which a polling worker would compete with).
    cpu_kernels: bool,
    pub device: Device,
}

/// Layers whose outputs layer `l` reads besides its direct input.
pub fn extra_inputs(config: &LayerConfig) -> Vec<usize> {
    config.extra_inputs()
}

impl Network {
    /// Builds the network from a `VarBuilder` holding the tensors named as in [`crate::weights`].
    pub fn load(cfg: &NetworkConfig, vb: VarBuilder, opts: &LoadOptions) -> Result<Self> {
        crate::limits::MemoryEstimate::of(cfg, opts.batch.max(1), false)
            .check(crate::limits::memory_budget(opts.max_memory), cfg)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let device = vb.device().clone();
        let vbl = vb.pp("layers");
        let mut layers = Vec::with_capacity(cfg.layers.len());
        for spec in &cfg.layers {
            let built = Layer::load(spec, &vbl, opts).map_err(|e| {
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
        let in_place_route = in_place_routes(cfg, &layers);
        let fold_next = fold_next(cfg, &layers);
        Ok(Network {
            cfg: cfg.clone(),
            layers,
            last_use,
            in_place_route,
            fold_next,
            cpu_kernels: opts.cpu.enabled,
            device,
        })
    }

    /// The same network with its layers replaced by `layers` (same types, order and shapes), e.g. with rounded
    /// weights for a comparison.
    pub fn with_layers(&self, layers: Vec<Layer>) -> Self {
        let in_place_route = in_place_routes(&self.cfg, &layers);
        let fold_next = fold_next(&self.cfg, &layers);
        Network {
            cfg: self.cfg.clone(),
            layers,
            last_use: self.last_use.clone(),
            in_place_route,
            fold_next,
            cpu_kernels: self.cpu_kernels,
            device: self.device.clone(),
        }
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
    fn run(&self, x: &Tensor, keep: impl Fn(usize) -> bool + Sync) -> Result<Vec<Option<Tensor>>> {
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
        keep: impl Fn(usize) -> bool + Sync,
        times: Option<&mut Vec<f64>>,
        train: Option<&TrainState>,
    ) -> Result<Vec<Option<Tensor>>> {
        // On the CPU the layers run on one of rayon's threads: each kernel's parallel loop then starts from a
        // worker, which takes part in it, instead of being handed to the pool by a thread that sleeps until it
        // is done and is woken again (two context switches per parallel loop, several per layer).
        if self.device.is_cpu() && rayon::current_thread_index().is_none() {
            if self.cpu_kernels && train.is_none() {
                return crate::cpu::on_busy_pool(|| self.run_layers(x, &keep, times, train));
            }
            let mut out = None;
            rayon::scope(|_| out = Some(self.run_layers(x, &keep, times, train)));
            return out.expect("the scope ran");
        }
        self.run_layers(x, &keep, times, train)
    }

    /// [`Self::run_impl`] on the calling thread.
    fn run_layers(
        &self,
        x: &Tensor,
        keep: &(impl Fn(usize) -> bool + Sync),
        mut times: Option<&mut Vec<f64>>,
        train: Option<&TrainState>,
    ) -> Result<Vec<Option<Tensor>>> {
        self.check_input(x)?;
        let mut outs: Vec<Option<Tensor>> = vec![None; self.layers.len()];
        let mut input = x.clone();
        // The parts of an in-place route, for the next layer.
        let mut parts: Option<Vec<Tensor>> = None;
        // The output of the next layer, computed by this one's epilogue (`fold_next`).
        let mut folded: Option<Tensor> = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let t0 = times.as_ref().map(|_| std::time::Instant::now());
            let inputs = Inputs::new(i, &outs);
            let err = |e: candle_core::Error| {
                candle_core::Error::Msg(format!(
                    "layer {i} ({}): {e}",
                    self.cfg.layers[i].config.type_name()
                ))
            };
            let y = if let Some(y) = folded.take() {
                y
            } else if let (Layer::Route(route), true, None) =
                (layer, self.in_place_route[i] && !keep(i), train)
            {
                parts = Some(route.parts(&inputs).map_err(err)?);
                if let (Some(times), Some(t0)) = (times.as_mut(), t0) {
                    times.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                self.free_unused(&mut outs, i, &keep);
                continue;
            } else {
                let p = parts.take();
                if train.is_none() && self.fold_next[i] && !keep(i) {
                    let x = p.as_deref().unwrap_or(std::slice::from_ref(&input));
                    folded = self.forward_folded(i, x, &outs).map_err(err)?;
                }
                if folded.is_some() {
                    // Layer i's own output is never made: its only reader is the next layer, done above.
                    if let (Some(times), Some(t0)) = (times.as_mut(), t0) {
                        times.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    self.free_unused(&mut outs, i, &keep);
                    continue;
                }
                self.forward_layer(layer, &input, p, &inputs, train)
                    .map_err(err)?
            };
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
            self.free_unused(&mut outs, i, &keep);
        }
        Ok(outs)
    }

    /// Layer `layer`'s forward on `input` (inference: on `parts` of an in-place route when given; training
    /// when `train` is set).
    fn forward_layer(
        &self,
        layer: &Layer,
        input: &Tensor,
        parts: Option<Vec<Tensor>>,
        inputs: &Inputs,
        train: Option<&TrainState>,
    ) -> Result<Tensor> {
        match (train, parts) {
            (None, Some(p)) => layer.forward_parts(&p, inputs),
            (None, None) => layer.forward(input, inputs),
            (Some(t), _) => layer.forward_train(input, inputs, t),
        }
    }

    /// The output of layer `i + 1` computed by convolution `i`'s CPU kernel on `x` with that layer folded into
    /// its epilogue ([`fold_next`]), or `None` when the kernel does not run (then both layers run as usual).
    fn forward_folded(
        &self,
        i: usize,
        x: &[Tensor],
        outs: &[Option<Tensor>],
    ) -> Result<Option<Tensor>> {
        use crate::cpu::conv::Post;
        let Layer::Convolutional(conv) = &self.layers[i] else {
            return Ok(None);
        };
        match &self.layers[i + 1] {
            Layer::Shortcut(s) => {
                let from = Inputs::new(i + 1, outs)
                    .output(s.cfg.from[0])?
                    .contiguous()?;
                Ok(
                    crate::cpu::with_f32_slice(&from, |v| conv.forward_post(x, &Post::Add(v)))?
                        .flatten(),
                )
            }
            Layer::Yolo(y) => {
                let (ops, scale, shift) = y.cpu_ops();
                conv.forward_post(
                    x,
                    &Post::Yolo {
                        ops: &ops,
                        scale,
                        shift,
                    },
                )
            }
            _ => Ok(None),
        }
    }

    /// Whether layer `i` runs inside the previous convolution's epilogue at inference ([`fold_next`]; not
    /// when every output is kept, as [`Self::forward_all`] does).
    pub fn folded_into_previous(&self, i: usize) -> bool {
        i > 0 && self.fold_next[i - 1]
    }

    /// Whether layer `i` is a `[route]` that its reader takes in place at inference (its output is not made;
    /// [`Self::forward_all`], which keeps every output, still makes it).
    pub fn reads_in_place(&self, i: usize) -> bool {
        self.in_place_route.get(i).copied().unwrap_or(false)
    }

    /// Frees the outputs that no layer after `i` reads and `keep` does not ask for (training keeps every output
    /// for the backward pass: its `keep` is always true).
    fn free_unused(&self, outs: &mut [Option<Tensor>], i: usize, keep: &impl Fn(usize) -> bool) {
        for (j, out) in outs.iter_mut().enumerate().take(i + 1) {
            if self.last_use[j] <= i && !keep(j) {
                *out = None;
            }
        }
    }
}

/// For each layer, whether a later layer names it as an extra input (`[route]` `layers`, `[shortcut]` `from`...),
/// i.e. reads it besides the layer right after it.
fn named_outputs(cfg: &NetworkConfig) -> Vec<bool> {
    let mut named = vec![false; cfg.layers.len()];
    for spec in &cfg.layers {
        for j in extra_inputs(&spec.config) {
            named[j] = true;
        }
    }
    named
}

/// Which convolutions run their next layer inside their CPU kernel's epilogue at inference: that layer is
/// their only reader (nothing names the convolution's output) and is
/// - a `[shortcut]` with a linear activation and one `from` layer of the convolution's output shape (yolov4's
///   residual blocks): `+ from` as each block of the output is made, instead of a pass over three maps;
/// - a `[yolo]` head: its logistic/scale per entry, instead of a pass over the head.
///
/// The values are the same as running the two layers one after the other ([`crate::cpu::conv::Post`]).
fn fold_next(cfg: &NetworkConfig, layers: &[Layer]) -> Vec<bool> {
    let named = named_outputs(cfg);
    (0..layers.len())
        .map(|i| {
            let conv_kernel = match &layers[i] {
                Layer::Convolutional(c) => c
                    .cpu
                    .as_ref()
                    .is_some_and(|p| p.post_activation.is_none() && c.xnor.is_none()),
                _ => false,
            };
            let foldable = match layers.get(i + 1) {
                Some(Layer::Shortcut(s)) => {
                    s.cpu_kernel
                        && s.cfg.activation == crate::cfg::Activation::Linear
                        && matches!(s.cfg.from[..], [j] if j != i
                            && cfg.layers[j].output == cfg.layers[i].output)
                }
                Some(Layer::Yolo(y)) => y.cpu_kernel,
                _ => false,
            };
            conv_kernel && foldable && !named[i]
        })
        .collect()
}

/// Which `[route]` layers the next layer reads in place ([`Network::in_place_route`]): a plain concatenation
/// ([`crate::layers::route::Route::is_concat`]) followed by a layer that
/// [`takes_parts`](crate::layers::DarknetLayer::takes_parts), with no other reader (no `[route]`,
/// `[shortcut]`... names it).
fn in_place_routes(cfg: &NetworkConfig, layers: &[Layer]) -> Vec<bool> {
    let named = named_outputs(cfg);
    (0..layers.len())
        .map(|i| match (&layers[i], layers.get(i + 1)) {
            (Layer::Route(r), Some(next)) => r.is_concat() && next.takes_parts() && !named[i],
            _ => false,
        })
        .collect()
}
