//! `[reorg]` and `[reorg3d]`: mirror `parse_reorg` / `parse_reorg_old` (src/parser.c), `forward_reorg_old_layer` (src/reorg_old_layer.c) and
//! `forward_reorg_layer` (src/reorg_layer.c), both built on `reorg_cpu` (src/blas.c).
//!
//! `reorg_cpu(x, w, h, c, stride, forward)` walks `k < c, j < h, i < w` and pairs flat index
//! `in = i + w(j + h·k)` with `out = w2 + w·s(h2 + h·s·c2)`, where `c2 = k mod c/s²`, `off = k div (c/s²)`,
//! `w2 = i·s + off mod s`, `h2 = j·s + off div s`; `forward=0` gathers `out[in] = x[out]`, `forward=1` scatters
//! `out[out] = x[in]`. The old layer calls it with the *input* dims, the 3d one with the *output* dims, which is
//! why the two permute differently. We build the same permutation as an index and gather with it.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::options::usize_of;
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::graph::int;
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[reorg]` (old, `make_reorg_old_layer`) and `[reorg3d]` (`make_reorg_layer`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReorgConfig {
    pub stride: usize,
    pub reverse: bool,
    /// `[reorg]` is Darknet's `REORG_OLD`, `[reorg3d]` is `REORG`; they permute differently.
    pub old: bool,
}

/// `parse_reorg` (`[reorg3d]`) and `parse_reorg_old` (`[reorg]`, `old`), each key with its Darknet default.
pub fn parse_reorg(s: &Section, old: bool) -> CfgResult<ReorgConfig> {
    Ok(ReorgConfig {
        stride: usize_of(s.int_or("stride", 1)?, s, "stride", 1)?,
        reverse: s.int_or("reverse", 0)? != 0,
        old,
    })
}

impl LayerType for ReorgConfig {
    fn parse(s: &Section, _index: usize) -> CfgResult<Self> {
        parse_reorg(s, s.name == "reorg")
    }

    fn type_name(&self) -> &'static str {
        if self.old {
            "reorg"
        } else {
            "reorg3d"
        }
    }

    /// `make_reorg_layer`: `w/stride, h/stride, c·stride²` (the reverse when `reverse=1`).
    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        let s = self.stride;
        if self.reverse {
            if !i.c.is_multiple_of(s * s) {
                return Err(format!(
                    "reverse reorg needs channels divisible by {}",
                    s * s
                ));
            }
            Ok(Shape::new(i.c / (s * s), i.h * s, i.w * s))
        } else {
            if !i.h.is_multiple_of(s) || !i.w.is_multiple_of(s) {
                return Err(format!("reorg stride {s} does not divide input {i}"));
            }
            Ok(Shape::new(i.c * s * s, i.h / s, i.w / s))
        }
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!(
            "{}              /{:2}  {}",
            if self.old { "reorg_old" } else { "reorg    " },
            self.stride,
            io_shapes(l)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Reorg {
    pub cfg: ReorgConfig,
    pub output: Shape,
    /// `out_flat[i] = in_flat[index[i]]`.
    index: Tensor,
}

/// The `(in, out)` index pairs `reorg_cpu` visits.
fn reorg_pairs(w: usize, h: usize, c: usize, s: usize) -> Vec<(usize, usize)> {
    let in_c = c / (s * s);
    let mut pairs = Vec::with_capacity(w * h * c);
    for k in 0..c {
        for j in 0..h {
            for i in 0..w {
                let in_index = i + w * (j + h * k);
                let c2 = k % in_c;
                let off = k / in_c;
                let w2 = i * s + off % s;
                let h2 = j * s + off / s;
                let out_index = w2 + w * s * (h2 + h * s * c2);
                pairs.push((in_index, out_index));
            }
        }
    }
    pairs
}

impl Reorg {
    pub fn new(
        cfg: &ReorgConfig,
        input: Shape,
        output: Shape,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let s = cfg.stride;
        let (w, h, c) = if cfg.old {
            (input.w, input.h, input.c)
        } else {
            (output.w, output.h, output.c)
        };
        let n = input.numel();
        let mut index = vec![0u32; n];
        for (a, b) in reorg_pairs(w, h, c, s) {
            if a >= n || b >= n {
                candle_core::bail!("reorg stride {s} does not fit the input {input}");
            }
            if cfg.reverse {
                index[b] = a as u32; // out[out] = x[in]
            } else {
                index[a] = b as u32; // out[in] = x[out]
            }
        }
        let index = Tensor::from_vec(index, n, device)?;
        Ok(Self {
            cfg: cfg.clone(),
            output,
            index,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let flat = x.reshape((b, x.elem_count() / b))?;
        flat.index_select(&self.index, 1)?
            .reshape((b, self.output.c, self.output.h, self.output.w))
    }
}

impl DarknetLayer for Reorg {
    type Config = ReorgConfig;

    fn load(cfg: &ReorgConfig, spec: &LayerSpec, vb: &VarBuilder, _: &LoadOptions) -> Result<Self> {
        Reorg::new(cfg, spec.input, spec.output, vb.device())
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Reorg::forward(self, x)
    }

    /// The same permutation as [`Reorg::forward`]: flatten each image, `Gather` with `reorg_cpu`'s index table,
    /// reshape to the output shape.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, _ctx: &OnnxCtx) -> OnnxResult {
        let index: Vec<i64> = self
            .index
            .to_vec1::<u32>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(i64::from)
            .collect();
        let flat = g.reshape(x, &[0, -1]);
        let idx = g.const_i64(&index);
        let y = g.node("Gather", &[&flat, &idx], vec![int("axis", 1)]);
        let o = self.output;
        Ok(g.reshape(&y, &[0, o.c as i64, o.h as i64, o.w as i64]))
    }
}
