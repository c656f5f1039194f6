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

    /// `V` of the tiles of tile rows `ty0..ty0 + rows` of one channel plane, written to `v[ξ·vstride + t]` (tile
    /// t = i·tw + tx of row ty0 + i).
    ///
    /// # Safety
    /// `v.add(ξ·vstride + t)` must be valid for writes for ξ < `xi`, t < rows·tw, and accessed by no other
    /// thread.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn input_rows(
        self,
        plane: &[f32],
        h: usize,
        w: usize,
        pad: usize,
        ty0: usize,
        rows: usize,
        tw: usize,
        v: *mut f32,
        vstride: usize,
        scratch: &mut Vec<f32>,
    ) {
        match self {
            Tile::F2 => f2::input_rows(plane, h, w, pad, ty0, rows, tw, v, vstride, scratch),
            Tile::F4 => f4::input_rows(plane, h, w, pad, ty0, rows, tw, v, vstride, scratch),
        }
    }

    /// `Y = Aᵀ M A` of `rows` consecutive tile rows of one image and filter, `tw` tiles each (GEMM outputs
    /// `m[ξ·mstride + t]`, tile t = row·`tw` + tx), into the `oh` output rows starting at `out` (row stride `ow`;
    /// `out()·(rows - 1) < oh ≤ out()·rows`, fewer past the bottom edge).
    ///
    /// # Safety
    /// `m.add(ξ·mstride + t)` must be valid for reads for ξ < `xi`, t < rows·tw; `out` valid for writes of
    /// `oh·ow` floats (they may be uninitialised) and accessed by no other thread;
    /// `out()·(tw - 1) < ow ≤ out()·tw`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn output_rows(
        self,
        m: *const f32,
        mstride: usize,
        tw: usize,
        rows: usize,
        ow: usize,
        oh: usize,
        out: *mut f32,
        scratch: &mut Vec<f32>,
    ) {
        match self {
            Tile::F2 => f2::output_rows(m, mstride, tw, rows, ow, oh, out, scratch),
            Tile::F4 => f4::output_rows(m, mstride, tw, rows, ow, oh, out, scratch),
        }
    }
}

/// The `N` consecutive `len`-long pieces at the start of `s`.
#[inline(always)]
fn split_mut<const N: usize>(s: &mut [f32], len: usize) -> [&mut [f32]; N] {
    let mut rest = s;
    std::array::from_fn(|_| {
        let (piece, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        piece
    })
}

/// Columns `out·tw`-strided input transforms need past each tile's phases: `next_q[t] = first_q[t + 1]` (the
/// next tile's first two columns) within a row of `tw` tiles, and for a row's last tile, whose next columns lie
/// past the row, that row's two `spill`ed columns (`spill[2·row + q]`).
#[inline(always)]
fn next_tile_columns(first: [&[f32]; 2], spill: &[f32], tw: usize, next: [&mut [f32]; 2]) {
    for (q, (f, nx)) in first.into_iter().zip(next).enumerate() {
        let n = nx.len();
        nx[..n - 1].copy_from_slice(&f[1..n]);
        for (row, sp) in spill.chunks_exact(2).enumerate() {
            nx[row * tw + tw - 1] = sp[q];
        }
    }
}

/// `row[2·tx + q] = p_q[tx]` for the pixels inside the row (the last tile may be cut by the right edge): four
/// tiles at a time with two SSE shuffles on x86-64 (part of its baseline; LLVM vectorises such a loop only
/// with 16 tiles or more).
#[inline(always)]
fn interleave2(row: &mut [f32], p: [&[f32]; 2]) {
    let tw = p[0].len();
    let full = (row.len() / 2).min(tw);
    let mut tx = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let (a, b) = (&p[0][..tw], &p[1][..tw]);
        while tx + 4 <= full {
            let dst = &mut row[2 * tx..2 * tx + 8];
            // SAFETY: SSE is in every x86-64 target; the loads read p_q[tx..tx + 4] (tx + 4 ≤ full ≤ tw), the
            // stores write dst's 8 floats.
            unsafe {
                let (va, vb) = (
                    _mm_loadu_ps(a.as_ptr().add(tx)),
                    _mm_loadu_ps(b.as_ptr().add(tx)),
                );
                _mm_storeu_ps(dst.as_mut_ptr(), _mm_unpacklo_ps(va, vb));
                _mm_storeu_ps(dst.as_mut_ptr().add(4), _mm_unpackhi_ps(va, vb));
            }
            tx += 4;
        }
    }
    for (i, v) in row.iter_mut().enumerate().skip(2 * tx) {
        *v = p[i % 2][i / 2];
    }
}

/// `d_q[t] = src[2t + q]`: the even and odd columns of a row of tiles, four tiles at a time with two SSE
/// shuffles on x86-64.
#[inline(always)]
fn deinterleave2(src: &[f32], d: [&mut [f32]; 2]) {
    let [d0, d1] = d;
    let n = d0.len();
    let (d1, src) = (&mut d1[..n], &src[..2 * n]);
    let mut t = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        while t + 4 <= n {
            // SAFETY: SSE is in every x86-64 target; the loads read src[2t..2t + 8] (t + 4 ≤ n), the stores
            // d_q[t..t + 4].
            unsafe {
                let p = src.as_ptr().add(2 * t);
                let (a, b) = (_mm_loadu_ps(p), _mm_loadu_ps(p.add(4)));
                _mm_storeu_ps(
                    d0.as_mut_ptr().add(t),
                    _mm_shuffle_ps::<0b10_00_10_00>(a, b),
                );
                _mm_storeu_ps(
                    d1.as_mut_ptr().add(t),
                    _mm_shuffle_ps::<0b11_01_11_01>(a, b),
                );
            }
            t += 4;
        }
    }
    for t in t..n {
        d0[t] = src[2 * t];
        d1[t] = src[2 * t + 1];
    }
}

/// `d_q[t] = src[4t + q]`: the four column phases of a row of tiles, four tiles at a time with a 4×4
/// transposition on x86-64 (SSE, part of its baseline; LLVM left this loop scalar).
#[inline(always)]
fn deinterleave4(src: &[f32], d: [&mut [f32]; 4]) {
    let [d0, d1, d2, d3] = d;
    let n = d0.len();
    let (d1, d2, d3, src) = (&mut d1[..n], &mut d2[..n], &mut d3[..n], &src[..4 * n]);
    let mut t = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        while t + 4 <= n {
            // SAFETY: SSE is in every x86-64 target; the loads read src[4t..4t + 16] (t + 4 ≤ n), the stores
            // d_q[t..t + 4].
            unsafe {
                let p = src.as_ptr().add(4 * t);
                let (a, b, c, e) = (
                    _mm_loadu_ps(p),
                    _mm_loadu_ps(p.add(4)),
                    _mm_loadu_ps(p.add(8)),
                    _mm_loadu_ps(p.add(12)),
                );
                let (ab0, ab1) = (_mm_unpacklo_ps(a, b), _mm_unpackhi_ps(a, b));
                let (ce0, ce1) = (_mm_unpacklo_ps(c, e), _mm_unpackhi_ps(c, e));
                _mm_storeu_ps(d0.as_mut_ptr().add(t), _mm_movelh_ps(ab0, ce0));
                _mm_storeu_ps(d1.as_mut_ptr().add(t), _mm_movehl_ps(ce0, ab0));
                _mm_storeu_ps(d2.as_mut_ptr().add(t), _mm_movelh_ps(ab1, ce1));
                _mm_storeu_ps(d3.as_mut_ptr().add(t), _mm_movehl_ps(ce1, ab1));
            }
            t += 4;
        }
    }
    for t in t..n {
        d0[t] = src[4 * t];
        d1[t] = src[4 * t + 1];
        d2[t] = src[4 * t + 2];
        d3[t] = src[4 * t + 3];
    }
}

/// [`interleave2`] for four pixels per tile: `row[4·tx + q] = p_q[tx]`, four tiles at a time with a 4×4
/// transposition.
#[inline(always)]
fn interleave4(row: &mut [f32], p: [&[f32]; 4]) {
    let tw = p[0].len();
    let full = (row.len() / 4).min(tw);
    let mut tx = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let p = p.map(|v| &v[..tw]);
        while tx + 4 <= full {
            let dst = &mut row[4 * tx..4 * tx + 16];
            // SAFETY: SSE is in every x86-64 target; the loads read p_q[tx..tx + 4] (tx + 4 ≤ full ≤ tw), the
            // stores write dst's 16 floats.
            unsafe {
                let [a, b, c, d] = p.map(|v| _mm_loadu_ps(v.as_ptr().add(tx)));
                let (ab0, ab1) = (_mm_unpacklo_ps(a, b), _mm_unpackhi_ps(a, b));
                let (cd0, cd1) = (_mm_unpacklo_ps(c, d), _mm_unpackhi_ps(c, d));
                let o = dst.as_mut_ptr();
                _mm_storeu_ps(o, _mm_movelh_ps(ab0, cd0));
                _mm_storeu_ps(o.add(4), _mm_movehl_ps(cd0, ab0));
                _mm_storeu_ps(o.add(8), _mm_movelh_ps(ab1, cd1));
                _mm_storeu_ps(o.add(12), _mm_movehl_ps(cd1, ab1));
            }
            tx += 4;
        }
    }
    for (i, v) in row.iter_mut().enumerate().skip(4 * tx) {
        *v = p[i % 4][i / 4];
    }
}
