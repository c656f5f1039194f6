//! CPU inference forward of `[convolutional]`: mirrors `forward_convolutional_layer` (src/convolutional_layer.c)
//! — `im2col_cpu_ext` then `gemm` per group, then `normalize_cpu`/`scale_bias` (unfused) or nothing (fused),
//! `add_bias` and `activate_array` — but organised for speed on a few cores:
//!
//! - the weights are copied once, at load, into one contiguous row-major `[filters, c/groups·size·size]` matrix
//!   (Darknet's `l.weights` layout, the GEMM's left operand); the batch-norm statistics are reduced to per-channel
//!   constants (`std = sqrtf(var + .00001f)`);
//! - the output pixels are cut into tiles; each task im2cols one tile of one image into a reused thread-local
//!   buffer (1×1 stride-1 convolutions read the input directly, as Darknet does), runs the `gemm` crate's
//!   single-threaded GEMM into the output and applies bias/normalisation and the activation to the tile while it
//!   is still in cache ([`super::activation`]);
//! - tasks are (image, pixel tile, block of output channels), scheduled with rayon, so a batch is split over
//!   images and tiles, and a small 13×13 layer over output channels, keeping every core busy.
//!
//! Output size and padding follow Darknet (`convolutional_out_height`: `(h + 2·pad - size)/stride + 1`, which
//! ignores dilation; im2col reads zeros outside the image), so dilation needs no special case.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape as CShape, Tensor};
use rayon::prelude::*;

use super::activation::{self, Affine};
use crate::cfg::{Activation, ConvConfig, Shape};

/// Fewest 2×2 output tiles per image for Winograd (a 7×7 map has 16).
const WINOGRAD_MIN_TILES: usize = 16;

/// A convolution ready to run on the CPU (see the module doc).
pub struct PackedConv {
    filters: usize,
    groups: usize,
    size: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    input: Shape,
    output: Shape,
    /// `[filters, k]`, k = c/groups·size·size.
    weight: Vec<f32>,
    /// Per output channel: bias, or the batch-norm constants.
    affine: Vec<Affine>,
    /// Activation applied in the epilogue (Linear when [`Self::post_activation`] is set).
    activation: Activation,
    /// Activation the epilogue does not implement, to apply afterwards with candle ops.
    pub post_activation: Option<Activation>,
    /// Winograd-transformed weights (`[16, filters, c]`) for 3×3 stride-1 layers ([`super::winograd`]).
    winograd: Option<Vec<f32>>,
}

impl std::fmt::Debug for PackedConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PackedConv({} → {}, {}×{}/{}, groups {}, {:?})",
            self.input.c,
            self.filters,
            self.size,
            self.size,
            self.stride,
            self.groups,
            self.activation
        )
    }
}

/// Batch-norm tensors (`[filters]` or `[1, filters, 1, 1]`) of an unfused layer.
pub struct BnTensors<'a> {
    pub scale: &'a Tensor,
    pub bias: &'a Tensor,
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

impl PackedConv {
    /// Packs a layer's tensors. `None` when the layer is not supported here (unequal strides); the caller keeps
    /// candle's conv2d for it.
    pub fn new(
        cfg: &ConvConfig,
        input: Shape,
        output: Shape,
        weight: &Tensor,
        bias: Option<&Tensor>,
        bn: Option<BnTensors>,
        bn_eps: f64,
    ) -> Result<Option<Self>> {
        if cfg.stride_x != cfg.stride_y || cfg.groups == 0 || !input.c.is_multiple_of(cfg.groups) {
            return Ok(None);
        }
        if !cfg.filters.is_multiple_of(cfg.groups) {
            return Ok(None);
        }
        let k = input.c / cfg.groups * cfg.size * cfg.size;
        let w = to_vec(weight)?;
        if w.len() != cfg.filters * k {
            candle_core::bail!(
                "weight has {} values, expected {}",
                w.len(),
                cfg.filters * k
            );
        }
        let affine = match (bn, bias) {
            (Some(bn), _) => {
                let (s, b, m, v) = (
                    to_vec(bn.scale)?,
                    to_vec(bn.bias)?,
                    to_vec(bn.mean)?,
                    to_vec(bn.var)?,
                );
                (0..cfg.filters)
                    .map(|f| Affine::BatchNorm {
                        mean: m[f],
                        // normalize_cpu: sqrtf(variance + .00001f), in f32.
                        std: (v[f] + bn_eps as f32).sqrt(),
                        scale: s[f],
                        bias: b[f],
                    })
                    .collect()
            }
            (None, Some(b)) => to_vec(b)?.into_iter().map(Affine::Bias).collect(),
            (None, None) => vec![Affine::Bias(0.0); cfg.filters],
        };
        let (activation, post_activation) = if activation::supported(cfg.activation) {
            (cfg.activation, None)
        } else {
            (Activation::Linear, Some(cfg.activation))
        };
        let dilation = cfg.dilation.max(1);
        let winograd = (cfg.size == 3
            && cfg.stride_x == 1
            && dilation == 1
            && cfg.groups == 1
            && input.c >= 8
            && cfg.filters >= 8
            && output.h.div_ceil(2) * output.w.div_ceil(2) >= WINOGRAD_MIN_TILES
            && super::winograd_enabled())
        .then(|| super::winograd::transform_weights(&w, cfg.filters, input.c));
        Ok(Some(PackedConv {
            winograd,
            filters: cfg.filters,
            groups: cfg.groups,
            size: cfg.size,
            stride: cfg.stride_x,
            pad: cfg.pad,
            dilation: cfg.dilation.max(1),
            input,
            output,
            weight: w,
            affine,
            activation,
            post_activation,
        }))
    }

    /// The same layer without the Winograd form (direct im2col + GEMM), for comparisons.
    pub fn without_winograd(mut self) -> Self {
        self.winograd = None;
        self
    }

    /// Whether 3×3 stride-1 Winograd is used for this layer.
    pub fn uses_winograd(&self) -> bool {
        self.winograd.is_some()
    }

    /// Runs the convolution with bias/normalisation and the epilogue activation on a CPU f32 tensor
    /// `[batch, c, h, w]`. The caller applies [`Self::post_activation`] if set.
    pub fn forward(self: &Arc<Self>, x: &Tensor) -> Result<Tensor> {
        x.apply_op1_no_bwd(&ConvOp(self.clone()))
    }

    fn k(&self) -> usize {
        self.input.c / self.groups * self.size * self.size
    }

    fn is_pointwise(&self) -> bool {
        self.size == 1 && self.stride == 1 && self.pad == 0
    }

    /// Pixels per tile: the im2col tile (k × tile floats) is kept around 1 MiB (at least 128 pixels), and the
    /// pixels are shared evenly between the tiles so that no tile is a thin remainder. When there are only a
    /// few tasks, their number is rounded up to whole rounds of `threads` (measured: layer 0 of yolov4-tiny had
    /// 5 tiles for 2 threads).
    fn tile(&self, batch: usize, threads: usize) -> usize {
        let n = self.output.h * self.output.w;
        let target = ((1 << 18) / self.k().max(1)).max(128);
        let mut n_tiles = n.div_ceil(target).max(1);
        let tasks = batch * n_tiles;
        if tasks >= threads && tasks < 4 * threads && n_tiles > 1 {
            n_tiles = (tasks.div_ceil(threads) * threads).div_ceil(batch);
        }
        n.div_ceil(n_tiles)
            .div_ceil(16)
            .saturating_mul(16)
            .min(n)
            .max(1)
    }

    /// Runs every (image, tile, channel block) task on `x` (`[batch, c, h, w]` contiguous) into `y`
    /// (`[batch, filters, oh, ow]`, every element written).
    fn run(&self, x: &[f32], y: &mut [f32], batch: usize) {
        if let Some(u) = &self.winograd {
            return self.run_winograd(u, x, y, batch);
        }
        let n = self.output.h * self.output.w;
        let threads = rayon::current_num_threads().max(1);
        let tile = self.tile(batch, threads);
        let n_tiles = n.div_ceil(tile);
        let mg = self.filters / self.groups;
        // Split output channels when images × tiles cannot keep every core busy (13×13 layers at batch 1).
        let want = 2 * threads;
        let m_splits = if batch * n_tiles >= want || self.groups > 1 {
            1
        } else {
            want.div_ceil(batch * n_tiles).min(mg.div_ceil(16)).max(1)
        };
        let m_block = mg.div_ceil(m_splits).div_ceil(8) * 8;
        let m_splits = mg.div_ceil(m_block);
        let tasks = batch * n_tiles * m_splits;
        let yp = SendPtr(y.as_mut_ptr());
        let run_task = |t: usize| {
            let mb = t % m_splits;
            let tile_i = (t / m_splits) % n_tiles;
            let b = t / (m_splits * n_tiles);
            let p0 = tile_i * tile;
            let np = tile.min(n - p0);
            let m0 = mb * m_block;
            let mlen = m_block.min(mg - m0);
            // SAFETY: tasks write disjoint (image, channel block, pixel tile) regions of y.
            unsafe { self.task(x, yp, b, p0, np, m0, mlen) };
        };
        if tasks == 1 {
            run_task(0);
        } else {
            (0..tasks).into_par_iter().for_each(run_task);
        }
    }

    /// Winograd F(2×2, 3×3). The tile rows of the whole batch (image-major) are cut into chunks; a chunk goes
    /// through three steps — input transform `V`, 16 GEMMs `M_ξ = U_ξ V_ξ`, output transform and epilogue — which
    /// either one thread runs alone (many chunks: each stays in its core's cache) or all threads share step by
    /// step (few chunks: 13×13 or 26×26 maps at batch 1), so that every GEMM keeps ≥ 64 tiles (or the whole
    /// map). Measured with one-row chunks (13 tiles on a 26×26 map) the GEMMs ran at half speed.
    fn run_winograd(&self, u: &[f32], x: &[f32], y: &mut [f32], batch: usize) {
        let th = self.output.h.div_ceil(2);
        let tw = self.output.w.div_ceil(2);
        let (c, m) = (self.input.c, self.filters);
        let rows_total = batch * th;
        let threads = rayon::current_num_threads().max(1);
        // V (16·c·nt) and M (16·m·nt) of a chunk around 1 MiB, but at least 64 tiles for the GEMMs' sake
        // (measured on yolov4-tiny: 32 is slower, 48-96 about equal).
        let target = ((1usize << 18) / (16 * (c + m))).max(64);
        let rows = target.div_ceil(tw).clamp(1, rows_total);
        let mut n_chunks = rows_total.div_ceil(rows);
        if n_chunks < 4 * threads && n_chunks >= threads {
            // Whole rounds of chunks, so that no core idles at the end.
            n_chunks = (n_chunks.div_ceil(threads) * threads).min(rows_total);
        }
        let yp = SendPtr(y.as_mut_ptr());
        let chunk = |i: usize| (i * rows_total / n_chunks, (i + 1) * rows_total / n_chunks);
        if n_chunks >= 2 * threads || threads == 1 {
            (0..n_chunks).into_par_iter().for_each(|i| {
                let (r0, r1) = chunk(i);
                WINO.with(|bufs| {
                    let mut bufs = bufs.borrow_mut();
                    let (v, mm) = &mut *bufs;
                    let nt = (r1 - r0) * tw;
                    grow(v, 16 * c * nt);
                    grow(mm, 16 * m * nt);
                    let (vp, mp) = (SendPtr(v.as_mut_ptr()), SendPtr(mm.as_mut_ptr()));
                    // SAFETY: this thread's own buffers, sized above; the chunk's output rows are its own.
                    unsafe {
                        self.wino_input(x, vp, r0, r1, 0, c);
                        self.wino_gemm(u, vp, mp, nt, 0, 16, 0, m);
                        self.wino_output(mp, yp, r0, r1, 0, m);
                    }
                });
            });
            return;
        }
        // Few chunks: every step of a chunk is split over the threads (channels; ξ × filter blocks; filters).
        let max_nt = rows_total.div_ceil(n_chunks) * tw;
        let mut v: Vec<f32> = Vec::with_capacity(16 * c * max_nt);
        let mut mm: Vec<f32> = Vec::with_capacity(16 * m * max_nt);
        // SAFETY: f32 has no invalid bit patterns; every element read is written first by the step before.
        #[allow(clippy::uninit_vec)]
        unsafe {
            v.set_len(16 * c * max_nt);
            mm.set_len(16 * m * max_nt);
        }
        let (vp, mp) = (SendPtr(v.as_mut_ptr()), SendPtr(mm.as_mut_ptr()));
        let per = |n: usize, parts: usize| n.div_ceil(parts).max(1);
        for i in 0..n_chunks {
            let (r0, r1) = chunk(i);
            let nt = (r1 - r0) * tw;
            let cb = per(c, 4 * threads);
            // SAFETY: tasks write disjoint channel rows of V, (ξ, filter block) blocks of M, filters of y.
            (0..c.div_ceil(cb)).into_par_iter().for_each(|j| unsafe {
                self.wino_input(x, vp, r0, r1, j * cb, ((j + 1) * cb).min(c))
            });
            let m_splits = (2 * threads).div_ceil(16).min(m.div_ceil(32)).max(1);
            let mb = per(m, m_splits).div_ceil(8) * 8;
            let m_splits = m.div_ceil(mb);
            (0..16 * m_splits).into_par_iter().for_each(|t| unsafe {
                let (xi, k) = (t / m_splits, t % m_splits);
                self.wino_gemm(u, vp, mp, nt, xi, xi + 1, k * mb, ((k + 1) * mb).min(m))
            });
            let fb = per(m, 4 * threads);
            (0..m.div_ceil(fb)).into_par_iter().for_each(|j| unsafe {
                self.wino_output(mp, yp, r0, r1, j * fb, ((j + 1) * fb).min(m))
            });
        }
    }

    /// `V[ξ][ci][t]` (row stride nt) for channels `c0..c1` and the batch's global tile rows `r0..r1`.
    unsafe fn wino_input(&self, x: &[f32], v: SendPtr, r0: usize, r1: usize, c0: usize, c1: usize) {
        let (c, h, w) = (self.input.c, self.input.h, self.input.w);
        let (th, tw) = (self.output.h.div_ceil(2), self.output.w.div_ceil(2));
        let nt = (r1 - r0) * tw;
        SCRATCH.with(|scratch| {
            let scratch = &mut *scratch.borrow_mut();
            for ci in c0..c1 {
                for r in r0..r1 {
                    let (b, ty) = (r / th, r % th);
                    let plane = &x[(b * c + ci) * h * w..(b * c + ci + 1) * h * w];
                    let dst = v.0.add(ci * nt + (r - r0) * tw);
                    super::winograd::input_row(plane, h, w, self.pad, ty, tw, dst, c * nt, scratch);
                }
            }
        });
    }

    /// `M[ξ][f][t] = U[ξ][f][:] · V[ξ][:][t]` for ξ in `x0..x1` and filters `f0..f1`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn wino_gemm(
        &self,
        u: &[f32],
        v: SendPtr,
        mm: SendPtr,
        nt: usize,
        x0: usize,
        x1: usize,
        f0: usize,
        f1: usize,
    ) {
        let (c, m) = (self.input.c, self.filters);
        for xi in x0..x1 {
            sgemm(
                f1 - f0,
                nt,
                c,
                mm.0.add((xi * m + f0) * nt),
                nt,
                u.as_ptr().add((xi * m + f0) * c),
                c,
                v.0.add(xi * c * nt),
                nt,
            );
        }
    }

    /// `Y = Aᵀ M A` into the output for filters `f0..f1` and global tile rows `r0..r1`, then the epilogue on
    /// the output rows they cover.
    unsafe fn wino_output(
        &self,
        mm: SendPtr,
        y: SendPtr,
        r0: usize,
        r1: usize,
        f0: usize,
        f1: usize,
    ) {
        let (oh, ow) = (self.output.h, self.output.w);
        let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
        let (m, nt) = (self.filters, (r1 - r0) * tw);
        for f in f0..f1 {
            let mut r = r0;
            while r < r1 {
                // The rows of one image in this chunk.
                let b = r / th;
                let re = r1.min((b + 1) * th);
                let out = y.0.add((b * m + f) * oh * ow);
                for gr in r..re {
                    let oy = 2 * (gr % th);
                    let src = mm.0.add(f * nt + (gr - r0) * tw);
                    let out0 = std::slice::from_raw_parts_mut(out.add(oy * ow), ow);
                    let out1 = (oy + 1 < oh)
                        .then(|| std::slice::from_raw_parts_mut(out.add((oy + 1) * ow), ow));
                    super::winograd::output_row(src, m * nt, tw, out0, out1);
                }
                let (oy0, oy1) = (2 * (r % th), (2 * ((re - 1) % th) + 2).min(oh));
                let rows = std::slice::from_raw_parts_mut(out.add(oy0 * ow), (oy1 - oy0) * ow);
                activation::epilogue(rows, self.affine[f], self.activation);
                r = re;
            }
        }
    }

    /// One task: for every group, the output channels `m0..m0+mlen` of that group over pixels `p0..p0+np` of
    /// image `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn task(
        &self,
        x: &[f32],
        y: SendPtr,
        b: usize,
        p0: usize,
        np: usize,
        m0: usize,
        mlen: usize,
    ) {
        let (c, h, w) = (self.input.c, self.input.h, self.input.w);
        let n = self.output.h * self.output.w;
        let cg = c / self.groups;
        let mg = self.filters / self.groups;
        let k = self.k();
        let xb = &x[b * c * h * w..(b + 1) * c * h * w];
        COL.with(|col| {
            let mut col = col.borrow_mut();
            for g in 0..self.groups {
                let xg = &xb[g * cg * h * w..(g + 1) * cg * h * w];
                // Right operand: k × np, row stride rs.
                let (rhs, rs): (*const f32, usize) = if self.is_pointwise() {
                    (xg.as_ptr().add(p0), h * w)
                } else {
                    if col.len() < k * np {
                        col.resize(k * np, 0.0);
                    }
                    self.im2col(xg, &mut col[..k * np], p0, np);
                    (col.as_ptr(), np)
                };
                let f0 = g * mg + m0;
                let dst = y.0.add((b * self.filters + f0) * n + p0);
                let lhs = self.weight.as_ptr().add(f0 * k);
                sgemm(mlen, np, k, dst, n, lhs, k, rhs, rs);
                for m in 0..mlen {
                    let row = std::slice::from_raw_parts_mut(dst.add(m * n), np);
                    activation::epilogue(row, self.affine[f0 + m], self.activation);
                }
            }
        });
    }

    /// `im2col_cpu_ext` restricted to output pixels `p0..p0+np`: `col[(ci·size + ky)·size + kx][p - p0]` is the
    /// input pixel read by that weight for output pixel p, 0 outside the image.
    fn im2col(&self, xg: &[f32], col: &mut [f32], p0: usize, np: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            if activation::has_avx2_fma() {
                // SAFETY: AVX2 and FMA are available (checked at run time).
                unsafe { self.im2col_avx2(xg, col, p0, np) };
                return;
            }
        }
        self.im2col_generic(xg, col, p0, np)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn im2col_avx2(&self, xg: &[f32], col: &mut [f32], p0: usize, np: usize) {
        self.im2col_generic(xg, col, p0, np)
    }

    #[inline(always)]
    fn im2col_generic(&self, xg: &[f32], col: &mut [f32], p0: usize, np: usize) {
        let (h, w) = (self.input.h as isize, self.input.w as isize);
        let ow = self.output.w;
        let (s, d, pad, size) = (
            self.stride as isize,
            self.dilation as isize,
            self.pad as isize,
            self.size,
        );
        let cg = self.input.c / self.groups;
        for ci in 0..cg {
            let plane = &xg[ci * (h * w) as usize..(ci + 1) * (h * w) as usize];
            for ky in 0..size {
                for kx in 0..size {
                    let r = (ci * size + ky) * size + kx;
                    let out = &mut col[r * np..(r + 1) * np];
                    let offx = kx as isize * d - pad;
                    let offy = ky as isize * d - pad;
                    // Output columns whose input column lies inside the image: 0 <= ox·s + offx < w.
                    let ox_lo = if offx >= 0 { 0 } else { ((-offx) + s - 1) / s };
                    let ox_hi = if w - offx <= 0 {
                        0
                    } else {
                        (w - offx + s - 1) / s
                    };
                    let ox_hi = (ox_hi as usize).min(ow);
                    let ox_lo = (ox_lo as usize).min(ox_hi);
                    let mut p = p0;
                    let end = p0 + np;
                    while p < end {
                        let oy = p / ow;
                        let ox0 = p % ow;
                        let ox1 = ow.min(ox0 + (end - p));
                        let seg = &mut out[p - p0..p - p0 + (ox1 - ox0)];
                        let iy = oy as isize * s + offy;
                        if iy < 0 || iy >= h {
                            seg.fill(0.0);
                        } else {
                            let src = &plane[(iy * w) as usize..((iy + 1) * w) as usize];
                            let a = ox_lo.clamp(ox0, ox1);
                            let z = ox_hi.clamp(a, ox1);
                            seg[..a - ox0].fill(0.0);
                            seg[z - ox0..].fill(0.0);
                            let dst = &mut seg[a - ox0..z - ox0];
                            if dst.is_empty() {
                                // No input column of this segment is inside the image (a narrow map whose
                                // window lies past the right edge): i0 below would be out of range.
                            } else if s == 1 {
                                let i0 = (a as isize + offx) as usize;
                                dst.copy_from_slice(&src[i0..i0 + dst.len()]);
                            } else {
                                let i0 = (a as isize * s + offx) as usize;
                                let s = s as usize;
                                // The last tap read, (i0 + (len-1)·s), is inside the row: z <= ox_hi.
                                let taps = &src[i0..i0 + (dst.len() - 1) * s + 1];
                                if s == 2 {
                                    // Stride 2 as its own loop: LLVM vectorises it (even/odd shuffles), and
                                    // stride-2 layers are ~10% of yolov4-tiny.
                                    let (tp, n) = (taps.as_ptr(), dst.len());
                                    let dp = dst.as_mut_ptr();
                                    // SAFETY: j < n, 2j <= 2(n-1) < taps.len().
                                    for j in 0..n {
                                        unsafe { *dp.add(j) = *tp.add(2 * j) };
                                    }
                                } else {
                                    for (v, x) in dst.iter_mut().zip(taps.iter().step_by(s)) {
                                        *v = *x;
                                    }
                                }
                            }
                        }
                        p += ox1 - ox0;
                    }
                }
            }
        }
    }
}

/// `dst[m×n] = a[m×k] · b[k×n]`, all row-major with row strides `ldd`, `lda`, `ldb`: the `gemm` crate's
/// single-threaded GEMM (the callers split the work over threads themselves).
///
/// # Safety
/// The three matrices must be valid for those shapes and strides; `dst` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ldd: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        ldd as isize,
        false,
        a,
        1,
        lda as isize,
        b,
        1,
        ldb as isize,
        0.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

/// Grows a reused buffer to at least `n` elements.
fn grow(buf: &mut Vec<f32>, n: usize) {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
}

thread_local! {
    /// The im2col tile buffer of this thread, reused across tasks and calls.
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Scratch rows of the Winograd transforms of this thread.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The Winograd V and M buffers of this thread.
    static WINO: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to write disjoint regions from rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// The candle custom op wrapping [`PackedConv::run`] (CPU only, no backward: inference path).
struct ConvOp(Arc<PackedConv>);

impl CustomOp1 for ConvOp {
    fn name(&self) -> &'static str {
        "darknet-conv-cpu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, CShape)> {
        let p = &self.0;
        let x = match storage {
            CpuStorage::F32(v) => v.as_slice(),
            _ => candle_core::bail!("darknet-conv-cpu: f32 input required"),
        };
        let dims = layout.dims();
        if dims.len() != 4 || dims[1] != p.input.c || dims[2] != p.input.h || dims[3] != p.input.w {
            candle_core::bail!(
                "darknet-conv-cpu: input {:?}, expected [batch, {}, {}, {}]",
                dims,
                p.input.c,
                p.input.h,
                p.input.w
            );
        }
        let x = match layout.contiguous_offsets() {
            Some((a, z)) => &x[a..z],
            None => candle_core::bail!("darknet-conv-cpu: contiguous input required"),
        };
        let batch = dims[0];
        let len = batch * p.filters * p.output.h * p.output.w;
        let mut y: Vec<f32> = Vec::with_capacity(len);
        // SAFETY: f32 has no invalid bit patterns, and `run` writes every element (gemm with read_dst = false
        // covers each (image, channel, pixel) exactly once) before anything reads it.
        #[allow(clippy::uninit_vec)]
        unsafe {
            y.set_len(len)
        };
        if len > 0 {
            p.run(x, &mut y, batch);
        }
        Ok((
            CpuStorage::F32(y),
            CShape::from((batch, p.filters, p.output.h, p.output.w)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::convolutional::{BatchNorm, Convolutional};
    use candle_core::Device;

    /// Deterministic values in [-1, 1) (a 64-bit LCG).
    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    struct Case {
        c: usize,
        h: usize,
        w: usize,
        filters: usize,
        size: usize,
        stride: usize,
        pad: usize,
        groups: usize,
        dilation: usize,
        act: Activation,
        bn: bool,
    }

    /// Our kernel against the candle path (`conv2d` + broadcast bias/BN + candle activation) of the same layer,
    /// batch 2.
    fn check(case: &Case, seed: u64) {
        let dev = Device::Cpu;
        let cfg = ConvConfig {
            filters: case.filters,
            size: case.size,
            stride_x: case.stride,
            stride_y: case.stride,
            dilation: case.dilation,
            pad: case.pad,
            groups: case.groups,
            activation: case.act,
            batch_normalize: case.bn,
            share_index: None,
            flipped: false,
        };
        let input = Shape::new(case.c, case.h, case.w);
        let out = |x: usize| (x + 2 * case.pad - case.size) / case.stride + 1;
        let output = Shape::new(case.filters, out(case.h), out(case.w));
        let wshape = (case.filters, case.c / case.groups, case.size, case.size);
        let nw = wshape.0 * wshape.1 * wshape.2 * wshape.3;
        let weight = Tensor::from_vec(rand_vec(nw, seed), wshape, &dev).unwrap();
        let f = case.filters;
        let vec_t = |v: Vec<f32>| Tensor::from_vec(v, (1, f, 1, 1), &dev).unwrap();
        let (bias, bn) = if case.bn {
            let var: Vec<f32> = rand_vec(f, seed + 3)
                .iter()
                .map(|v| v.abs() + 0.1)
                .collect();
            let bn = BatchNorm {
                scale: vec_t(rand_vec(f, seed + 1)),
                bias: vec_t(rand_vec(f, seed + 2)),
                running_mean: vec_t(rand_vec(f, seed + 4)),
                running_var: vec_t(var),
            };
            (None, Some(bn))
        } else {
            (
                Some(Tensor::from_vec(rand_vec(f, seed + 1), f, &dev).unwrap()),
                None,
            )
        };
        let packed = PackedConv::new(
            &cfg,
            input,
            output,
            &weight,
            bias.as_ref(),
            bn.as_ref().map(|bn| BnTensors {
                scale: &bn.scale,
                bias: &bn.bias,
                mean: &bn.running_mean,
                var: &bn.running_var,
            }),
            crate::layers::convolutional::BN_EPS,
        )
        .unwrap()
        .expect("supported");
        let mut layer = Convolutional {
            cfg,
            input,
            output,
            weight,
            bias,
            bn,
            cpu: Some(Arc::new(packed)),
        };
        let x = Tensor::from_vec(
            rand_vec(2 * case.c * case.h * case.w, seed + 9),
            (2, case.c, case.h, case.w),
            &dev,
        )
        .unwrap();
        let want = layer.forward_candle(&x).unwrap();
        let got = layer.forward(&x).unwrap();
        // Both CPU forms: Winograd (when the layer qualifies) and direct im2col + GEMM.
        let wino = layer.cpu.as_ref().unwrap().uses_winograd();
        let direct = Arc::try_unwrap(layer.cpu.take().unwrap())
            .unwrap()
            .without_winograd();
        layer.cpu = Some(Arc::new(direct));
        let got_direct = layer.forward(&x).unwrap();
        assert_eq!(
            wino,
            case.size == 3
                && case.stride == 1
                && case.dilation == 1
                && case.groups == 1
                && case.c >= 8
                && case.filters >= 8
                && output.h.div_ceil(2) * output.w.div_ceil(2) >= WINOGRAD_MIN_TILES
        );
        for (name, got) in [("winograd-or-direct", got), ("direct", got_direct)] {
            assert_eq!(got.dims(), want.dims());
            let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let scale = w.iter().fold(1f32, |m, v| m.max(v.abs()));
            let worst = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
            worst <= 2e-5 * scale,
            "{name} c{} {}x{} f{} size{} s{} p{} g{} d{} {:?} bn={}: worst |diff| {worst} (scale {scale})",
            case.c,
            case.h,
            case.w,
            case.filters,
            case.size,
            case.stride,
            case.pad,
            case.groups,
            case.dilation,
            case.act,
            case.bn
        );
            eprintln!("{name}: worst {worst:e} (scale {scale})");
        }
    }

    #[test]
    fn matches_candle_conv2d() {
        use Activation::*;
        #[rustfmt::skip]
        let cases = [
            // c, h, w, filters, size, stride, pad, groups, dilation, act, bn
            (3, 17, 19, 16, 3, 1, 1, 1, 1, Leaky, false),
            (8, 13, 13, 40, 3, 1, 1, 1, 1, Mish, true),
            (8, 16, 15, 24, 3, 2, 1, 1, 1, Leaky, true),
            (16, 9, 11, 33, 1, 1, 0, 1, 1, Linear, false),
            (12, 10, 10, 12, 3, 1, 1, 2, 1, Swish, false),
            (12, 10, 10, 12, 3, 1, 1, 12, 1, Logistic, true),
            (6, 12, 12, 8, 3, 1, 1, 1, 2, Leaky, false),
            (4, 14, 13, 10, 5, 2, 2, 1, 1, Relu, false),
            (5, 8, 8, 7, 1, 2, 0, 1, 1, Tanh, false),
            // Maps narrower than the kernel reach (4×4 with 3×3/2, 5×5/2 and 1×1/2): segments with no input.
            (6, 4, 4, 8, 3, 2, 1, 1, 1, Leaky, false),
            (6, 4, 5, 8, 5, 2, 2, 1, 1, Leaky, false),
            (6, 3, 3, 8, 3, 1, 1, 1, 2, Leaky, false),
            (64, 13, 13, 96, 3, 1, 1, 1, 1, Leaky, false),
            (32, 40, 40, 48, 1, 1, 0, 1, 1, Mish, false),
            (16, 37, 41, 32, 3, 1, 1, 1, 1, Leaky, false),
            // Winograd on small odd maps (30 and 16 tiles per image: one chunk shared by the threads).
            (24, 9, 11, 16, 3, 1, 1, 1, 1, Leaky, true),
            (8, 7, 7, 12, 3, 1, 1, 1, 1, Mish, false),
            // Several pixel tiles per image (k = 576 → tiles of ~455 pixels).
            (64, 30, 31, 20, 3, 1, 1, 1, 1, Leaky, true),
            (64, 50, 47, 8, 3, 2, 1, 1, 1, Mish, false),
        ];
        for (i, &(c, h, w, filters, size, stride, pad, groups, dilation, act, bn)) in
            cases.iter().enumerate()
        {
            let case = Case {
                c,
                h,
                w,
                filters,
                size,
                stride,
                pad,
                groups,
                dilation,
                act,
                bn,
            };
            check(&case, 100 * i as u64);
        }
    }
}
