//! The exponential moving average of the weights that `[net] ema_alpha` turns on (the yolov4-csp / p5 / p6
//! family): `train_network_waitkey` (src/network.c) with `is_ema_initialized`, `ema_update`, `ema_apply`, and
//! `train_detector`'s `_ema.weights` (src/detector.c, written with `save_weights_upto(.., save_ema = 1)`).
//!
//! After the update of iteration `i` (Darknet increments `cur_iteration` before `update_network`, so `i` counts
//! the updates done), with `start = max_batches / 2` and `apply = max_batches − 1000`, when `i ≥ start`:
//! 1. if the average is not initialised (all its convolution weights are 0), it is set to the weights
//!    (`ema_update(net, 0)`);
//! 2. then if `i == apply` the average replaces the weights (`ema_apply`; training goes on from it, the
//!    average is not updated any more), else if `i < apply`,
//!    `ema = alpha·ema + (1 − alpha)·w` (`ema_update(net, ema_alpha)`; float arithmetic as Darknet's: both
//!    products rounded, then their sum).
//!
//! What is averaged: the weights, biases and batch-norm scales of every `[convolutional]` layer Darknet trains
//! (`weights_ema` is only allocated with `params.train`, i.e. not below the last `stopbackward`); not the
//! rolling mean/variance, not other layers' parameters. The live weights are the ones trained, evaluated
//! (mAP) and saved as `_final.weights`; the average is saved as `_ema.weights` next to each `_last` save,
//! with the current rolling statistics and every other layer's live parameters.
//!
//! Deliberate difference: Darknet does not keep the average across a restart (it re-initialises it from the
//! loaded weights); checkpoints here keep it, so a resumed run equals an uninterrupted one. For the layers
//! below the last `stopbackward` (which Darknet leaves without an average and whose `_ema.weights` write would
//! read a NULL buffer), the live weights are written: they are never updated, so they equal their average.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::cfg::{LayerConfig, NetworkConfig};
use crate::network::TrainableNetwork;

/// What [`Ema::after_update`] did at an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmaStep {
    /// The average was (re)initialised from the weights (`EMA initialization`).
    pub initialized: bool,
    /// The average was updated with `alpha` (`ema_update(), ema_alpha = ..`).
    pub updated: bool,
    /// The average replaced the weights (`ema_apply()`).
    pub applied: bool,
}

/// The average of the weights (see the module doc).
#[derive(Debug, Clone)]
pub struct Ema {
    alpha: f32,
    start: i64,
    apply: i64,
    /// Names of the averaged tensors (`layers.{i}.conv.weight`, `..conv.bias`, `..bn.weight`, `..bn.bias`).
    names: Vec<String>,
    /// The average, by name (empty before the first initialisation).
    avg: HashMap<String, Tensor>,
}

impl Ema {
    /// `None` when the cfg's `ema_alpha` is 0 (Darknet tests `if (net.ema_alpha && ..)`).
    pub fn new(cfg: &NetworkConfig, net: &TrainableNetwork, max_batches: usize) -> Option<Self> {
        let alpha = cfg.net.ema_alpha;
        if alpha == 0.0 {
            return None;
        }
        let first = net.first_trained_layer();
        let convs: Vec<usize> = cfg
            .layers
            .iter()
            .enumerate()
            .filter(|(i, l)| *i >= first && matches!(l.config, LayerConfig::Convolutional(_)))
            .map(|(i, _)| i)
            .collect();
        let mut names: Vec<String> = net
            .varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .keys()
            .filter(|k| !k.contains("running_"))
            .filter(|k| {
                k.split('.')
                    .nth(1)
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_some_and(|i| convs.contains(&i))
            })
            .cloned()
            .collect();
        names.sort();
        Some(Self::with_names(alpha, max_batches, names))
    }

    /// An average of the tensors `names` with Darknet's schedule for `max_batches`.
    pub fn with_names(alpha: f32, max_batches: usize, names: Vec<String>) -> Self {
        let mb = max_batches as i64;
        Ema {
            alpha,
            start: mb / 2,
            apply: mb - 1000,
            names,
            avg: HashMap::new(),
        }
    }

    /// The iteration from which the average is kept (`max_batches / 2`) and the one at which it replaces the
    /// weights (`max_batches − 1000`).
    pub fn schedule(&self) -> (i64, i64) {
        (self.start, self.apply)
    }

    /// `is_ema_initialized`: whether any convolution weight of the average is nonzero (Darknet looks at
    /// `weights_ema` only, so an all-zero average is initialised again).
    pub fn is_initialized(&self) -> candle_core::Result<bool> {
        for n in self.names.iter().filter(|n| n.ends_with("conv.weight")) {
            if let Some(t) = self.avg.get(n) {
                if t.abs()?.max_all()?.to_scalar::<f32>()? > 0.0 {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The average, by name (empty before initialisation).
    pub fn average(&self) -> &HashMap<String, Tensor> {
        &self.avg
    }

    /// Restores an average saved in a checkpoint (ignored when it does not name exactly the averaged tensors).
    pub fn restore(&mut self, saved: &HashMap<String, Tensor>) -> bool {
        if saved.len() != self.names.len() || !self.names.iter().all(|n| saved.contains_key(n)) {
            return false;
        }
        self.avg = saved.clone();
        true
    }

    /// Darknet's EMA step after the update of iteration `iteration` (updates done so far); `net`'s Vars are
    /// overwritten by the average at the apply point.
    pub fn after_update(
        &mut self,
        iteration: usize,
        net: &TrainableNetwork,
    ) -> candle_core::Result<EmaStep> {
        let data = net.varmap.data().lock().expect("VarMap lock");
        let live = |n: &String| data.get(n).map(|v| v.as_tensor().clone());
        let weights: HashMap<String, Tensor> = self
            .names
            .iter()
            .filter_map(|n| Some((n.clone(), live(n)?)))
            .collect();
        let step = self.step(iteration, &weights)?;
        if step.applied {
            for (n, t) in &self.avg {
                if let Some(v) = data.get(n) {
                    v.set(t)?;
                }
            }
        }
        Ok(step)
    }

    /// The schedule and arithmetic of `train_network_waitkey` on named weights (the average is left as is at
    /// the apply point; the caller copies it into the weights).
    pub fn step(
        &mut self,
        iteration: usize,
        weights: &HashMap<String, Tensor>,
    ) -> candle_core::Result<EmaStep> {
        let mut s = EmaStep {
            initialized: false,
            updated: false,
            applied: false,
        };
        let it = iteration as i64;
        if it < self.start {
            return Ok(s);
        }
        if !self.is_initialized()? {
            // ema_update(net, 0): 0·ema + 1·w is w exactly. A copy: the Vars' storage is updated in place.
            self.avg = weights
                .iter()
                .map(|(n, t)| Ok((n.clone(), t.copy()?)))
                .collect::<candle_core::Result<_>>()?;
            s.initialized = true;
        }
        if it == self.apply {
            s.applied = true;
        } else if it < self.apply {
            self.update(weights)?;
            s.updated = true;
        }
        Ok(s)
    }

    /// `ema = alpha·ema + (1 − alpha)·w` (ema_update).
    fn update(&mut self, weights: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        // (1 - ema_alpha) in float, as Darknet; exact for alpha in [0.5, 1].
        let (a, b) = (self.alpha, 1.0f32 - self.alpha);
        for (n, e) in self.avg.iter_mut() {
            let Some(w) = weights.get(n) else { continue };
            // Each product rounded to f32, then the sum (affine multiplies in f32; adding 0 changes nothing).
            *e = (e.affine(a as f64, 0.0)? + w.affine(b as f64, 0.0)?)?;
        }
        Ok(())
    }

    /// The tensors of `_ema.weights`: the live ones with the averaged ones replaced (`save_weights_upto` with
    /// `save_ema`: `biases_ema`, `scales_ema`, the live rolling statistics, `weights_ema`).
    pub fn weights_tensors(&self, net: &TrainableNetwork) -> HashMap<String, Tensor> {
        let mut all = net.tensors();
        for (n, t) in &self.avg {
            all.insert(n.clone(), t.clone());
        }
        all
    }
}
