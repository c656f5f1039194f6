//! `[maxpool]` and `[local_avgpool]`: mirror `parse_maxpool` / `parse_local_avgpool` (src/parser.c) and
//! `make_maxpool_layer`, `forward_maxpool_layer`, `forward_local_avgpool_layer` (src/maxpool_layer.c).
//!
//! Darknet's window for output (i, j) starts at `(i·stride - padding/2, j·stride - padding/2)`, with
//! `padding = size - 1` by default; positions outside the input count as `-FLT_MAX` for max and are left out of
//! the average (`avg / counter`). Output size `(w + padding - size)/stride + 1`. `maxpool_depth=1` takes the max
//! over channels `g, g+out_c, g+2·out_c, ...` instead of space.
//!
//! Deliberate difference: Darknet's CPU build with AVX runs stride-1 maxpools through `forward_maxpool_layer_avx`
//! (src/gemm.c), which tests only the first of its 8 lanes' window columns against the left edge, so near the left
//! edge lanes 1-7 skip in-window columns and output less than the window's maximum (`size >= 3` and
//! `out_w > size + 7`: SPP 5×5 and 9×9 on 19×19 and larger maps). We take the true maximum, as its scalar loop and
//! its GPU build do (docs/cpu-inference.md, "Winograd error bound": the yolov4-p6 comparison).

use candle_core::{DType, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::options::{refuse_nonzero, usize_of};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::graph::{int, ints};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[maxpool]` and `[local_avgpool]` (`parse_maxpool`, `parse_local_avgpool`; both build a maxpool layer).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MaxpoolConfig {
    pub size: usize,
    pub stride_x: usize,
    pub stride_y: usize,
    /// Darknet's `padding` (default `size-1`); the window starts at `-padding/2`.
    pub padding: usize,
    /// `maxpool_depth=1`: max over channel groups instead of space.
    pub maxpool_depth: bool,
    pub out_channels: usize,
    /// `[local_avgpool]`: average instead of max.
    pub avg: bool,
}

/// `parse_maxpool` and, with `avg`, `parse_local_avgpool` (src/parser.c), each key with its Darknet default.
pub fn parse_maxpool(s: &Section, avg: bool) -> CfgResult<MaxpoolConfig> {
    let stride = s.int_or("stride", 1)?;
    let stride_x = usize_of(s.int_or("stride_x", stride)?, s, "stride_x", 1)?;
    let stride_y = usize_of(s.int_or("stride_y", stride)?, s, "stride_y", 1)?;
    let size = usize_of(s.int_or("size", stride)?, s, "size", 1)?;
    let padding = usize_of(s.int_or("padding", size as i64 - 1)?, s, "padding", 0)?;
    let (maxpool_depth, out_channels) = if avg {
        (false, 1)
    } else {
        (
            s.int_or("maxpool_depth", 0)? != 0,
            usize_of(s.int_or("out_channels", 1)?, s, "out_channels", 1)?,
        )
    };
    if !avg {
        refuse_nonzero(s, &["antialiasing", "maxpool_zero_nonmax"])?;
    }
    Ok(MaxpoolConfig {
        size,
        stride_x,
        stride_y,
        padding,
        maxpool_depth,
        out_channels,
        avg,
    })
}

impl LayerType for MaxpoolConfig {
    fn parse(s: &Section, _index: usize) -> CfgResult<Self> {
        parse_maxpool(s, matches!(s.name.as_str(), "local_avgpool" | "local_avg"))
    }

    fn type_name(&self) -> &'static str {
        if self.avg {
            "local_avgpool"
        } else {
            "maxpool"
        }
    }

    /// `make_maxpool_layer`: `(w + padding - size)/stride + 1`; `maxpool_depth` keeps h, w and outputs
    /// `out_channels`.
    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        if i.numel() == 0 {
            return Err("the layer before [maxpool] must output an image".into());
        }
        if self.maxpool_depth {
            return Ok(Shape::new(self.out_channels, i.h, i.w));
        }
        let oh = (i.h + self.padding)
            .checked_sub(self.size)
            .map(|v| v / self.stride_y + 1);
        let ow = (i.w + self.padding)
            .checked_sub(self.size)
            .map(|v| v / self.stride_x + 1);
        match (oh, ow) {
            (Some(h), Some(w)) => Ok(Shape::new(i.c, h, w)),
            _ => Err(format!("window {} larger than padded input {i}", self.size)),
        }
    }

    fn info(&self, l: &LayerSpec) -> String {
        let name = if self.avg { "avg  " } else { "max  " };
        format!(
            "{name}           {:2}x{:2}/{:2}    {}",
            self.size,
            self.size,
            self.stride_x,
            io_shapes(l)
        )
    }
}

impl DarknetLayer for Maxpool {
    type Config = MaxpoolConfig;

    fn load(
        cfg: &MaxpoolConfig,
        spec: &LayerSpec,
        _vb: &VarBuilder,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let mut m = Maxpool::new(cfg, spec.input, spec.output);
        m.cpu_kernel = opts.cpu.enabled;
        Ok(m)
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Maxpool::forward(self, x)
    }

    /// `MaxPool` with Darknet's window placement: `padding/2` before, as much as the output needs after; ONNX
    /// ignores padded taps as Darknet's `-FLT_MAX` does. `local_avgpool`: `AveragePool` over the in-image taps
    /// only (`count_include_pad=0`). `maxpool_depth`: per output channel `g` the `ReduceMax` of channels
    /// `g, g+out_c, ...`.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, _ctx: &OnnxCtx) -> OnnxResult {
        let c = &self.cfg;
        if c.maxpool_depth {
            return Ok(self.depth_onnx(g, x));
        }
        let (t, b, l, r) = self.pads();
        let mut attrs = vec![
            ints("kernel_shape", &[c.size as i64, c.size as i64]),
            ints("strides", &[c.stride_y as i64, c.stride_x as i64]),
            ints("pads", &[t as i64, l as i64, b as i64, r as i64]),
        ];
        if c.avg {
            attrs.push(int("count_include_pad", 0));
            Ok(g.node("AveragePool", &[x], attrs))
        } else {
            Ok(g.node("MaxPool", &[x], attrs))
        }
    }

    fn kernel(&self) -> &'static str {
        if self.runs_cpu_kernel() {
            "cpu-maxpool"
        } else {
            "candle"
        }
    }

    fn takes_parts(&self) -> bool {
        self.runs_cpu_kernel()
    }

    fn forward_parts(&self, parts: &[Tensor], _inputs: &Inputs) -> Result<Tensor> {
        if self.runs_cpu_kernel() && parts.iter().all(cpu_input) {
            return self.cpu_op().forward_parts(parts);
        }
        Maxpool::forward(self, &Tensor::cat(parts, 1)?)
    }
}

/// Whether `x` can go to the CPU kernel: an f32 CPU tensor that tracks no gradient.
fn cpu_input(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && !x.track_op()
}

#[derive(Debug, Clone)]
pub struct Maxpool {
    pub cfg: MaxpoolConfig,
    pub input: Shape,
    pub output: Shape,
    /// Run f32 CPU inputs that track no gradient through [`crate::cpu::pool`] (`LoadOptions::cpu`).
    pub cpu_kernel: bool,
}

/// Pads dims 2 and 3 with `value` (`pad_with_zeros` only does zeros).
pub(crate) fn pad_value(
    x: &Tensor,
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
    value: f32,
) -> Result<Tensor> {
    let x = pad_dim(x, 2, top, bottom, value)?;
    pad_dim(&x, 3, left, right, value)
}

/// `x` with `a` values before and `b` after along `dim`, all `value`.
pub(crate) fn pad_dim(x: &Tensor, dim: usize, a: usize, b: usize, value: f32) -> Result<Tensor> {
    if a == 0 && b == 0 {
        return Ok(x.clone());
    }
    let mut parts = Vec::new();
    let mut dims = x.dims().to_vec();
    if a > 0 {
        dims[dim] = a;
        parts.push(Tensor::full(value, dims.clone(), x.device())?.to_dtype(x.dtype())?);
    }
    parts.push(x.clone());
    if b > 0 {
        dims[dim] = b;
        parts.push(Tensor::full(value, dims.clone(), x.device())?.to_dtype(x.dtype())?);
    }
    Tensor::cat(&parts, dim)
}

impl Maxpool {
    pub fn new(cfg: &MaxpoolConfig, input: Shape, output: Shape) -> Self {
        Self {
            cfg: cfg.clone(),
            input,
            output,
            cpu_kernel: true,
        }
    }

    /// Padding before (Darknet's `-padding/2` offset) and after, per axis, so that the padded input holds exactly
    /// the windows Darknet visits.
    pub(crate) fn pads(&self) -> (usize, usize, usize, usize) {
        let c = &self.cfg;
        let before = c.padding / 2;
        let need_h = (self.output.h - 1) * c.stride_y + c.size;
        let need_w = (self.output.w - 1) * c.stride_x + c.size;
        let after_h = need_h.saturating_sub(before + self.input.h);
        let after_w = need_w.saturating_sub(before + self.input.w);
        (before, after_h, before, after_w)
    }

    /// Whether a CPU f32 input without gradient goes through [`crate::cpu::pool`] (plain max-pooling with
    /// equal strides, kernels enabled).
    fn runs_cpu_kernel(&self) -> bool {
        let c = &self.cfg;
        self.cpu_kernel && !c.avg && !c.maxpool_depth && c.stride_x == c.stride_y
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        if c.maxpool_depth {
            return self.forward_depth(x);
        }
        if c.stride_x != c.stride_y {
            candle_core::bail!("maxpool with stride_x != stride_y is not supported");
        }
        if self.runs_cpu_kernel() && cpu_input(x) {
            return self.cpu_op().forward(x);
        }
        self.forward_candle(x)
    }

    /// The CPU kernel of this layer ([`Self::runs_cpu_kernel`]).
    fn cpu_op(&self) -> crate::cpu::pool::MaxPool {
        let c = &self.cfg;
        crate::cpu::pool::MaxPool {
            size: c.size,
            stride: c.stride_x,
            offset: c.padding / 2,
            input: self.input,
            output: self.output,
        }
    }

    /// The candle-ops forward (every device, differentiable).
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let (t, b, l, r) = self.pads();
        if c.avg {
            let xp = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
            let ones = Tensor::ones((1, 1, self.input.h, self.input.w), x.dtype(), x.device())?;
            let ones = ones.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
            let sum = window_sum(&xp, c.size, c.stride_x)?;
            let count = window_sum(&ones, c.size, c.stride_x)?;
            return sum.broadcast_div(&count);
        }
        let xp = pad_value(x, t, b, l, r, f32::MIN)?;
        // With a gradient: Darknet's argmax (below). Neither candle's max_pool2d (its backward in
        // candle-core 0.11.1 gives a window's maximum 1/(size·size) of the gradient) nor `maximum` (it
        // splits the gradient of a tie in halves) gives backward_maxpool_layer's gradient.
        if xp.track_op() {
            return first_max_pool(&xp, c.size, c.stride_x, self.output.h, self.output.w);
        }
        let y = if c.size == c.stride_x {
            xp.max_pool2d_with_stride(c.size, c.stride_x)?
        } else {
            separable_max(&xp, c.size, c.stride_x)?
        };
        y.narrow(2, 0, self.output.h)?.narrow(3, 0, self.output.w)
    }

    /// The ONNX form of [`Self::forward_depth`]: `Gather` the channel group, `ReduceMax` over it (its axes are an
    /// attribute before opset 18, an input since), `Concat`.
    fn depth_onnx(&self, g: &mut OnnxGraph, x: &str) -> String {
        let oc = self.cfg.out_channels;
        let mut parts = Vec::with_capacity(oc);
        for k in 0..oc {
            let idx: Vec<i64> = (k..self.input.c).step_by(oc).map(|v| v as i64).collect();
            let idx = g.const_i64(&idx);
            let sel = g.node("Gather", &[x, &idx], vec![int("axis", 1)]);
            let keep = int("keepdims", 1);
            parts.push(if g.opset >= 18 {
                let axes = g.const_i64(&[1]);
                g.node("ReduceMax", &[&sel, &axes], vec![keep])
            } else {
                g.node("ReduceMax", &[&sel], vec![ints("axes", &[1]), keep])
            });
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        g.node("Concat", &refs, vec![int("axis", 1)])
    }

    fn forward_depth(&self, x: &Tensor) -> Result<Tensor> {
        let oc = self.cfg.out_channels;
        let c = self.input.c;
        let mut out = Vec::with_capacity(oc);
        for g in 0..oc {
            let idx: Vec<u32> = (g..c).step_by(oc).map(|k| k as u32).collect();
            let idx = Tensor::new(idx.as_slice(), x.device())?;
            out.push(x.index_select(&idx, 1)?.max_keepdim(1)?);
        }
        Tensor::cat(&out, 1)
    }
}

/// Max over `size × size` windows with `stride` as the max of shifted views: separable (rows, then columns),
/// differentiable, and free of candle's `size == stride` restriction.
pub(crate) fn separable_max(x: &Tensor, size: usize, stride: usize) -> Result<Tensor> {
    let reduce = |x: &Tensor, dim: usize| -> Result<Tensor> {
        let n = x.dim(dim)?;
        let out = n + 1 - size;
        let mut m = x.narrow(dim, 0, out)?;
        for k in 1..size {
            m = m.maximum(&x.narrow(dim, k, out)?)?;
        }
        Ok(m)
    };
    let y = reduce(&reduce(x, 2)?, 3)?;
    subsample(&y, stride)
}

/// Max-pooling of the padded `xp` whose gradient is `backward_maxpool_layer`'s: each output's whole delta goes
/// to `l.indexes`, the first maximum of its window in `forward_maxpool_layer`'s scan order (rows, then
/// columns, replaced only by a strictly greater value). Ties are common where mosaic and letterbox fill the
/// image with constant gray. The argmax is found without gradient; the output is a `gather` at it, whose
/// backward is a `scatter_add` there. The values are the window maxima, as [`separable_max`]'s.
fn first_max_pool(
    xp: &Tensor,
    size: usize,
    stride: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Tensor> {
    let (n, c, hp, wp) = xp.dims4()?;
    let (h1, w1) = (hp + 1 - size, wp + 1 - size);
    let xd = xp.detach();
    // Flat index (row·wp + col) into the padded plane of window offset (0, 0) at every stride-1 position.
    let base: Vec<u32> = (0..h1)
        .flat_map(|i| (0..w1).map(move |j| (i * wp + j) as u32))
        .collect();
    let base = Tensor::from_vec(base, (1, 1, h1, w1), xp.device())?;
    let mut best = xd.narrow(2, 0, h1)?.narrow(3, 0, w1)?;
    let mut idx = base.broadcast_as((n, c, h1, w1))?.contiguous()?;
    for a in 0..size {
        for b in 0..size {
            if a == 0 && b == 0 {
                continue;
            }
            let v = xd.narrow(2, a, h1)?.narrow(3, b, w1)?;
            // `max_i = (val > max) ? index : max_i`: strictly greater only, so the first maximum stays.
            let gt = v.gt(&best)?;
            let at = (&base + (a * wp + b) as f64)?.broadcast_as((n, c, h1, w1))?;
            idx = gt.where_cond(&at, &idx)?;
            best = gt.where_cond(&v, &best)?;
        }
    }
    let idx = subsample(&idx, stride)?
        .narrow(2, 0, out_h)?
        .narrow(3, 0, out_w)?
        .contiguous()?;
    let flat = xp.reshape((n, c, hp * wp))?;
    flat.gather(&idx.reshape((n, c, out_h * out_w))?, 2)?
        .reshape((n, c, out_h, out_w))
}

fn window_sum(x: &Tensor, size: usize, stride: usize) -> Result<Tensor> {
    let sum_dim = |x: &Tensor, dim: usize| -> Result<Tensor> {
        let out = x.dim(dim)? + 1 - size;
        let mut m = x.narrow(dim, 0, out)?;
        for k in 1..size {
            m = (m + x.narrow(dim, k, out)?)?;
        }
        Ok(m)
    };
    subsample(&sum_dim(&sum_dim(x, 2)?, 3)?, stride)
}

fn subsample(x: &Tensor, stride: usize) -> Result<Tensor> {
    if stride == 1 {
        return Ok(x.clone());
    }
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    let rows: Vec<u32> = (0..h).step_by(stride).map(|v| v as u32).collect();
    let cols: Vec<u32> = (0..w).step_by(stride).map(|v| v as u32).collect();
    let x = x.index_select(&Tensor::new(rows.as_slice(), x.device())?, 2)?;
    x.index_select(&Tensor::new(cols.as_slice(), x.device())?, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfg::{LayerConfig, NetworkConfig};
    use candle_core::{Device, Var};

    /// backward_maxpool_layer hands each output's whole delta to its window's maximum, and with ties to the
    /// first one in forward_maxpool_layer's scan order (`val > max`). Regressions: the size == stride case
    /// went through candle's max_pool2d, whose backward gave it 1/(size·size) of it (every layer below a 2/2
    /// max-pool got a quarter of Darknet's update); the `maximum` chain that replaced it split each tie in
    /// halves (0.5/0.25/0.25 ... among equal values: the first update of the layers below a max-pool was
    /// 1–10 % away from Darknet's in the training-loop parity case, whose mosaic fills constant gray).
    #[test]
    fn gradient_goes_whole_to_the_window_maximum() {
        // Distinct values (every window's maximum unique), then ties: 9 levels and a constant block.
        let distinct: Vec<f32> = (0..72).map(|i| ((i * 37) % 72) as f32).collect();
        let tied: Vec<f32> = (0..72)
            .map(|i| {
                if i % 36 < 15 {
                    0.5
                } else {
                    ((i * 37) % 72 / 8) as f32
                }
            })
            .collect();
        for v in [distinct, tied] {
            gradient_at_first_maximum(&v);
        }
    }

    /// Why training does not use [`separable_max`]: candle's `maximum` splits a tie's gradient in halves,
    /// where Darknet gives it whole to the first maximum (the check above would fail on it).
    #[test]
    fn maximum_chain_splits_ties() {
        let x = Var::from_tensor(
            &Tensor::from_vec(vec![0.5f32, 0.5, 0.5, 0.5], (1, 1, 2, 2), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let g = separable_max(x.as_tensor(), 2, 2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let split = g.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        assert_eq!(split.to_vec1::<f32>().unwrap(), vec![0.25f32; 4]);
        let y = first_max_pool(x.as_tensor(), 2, 2, 1, 1).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let whole = g.get(x.as_tensor()).unwrap().flatten_all().unwrap();
        assert_eq!(whole.to_vec1::<f32>().unwrap(), vec![1.0, 0.0, 0.0, 0.0]);
    }

    fn gradient_at_first_maximum(v: &[f32]) {
        for (size, stride) in [(2, 2), (2, 1), (3, 3), (3, 1), (5, 1)] {
            let text = format!(
                "[net]\nwidth=6\nheight=6\nchannels=2\n[maxpool]\nsize={size}\nstride={stride}\n"
            );
            let cfg = NetworkConfig::parse(&text, std::path::Path::new("m.cfg")).unwrap();
            let spec = &cfg.layers[0];
            let LayerConfig::Maxpool(mc) = &spec.config else {
                panic!("not a maxpool")
            };
            let m = Maxpool::new(mc, spec.input, spec.output);
            let x = Var::from_tensor(
                &Tensor::from_vec(v.to_vec(), (1, 2, 6, 6), &Device::Cpu).unwrap(),
            )
            .unwrap();
            let y = m.forward(x.as_tensor()).unwrap();
            // The values are those of the inference path (CPU kernel, no gradient).
            let y0 = m.forward(&x.as_tensor().detach()).unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(flat(&y), flat(&y0), "size {size} stride {stride}");
            let g = y.sum_all().unwrap().backward().unwrap();
            let gx = g
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            // Expected: each output adds 1 at the index of its window's maximum (Darknet's l.indexes).
            let (oh, ow) = (spec.output.h, spec.output.w);
            let mut want = vec![0f32; 72];
            let pad = mc.padding / 2;
            for c in 0..2 {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut best = (f32::MIN, 0usize);
                        for a in 0..size {
                            for b in 0..size {
                                let (r, q) = (
                                    (i * stride + a) as isize - pad as isize,
                                    (j * stride + b) as isize - pad as isize,
                                );
                                if r < 0 || q < 0 || r >= 6 || q >= 6 {
                                    continue;
                                }
                                let k = c * 36 + r as usize * 6 + q as usize;
                                if v[k] > best.0 {
                                    best = (v[k], k);
                                }
                            }
                        }
                        want[best.1] += 1.0;
                    }
                }
            }
            assert_eq!(gx, want, "size {size} stride {stride}");
        }
    }
}
