//! CPU inference forward of `[convolutional]`: mirrors `forward_convolutional_layer` (src/convolutional_layer.c)
//! — `im2col_cpu_ext` then `gemm` per group, then `normalize_cpu`/`scale_bias` (unfused) or nothing (fused),
//! `add_bias` and `activate_array` — but organised for speed on a few cores:
//!
//! - the weights are packed once, at load, for our GEMM ([`super::gemm`]: panels of `MR` rows of Darknet's
//!   `[filters, c/groups·size·size]` `l.weights` matrix, the GEMM's left operand); the batch-norm statistics are
//!   reduced to per-channel constants (`std = sqrtf(var + .00001f)`);
//! - the output pixels are cut into tiles; each task im2cols one tile of one image into a reused thread-local
//!   buffer (1×1 stride-1 convolutions read the input directly, as Darknet does), runs the single-threaded GEMM
//!   into the output and applies bias/normalisation and the activation to the tile while it is still in cache
//!   ([`super::activation`]);
//! - tasks are (image, pixel tile, block of output channels), scheduled with rayon, so a batch is split over
//!   images and tiles, and a small 13×13 layer over output channels, keeping every core busy ([`direct`]);
//! - 3×3 stride-1 layers run as Winograd F(4×4, 3×3) or F(2×2, 3×3) instead ([`winograd`],
//!   [`super::winograd`]).
//!
//! Output size and padding follow Darknet (`convolutional_out_height`: `(h + 2·pad - size)/stride + 1`, which
//! ignores dilation; im2col reads zeros outside the image), so dilation needs no special case.

mod direct;
#[cfg(test)]
mod tests;
mod winograd;

use std::cell::RefCell;
use std::sync::OnceLock;

use candle_core::{DType, Device, Result, Tensor};

use super::activation::{self, Affine};
use super::gemm::{self, PackedA, MR};
use super::planes::{with_planes, Planes};
use super::winograd::Tile;
use super::yolo::EntryOp;
use super::{CpuOptions, WinogradChoice};
use crate::cfg::{Activation, ConvConfig, Shape};

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
    /// Per group, its `[filters/groups, k]` weights (k = c/groups·size·size) packed for [`gemm`]; empty for
    /// layers that run Winograd.
    weight: Vec<PackedA>,
    /// Per output channel: bias, or the batch-norm constants.
    affine: Vec<Affine>,
    /// Activation applied in the epilogue (Linear when [`Self::post_activation`] is set).
    activation: Activation,
    /// Activation the epilogue does not implement, to apply afterwards with candle ops.
    pub post_activation: Option<Activation>,
    /// Winograd tile size and transformed weights (per ξ, `[filters, c]` packed for [`gemm`]) for 3×3
    /// stride-1 layers ([`super::winograd`]).
    winograd: Option<(Tile, Vec<PackedA>)>,
    /// F(4×4) for batched calls of a layer that runs F(2×2) at batch 1 (13×13 maps: measured at batch 8,
    /// 11.5 ms instead of 13.3 for yolov4-tiny's 512→512 layer, 6.7 instead of 7.2 for 256→512).
    batch_f4: Option<BatchF4>,
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

/// A layer folded into the convolution: what the epilogue does to each output value after the activation,
/// instead of that layer making a pass of its own over the output (the network folds a `[shortcut]` or
/// `[yolo]` that is the convolution's only reader, see `Network::load`).
pub enum Post<'a> {
    /// `[shortcut]` with one input of the output's shape and a linear activation: `y + from` element-wise, as
    /// `shortcut_multilayer_cpu` computes `out = in; out += add` (`from` laid out as the output; a float sum
    /// is the same in either order).
    Add(&'a [f32]),
    /// `[yolo]`'s activation ([`crate::cpu::yolo`]): `ops[f % ops.len()]` on output channel f.
    Yolo {
        ops: &'a [EntryOp],
        scale: f32,
        shift: f32,
    },
}

impl Post<'_> {
    /// Applies to `v`, values of output channel `f` (of the image's filters) that start at flat index `at` of
    /// the output.
    fn apply(&self, f: usize, at: usize, v: &mut [f32]) {
        match *self {
            Post::Add(from) => {
                // SAFETY: `multiversion!` runs the AVX-512/AVX2 copies only on a CPU that has them.
                unsafe { add_isa(v, &from[at..at + v.len()]) }
            }
            Post::Yolo { ops, scale, shift } => {
                crate::cpu::yolo::apply_in_place(v, ops[f % ops.len()], scale, shift)
            }
        }
    }
}

crate::cpu::multiversion! {
    unsafe fn add_isa(v: &mut [f32], from: &[f32]) = add_rows
}

#[inline(always)]
fn add_rows(v: &mut [f32], from: &[f32]) {
    for (x, a) in v.iter_mut().zip(from) {
        *x += *a;
    }
}

/// Batch-norm tensors (`[filters]` or `[1, filters, 1, 1]`) of an unfused layer.
pub struct BnTensors<'a> {
    pub scale: &'a Tensor,
    pub bias: &'a Tensor,
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
    /// `normalize_cpu`'s epsilon (`.00001f`).
    pub eps: f64,
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
        opts: &CpuOptions,
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
                        std: (v[f] + bn.eps as f32).sqrt(),
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
        let eligible = cfg.size == 3
            && cfg.stride_x == 1
            && dilation == 1
            && cfg.groups == 1
            && input.c >= 8
            && cfg.filters >= 8;
        let (f, c) = (cfg.filters, input.c);
        let winograd = eligible
            .then(|| winograd::choose_tile(opts.winograd, output))
            .flatten()
            .map(|tile| (tile, pack_winograd(tile, &w, f, c)));
        // Small maps that run F(2×2) at batch 1 switch to F(4×4) from BATCH_F4_TILES tiles per call on; its
        // weights are transformed on first use (only batched runs pay their memory).
        let batch_f4 = (opts.winograd == WinogradChoice::Auto
            && matches!(winograd, Some((Tile::F2, _))))
        .then(|| BatchF4 {
            raw: w.clone(),
            u: OnceLock::new(),
        });
        // The direct form's weights, only for the layers that run it.
        let mg = cfg.filters / cfg.groups;
        let weight = if winograd.is_some() {
            Vec::new()
        } else {
            (0..cfg.groups)
                .map(|g| PackedA::new(&w[g * mg * k..(g + 1) * mg * k], mg, k, k))
                .collect()
        };
        Ok(Some(PackedConv {
            winograd,
            batch_f4,
            filters: cfg.filters,
            groups: cfg.groups,
            size: cfg.size,
            stride: cfg.stride_x,
            pad: cfg.pad,
            dilation: cfg.dilation.max(1),
            input,
            output,
            weight,
            affine,
            activation,
            post_activation,
        }))
    }

    /// The Winograd tile size this layer runs with, if any.
    pub fn winograd_tile(&self) -> Option<Tile> {
        self.winograd.as_ref().map(|(t, _)| *t)
    }

    /// Which kernel runs this layer, for `bench --layers`: `winograd-f4`, `winograd-f2`, `gemm-1x1` (the input
    /// is the GEMM's right operand) or `im2col-gemm`.
    pub fn kernel_name(&self) -> &'static str {
        match self.winograd_tile() {
            Some(Tile::F4) => "winograd-f4",
            Some(Tile::F2) if self.batch_f4.is_some() => "winograd-f2/f4",
            Some(Tile::F2) => "winograd-f2",
            None if self.is_pointwise() => "gemm-1x1",
            None => "im2col-gemm",
        }
    }

    /// Runs the convolution with bias/normalisation and the epilogue activation on a CPU f32 tensor
    /// `[batch, c, h, w]` (no gradient). The caller applies [`Self::post_activation`] if set.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_parts(std::slice::from_ref(x))
    }

    /// [`Self::forward`] on the channel-wise concatenation of `parts` (CPU f32 tensors `[batch, c_i, h, w]`),
    /// read in place ([`crate::cpu::planes`]).
    pub fn forward_parts(&self, parts: &[Tensor]) -> Result<Tensor> {
        self.forward_post(parts, None)
    }

    /// [`Self::forward_parts`] with a following layer folded into the epilogue (`post`): the output is that
    /// layer's. The caller checks that `post` fits (a [`Post::Add`] input as long as the output).
    pub fn forward_post(&self, parts: &[Tensor], post: Option<&Post>) -> Result<Tensor> {
        let (oh, ow) = (self.output.h, self.output.w);
        let y = with_planes("darknet-conv-cpu", parts, self.input, |src, batch| {
            let len = batch * self.filters * oh * ow;
            if let Some(Post::Add(from)) = post {
                if from.len() != len {
                    candle_core::bail!(
                        "darknet-conv-cpu: folded shortcut input has {} values, the output {len}",
                        from.len()
                    );
                }
            }
            let mut y: Vec<f32> = Vec::with_capacity(len);
            if len > 0 {
                // The output is written through a raw pointer into the spare capacity and only then given its
                // length: no reference to uninitialised memory is ever made (zero-filling it first would cost
                // a full pass over every activation). SAFETY: the capacity holds `len` floats and `y` is not
                // otherwise used until `run` returns.
                unsafe {
                    self.run(
                        src,
                        SendPtr(y.spare_capacity_mut().as_mut_ptr().cast()),
                        batch,
                        post,
                    )
                };
            }
            // SAFETY: `run` wrote all `len` elements (each (image, filter, pixel) exactly once: the GEMMs
            // overwrite their output, the Winograd output transform writes every output pixel), see `run`.
            unsafe { y.set_len(len) };
            Ok((y, batch))
        })?;
        let (y, batch) = y;
        Tensor::from_vec(y, (batch, self.filters, oh, ow), &Device::Cpu)
    }

    fn k(&self) -> usize {
        self.input.c / self.groups * self.size * self.size
    }

    fn is_pointwise(&self) -> bool {
        self.size == 1 && self.stride == 1 && self.pad == 0
    }

    /// Runs the layer on `x` (`[batch, c, h, w]` contiguous) into `y` (`[batch, filters, oh, ow]`), writing
    /// every element of `y` exactly once through the pointer (never reading it before).
    ///
    /// # Safety
    /// `y` must be valid for writes of `batch·filters·oh·ow` floats, and nothing else may access them meanwhile.
    unsafe fn run(&self, x: &Planes, y: SendPtr, batch: usize, post: Option<&Post>) {
        match (&self.winograd, &self.batch_f4) {
            (Some(_), Some(b4)) if batch * self.f4_tiles() >= BATCH_F4_TILES => {
                let u = b4
                    .u
                    .get_or_init(|| pack_winograd(Tile::F4, &b4.raw, self.filters, self.input.c));
                self.run_winograd(Tile::F4, u, x, y, batch, post)
            }
            (Some((tile, u)), _) => self.run_winograd(*tile, u, x, y, batch, post),
            (None, _) => self.run_direct(x, y, batch, post),
        }
    }

    /// F(4×4) tiles of one image.
    fn f4_tiles(&self) -> usize {
        let (th, tw) = Tile::F4.tiles(self.output.h, self.output.w);
        th * tw
    }
}

/// Fewest F(4×4) tiles per call (all images) for a [`BatchF4`] layer to run F(4×4): 13×13 maps at batch ≥ 4.
const BATCH_F4_TILES: usize = 64;

/// The raw 3×3 weights of a layer that may switch to F(4×4) at larger batches, and their transform once made.
struct BatchF4 {
    raw: Vec<f32>,
    u: OnceLock<Vec<PackedA>>,
}

/// `U = G g Gᵀ` of `w` (`[f, c, 3, 3]`) for `tile`, one packed `[f, c]` matrix per ξ.
fn pack_winograd(tile: Tile, w: &[f32], f: usize, c: usize) -> Vec<PackedA> {
    let u = tile.transform_weights(w, f, c);
    (0..tile.xi())
        .map(|xi| PackedA::new(&u[xi * f * c..(xi + 1) * f * c], f, c, c))
        .collect()
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
    /// The whole images' im2col that a direct layer's channel blocks share, made on the calling thread.
    static SHARED_COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Scratch rows of the Winograd transforms of this thread.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The Winograd V and M buffers of this thread.
    static WINO: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// An output (or scratch) buffer shared by the rayon tasks of one call, each of which writes its own disjoint
/// region through raw pointers: the regions are (image, channel block, pixel tile) rectangles of a row-major
/// array, interleaved in memory, which `par_chunks_mut` cannot express.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: a SendPtr is only created by `PackedConv::forward_parts` and the Winograd driver for a buffer that outlives the
// parallel section using it, and every task derives from it pointers to a region no other task touches (see
// the SAFETY comment at each use).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
