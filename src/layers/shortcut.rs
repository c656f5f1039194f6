//! `[shortcut]`: mirrors `forward_shortcut_layer` (src/shortcut_layer.c): `out = in + from`, then the activation.
//!
//! With inputs of another size Darknet uses `shortcut_multilayer_cpu`, which adds element `i` of each `from`
//! output to element `i` of the input as long as `i` is inside that output (flat index, per batch item); we do
//! the same. Weighted shortcuts (`weights_type`) are used by no detector cfg and are refused at load.

use candle_core::{Result, Tensor};

use super::activation::activate;
use crate::cfg::{ShortcutConfig, ShortcutWeights};

#[derive(Debug, Clone)]
pub struct Shortcut {
    pub cfg: ShortcutConfig,
}

impl Shortcut {
    pub fn new(cfg: &ShortcutConfig) -> Result<Self> {
        if cfg.weights_type != ShortcutWeights::None {
            candle_core::bail!(
                "weighted [shortcut] (weights_type={:?}) is not supported",
                cfg.weights_type
            );
        }
        Ok(Self { cfg: cfg.clone() })
    }

    pub fn forward(&self, x: &Tensor, from: &[&Tensor]) -> Result<Tensor> {
        let mut out = x.clone();
        for f in from {
            out = if f.dims() == x.dims() {
                (out + *f)?
            } else {
                add_flat_prefix(&out, f)?
            };
        }
        activate(&out, self.cfg.activation)
    }
}

/// `out[b][i] += add[b][i]` for `i < min(len(out[b]), len(add[b]))`, as `shortcut_multilayer_cpu` indexes.
fn add_flat_prefix(out: &Tensor, add: &Tensor) -> Result<Tensor> {
    let b = out.dim(0)?;
    let n = out.elem_count() / b;
    let m = add.elem_count() / b;
    let flat = out.reshape((b, n))?;
    let add = add.reshape((b, m))?;
    let add = if m >= n {
        add.narrow(1, 0, n)?
    } else {
        add.pad_with_zeros(1, 0, n - m)?
    };
    (flat + add)?.reshape(out.shape())
}
