//! Darknet's SGD: `update_network` (src/network.c) calling `update_convolutional_layer`
//! (src/convolutional_layer.c) for every trainable layer.
//!
//! Per parameter tensor `w` with its accumulator `u` (Darknet's `weight_updates`, `bias_updates`,
//! `scale_updates`), once per full batch (`batch` = cfg `batch`, i.e. `net.batch · net.subdivisions`):
//!
//! ```text
//! u += −decay·batch · w          (weights only: axpy_cpu(nweights, -decay*batch, weights, weight_updates))
//! w += (lr/batch) · u            (axpy_cpu(n, learning_rate/batch, updates, params))
//! u *= momentum                  (scal_cpu(n, momentum, updates))
//! ```
//!
//! Between updates Darknet's backward passes ADD the negative gradient into `u` for every mini-batch of the
//! subdivisions; with candle autograd that is `u += −grad` per [`DarknetSgd::accumulate`]. Biases and batch-norm
//! scales get no weight decay. `lr` already includes the layer's `learning_rate_scale` via
//! [`DarknetSgd::set_lr_scale`] (Darknet's per-layer `learning_rate=` key, default 1).

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use candle_core::{backprop::GradStore, Tensor, Var};

/// Which update rule a parameter follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Convolution / connected weights: momentum and weight decay.
    Weights,
    /// Biases and batch-norm scales: momentum, no decay.
    NoDecay,
}

struct Param {
    name: String,
    var: Var,
    kind: ParamKind,
    lr_scale: f32,
    /// Darknet's `*_updates`: accumulated negative gradient plus momentum.
    update: Tensor,
}

/// SGD with momentum and decay exactly as Darknet orders it (see the module doc).
pub struct DarknetSgd {
    params: Vec<Param>,
    pub momentum: f32,
    pub decay: f32,
}

impl DarknetSgd {
    /// `params`: (name, variable, kind); names must be unique (they key the saved state).
    pub fn new(params: Vec<(String, Var, ParamKind)>, momentum: f32, decay: f32) -> Result<Self> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(params.len());
        for (name, var, kind) in params {
            if !seen.insert(name.clone()) {
                bail!("DarknetSgd: parameter name '{name}' given twice");
            }
            let update = var.as_tensor().zeros_like()?;
            out.push(Param {
                name,
                var,
                kind,
                lr_scale: 1.0,
                update,
            });
        }
        Ok(Self {
            params: out,
            momentum,
            decay,
        })
    }

    /// Darknet's per-layer `learning_rate` scale (`l.learning_rate_scale`) for every parameter whose name starts
    /// with `prefix`.
    pub fn set_lr_scale(&mut self, prefix: &str, scale: f32) {
        for p in self
            .params
            .iter_mut()
            .filter(|p| p.name.starts_with(prefix))
        {
            p.lr_scale = scale;
        }
    }

    /// Names of the parameters, in order.
    pub fn names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }

    /// One mini-batch's backward: `u += −grad` (a parameter without a gradient accumulates nothing).
    pub fn accumulate(&mut self, grads: &GradStore) -> Result<()> {
        for p in &mut self.params {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                p.update = (&p.update - g.to_dtype(p.update.dtype())?)
                    .with_context(|| format!("accumulating the gradient of {}", p.name))?;
            }
        }
        Ok(())
    }

    /// `update_network` with rate `lr` (from `get_current_rate`) and `batch` = images per full batch.
    pub fn apply(&mut self, lr: f32, batch: usize) -> Result<()> {
        if batch == 0 {
            bail!("DarknetSgd::apply: batch must be positive");
        }
        let b = batch as f32;
        for p in &mut self.params {
            let w = p.var.as_tensor();
            if p.kind == ParamKind::Weights {
                p.update = (&p.update + w.affine((-self.decay * b) as f64, 0.0)?)?;
            }
            let rate = lr * p.lr_scale / b;
            let new_w = (w + p.update.affine(rate as f64, 0.0)?)?;
            p.var
                .set(&new_w)
                .with_context(|| format!("updating {}", p.name))?;
            // detach: `update` was built from the Var `w` (decay term); without it every iteration's
            // accumulator would keep the previous one alive through the op graph (unbounded memory).
            p.update = p.update.affine(self.momentum as f64, 0.0)?.detach();
        }
        Ok(())
    }

    /// `accumulate` then `apply`: one full batch without subdivisions.
    pub fn step(&mut self, grads: &GradStore, lr: f32, batch: usize) -> Result<()> {
        self.accumulate(grads)?;
        self.apply(lr, batch)
    }

    /// The accumulators as named tensors (`<param name>.update`) for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|p| (format!("{}.update", p.name), p.update.clone()))
            .collect()
    }

    /// Restore accumulators saved by [`DarknetSgd::state`]; every parameter must be present with its shape.
    pub fn load_state(&mut self, named: &HashMap<String, Tensor>) -> Result<()> {
        for p in &mut self.params {
            let key = format!("{}.update", p.name);
            let t = named
                .get(&key)
                .with_context(|| format!("optimizer state lacks '{key}'"))?;
            if t.dims() != p.update.dims() {
                bail!(
                    "optimizer state '{key}' has shape {:?}, the parameter has {:?}",
                    t.dims(),
                    p.update.dims()
                );
            }
            p.update = t.to_dtype(p.update.dtype())?.to_device(p.update.device())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn vals(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn two_steps_hand_computed() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[0.5f32], &dev).unwrap()).unwrap();
        let mut opt = DarknetSgd::new(
            vec![
                ("w".into(), w.clone(), ParamKind::Weights),
                ("b".into(), b.clone(), ParamKind::NoDecay),
            ],
            0.9,
            0.01,
        )
        .unwrap();
        // L = 3 w0 + 4 w1 + 2 b  ->  grad w = (3, 4), grad b = 2.
        let loss = |w: &Var, b: &Var| {
            let c = Tensor::new(&[3.0f32, 4.0], &dev).unwrap();
            ((w.as_tensor() * c).unwrap().sum_all().unwrap()
                + (b.as_tensor() * 2.0).unwrap().sum_all().unwrap())
            .unwrap()
        };
        let (lr, batch) = (0.1f32, 2usize);
        opt.step(&loss(&w, &b).backward().unwrap(), lr, batch)
            .unwrap();
        // u_w = -(3,4) - 0.01*2*(1,-2) = (-3.02, -3.96); w = (1,-2) + 0.05*u = (0.849, -2.198); u *= 0.9.
        let w1 = vals(w.as_tensor());
        assert!(
            (w1[0] - 0.849).abs() < 1e-6 && (w1[1] + 2.198).abs() < 1e-6,
            "{w1:?}"
        );
        // u_b = -2; b = 0.5 - 0.1 = 0.4; no decay.
        assert!((vals(b.as_tensor())[0] - 0.4).abs() < 1e-6);
        let st: HashMap<String, Tensor> = opt.state().into_iter().collect();
        let uw = vals(&st["w.update"]);
        assert!((uw[0] + 3.02 * 0.9).abs() < 1e-6 && (uw[1] + 3.96 * 0.9).abs() < 1e-6);
        // Second step: u = 0.9*u_prev - grad - decay*batch*w.
        opt.step(&loss(&w, &b).backward().unwrap(), lr, batch)
            .unwrap();
        let u0 = -3.02f32 * 0.9 - 3.0 - 0.02 * 0.849;
        assert!((vals(w.as_tensor())[0] - (0.849 + 0.05 * u0)).abs() < 1e-6);
        let ub = -2.0f32 * 0.9 - 2.0;
        assert!((vals(b.as_tensor())[0] - (0.4 + 0.05 * ub)).abs() < 1e-6);

        // State round trip.
        let mut other = DarknetSgd::new(
            vec![
                ("w".into(), w.clone(), ParamKind::Weights),
                ("b".into(), b.clone(), ParamKind::NoDecay),
            ],
            0.9,
            0.01,
        )
        .unwrap();
        let st: HashMap<String, Tensor> = opt.state().into_iter().collect();
        other.load_state(&st).unwrap();
        assert_eq!(vals(&other.state()[0].1), vals(&opt.state()[0].1));
        assert!(other.load_state(&HashMap::new()).is_err());
    }
}
