//! Training mode: the same [`Network`] built on candle `Var`s, run by [`Network`]'s layer loop with
//! `state.train = 1`.

use std::collections::HashMap;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::{Layer, LoadOptions, Network};
use crate::cfg::NetworkConfig;
use crate::layers::batchnorm::{BnSums, DARKNET_CPU_ROLLING_MOMENTUM};
use crate::layers::TrainState;
use crate::weights::NetWeights;

/// Training mode: the network on candle `Var`s (unfused batch norm), as `forward_network` runs with
/// `state.train = 1`. Batch-normalised convolutions use the mini-batch statistics
/// ([`crate::layers::batchnorm::batchnorm_train`], Darknet's CPU `forward_batchnorm_layer`) and update the rolling
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
    /// How batch norm sums its mini-batch statistics (default candle's; Darknet's order for parity runs).
    pub bn_sums: BnSums,
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
        let net = Network::load(
            cfg,
            vb,
            &LoadOptions {
                fuse_bn: false,
                ..LoadOptions::default()
            },
        )
        .context("building the trainable network")?;
        Ok(TrainableNetwork {
            net,
            varmap,
            rolling_momentum: DARKNET_CPU_ROLLING_MOMENTUM,
            bn_sums: BnSums::default(),
        })
    }

    /// The same Vars at another input size (Darknet's `resize_network` for `random=1`).
    pub fn resized(&self, width: usize, height: usize) -> anyhow::Result<Self> {
        let cfg = self.net.cfg.with_size(width, height)?;
        let mut t = TrainableNetwork::from_varmap(&cfg, self.varmap.clone(), &self.net.device)?;
        t.rolling_momentum = self.rolling_momentum;
        t.bn_sums = self.bn_sums;
        Ok(t)
    }

    /// A snapshot of every variable (parameters and rolling statistics) by name.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// The current parameters and rolling statistics as [`NetWeights`] (header `seen` as given).
    pub fn to_weights(&self, seen: u64) -> anyhow::Result<NetWeights> {
        let tensors = self.tensors();
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

    /// The training state the layers need (the Vars of the rolling statistics).
    fn train_state(&self) -> TrainState<'_> {
        TrainState {
            varmap: &self.varmap,
            rolling_momentum: self.rolling_momentum,
            bn_sums: self.bn_sums,
        }
    }

    /// Training-mode forward of `x` (`[batch, c, h, w]`): [`Network`]'s one layer loop in training mode.
    pub fn forward_train(&self, x: &Tensor) -> anyhow::Result<TrainForward> {
        let outs = self
            .net
            .run_impl(x, |_| true, None, Some(&self.train_state()))
            .context("training forward")?;
        let outputs: Vec<Tensor> = outs.into_iter().map(|t| t.expect("kept")).collect();
        // A [yolo] layer's input is the previous layer's output (the network input for layer 0).
        let head_inputs = self
            .net
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, Layer::Yolo(_)))
            .map(|(i, _)| {
                (
                    i,
                    if i == 0 {
                        x.clone()
                    } else {
                        outputs[i - 1].clone()
                    },
                )
            })
            .collect();
        Ok(TrainForward {
            outputs,
            head_inputs,
        })
    }
}
