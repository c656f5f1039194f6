//! Winograd convolution for 3×3 stride-1 layers (groups 1, dilation 1) on the CPU: the same result as Darknet's
//! `im2col_cpu_ext` + `gemm` in `forward_convolutional_layer` up to rounding (Lavin & Gray 2015; OpenCV DNN and
//! ncnn use Winograd for these layers by default too). Two tile sizes:
//!
//! - [`Tile::F2`], F(2×2, 3×3) ([`f2`]): 4×4 input patches, 16 GEMMs; 16 multiplies per 4 outputs.
//! - [`Tile::F4`], F(4×4, 3×3) ([`f4`]): 6×6 input patches, 36 GEMMs; 36 multiplies per 16 outputs (1.8× fewer
//!   than F2), with slightly larger rounding (docs/cpu-inference.md lists the worst layer error of each size on
//!   every reference).
//!
//! This module only dispatches on the tile size; the drivers (chunking, threads, epilogue) live in
//! [`super::conv`].

pub mod f2;
pub mod f4;

/// A Winograd tile size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tile {
    /// F(2×2, 3×3).
    F2,
    /// F(4×4, 3×3).
    F4,
}

impl Tile {
    /// Output pixels per tile side (2 or 4).
    pub fn out(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }

    /// Number of transformed components (GEMMs) per tile: (out + 2)².
    pub fn xi(self) -> usize {
        (self.out() + 2) * (self.out() + 2)
    }

    /// Tiles of an output map `oh × ow`: (rows, columns).
    pub fn tiles(self, oh: usize, ow: usize) -> (usize, usize) {
        (oh.div_ceil(self.out()), ow.div_ceil(self.out()))
    }

    /// `U = G g Gᵀ` of every (filter, channel) as `xi` row-major `[filters, channels]` matrices.
    pub fn transform_weights(self, w: &[f32], filters: usize, channels: usize) -> Vec<f32> {
        match self {
            Tile::F2 => f2::transform_weights(w, filters, channels),
            Tile::F4 => f4::transform_weights(w, filters, channels),
        }
    }

    /// `V` of the tiles of tile row `ty` of one channel plane, written to `v[ξ·vstride + tx]`.
    ///
    /// # Safety
    /// `v.add(ξ·vstride + tx)` must be valid for writes for ξ < `xi`, tx < `tw`, and accessed by no other thread.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn input_row(
        self,
        plane: &[f32],
        h: usize,
        w: usize,
        pad: usize,
        ty: usize,
        tw: usize,
        v: *mut f32,
        vstride: usize,
        scratch: &mut Vec<f32>,
    ) {
        match self {
            Tile::F2 => f2::input_row(plane, h, w, pad, ty, tw, v, vstride, scratch),
            Tile::F4 => f4::input_row(plane, h, w, pad, ty, tw, v, vstride, scratch),
        }
    }

    /// `Y = Aᵀ M A` of the `tw` tiles of one tile row (GEMM outputs `m[ξ·mstride + tx]`) into its output rows
    /// `out` (1 ≤ `out.len()` ≤ `out()`, fewer past the bottom edge), each `ow` wide.
    ///
    /// # Safety
    /// `m.add(ξ·mstride + tx)` must be valid for reads for ξ < `xi`, tx < `tw`; each row pointer valid for
    /// writes of `ow` floats (they may be uninitialised) and accessed by no other thread;
    /// `out()·(tw - 1) < ow ≤ out()·tw`.
    pub unsafe fn output_row(
        self,
        m: *const f32,
        mstride: usize,
        tw: usize,
        ow: usize,
        out: &[*mut f32],
        scratch: &mut Vec<f32>,
    ) {
        match self {
            Tile::F2 => f2::output_row(m, mstride, tw, ow, out[0], out.get(1).copied()),
            Tile::F4 => f4::output_row(m, mstride, tw, ow, out, scratch),
        }
    }
}
