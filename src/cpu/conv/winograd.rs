//! The Winograd form of [`PackedConv`] (3×3 stride-1 layers): the tile rows of the whole batch are cut into
//! chunks; a chunk goes through three steps — input transform `V`, `xi` GEMMs `M_ξ = U_ξ V_ξ` over the channels,
//! output transform and epilogue — which either one thread runs alone (many chunks: each stays in its core's
//! cache) or all threads share step by step (few chunks: 13×13 or 26×26 maps at batch 1), so that every GEMM keeps
//! ≥ 64 tiles (or the whole map). Measured with one-row chunks (13 tiles on a 26×26 map) the GEMMs ran at half
//! speed. The transforms themselves are in [`crate::cpu::winograd`].

use std::cell::RefCell;

use rayon::prelude::*;

use super::{
    activation, gemm, grow, PackedA, PackedConv, Planes, Post, SendPtr, MR, SCRATCH, WINO,
};
use crate::cfg::Shape;
use crate::cpu::winograd::Tile;
use crate::cpu::WinogradChoice;

/// Fewest F(2×2) output tiles per image for Winograd (a 7×7 map has 16): below that the transforms cost more
/// than they save.
const MIN_TILES: usize = 16;

/// Fewest F(4×4) tiles per image for `Auto` to choose F(4×4). Measured on yolov4-tiny's 13×13 layers (16 tiles):
/// F(4×4) took 4.4 ms and 2.3 ms where F(2×2) took 2.6 and 1.5 (GEMMs over 16 columns run at a third of the
/// speed of wide ones); 26×26 maps (49 tiles) gain.
const MIN_F4_TILES: usize = 32;

/// Most tiles per output-transform call, rounded down to whole tile rows (F(4×4) keeps 40 floats of scratch per
/// tile: 10 KiB; a whole 13×13 or 26×26 map at batch 1 is 49 tiles, a 52×52 map's rows go four at a time).
const OUTPUT_TILES: usize = 64;

/// Most tiles per input-transform call, rounded down to whole tile rows (F(4×4) keeps about 60 floats of scratch
/// per tile: 15 KiB).
const INPUT_TILES: usize = 64;

/// Fewest tiles per chunk, on average, for the threads to run chunks of their own (see `run_winograd`).
const MIN_CHUNK_TILES: usize = 56;

thread_local! {
    /// V and M of the calling thread when the threads share one chunk's steps (few chunks), reused across calls.
    pub(super) static SHARED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The tile size for a 3×3 stride-1 layer with `c` input channels, `m` filters and output `out`, or `None` for
/// the direct form. `Auto` takes F(4×4) when a map has at least [`MIN_F4_TILES`] of its tiles per image and its
/// padding waste still leaves it a quarter fewer multiplies than F(2×2), F(2×2) otherwise.
pub(super) fn choose_tile(choice: WinogradChoice, out: Shape) -> Option<Tile> {
    let tiles = |t: Tile| {
        let (a, b) = t.tiles(out.h, out.w);
        a * b
    };
    if tiles(Tile::F2) < MIN_TILES {
        return None;
    }
    match choice {
        WinogradChoice::Off => None,
        WinogradChoice::F2 => Some(Tile::F2),
        WinogradChoice::F4 => Some(Tile::F4),
        WinogradChoice::Auto => {
            let mults = |t: Tile| t.xi() * tiles(t);
            Some(
                if tiles(Tile::F4) >= MIN_F4_TILES && 4 * mults(Tile::F4) <= 3 * mults(Tile::F2) {
                    Tile::F4
                } else {
                    Tile::F2
                },
            )
        }
    }
}

impl PackedConv {
    /// Runs the layer as Winograd with `tile` and transformed weights `u`.
    ///
    /// # Safety
    /// As [`PackedConv::run`].
    pub(super) unsafe fn run_winograd(
        &self,
        tile: Tile,
        u: &[PackedA],
        x: &Planes,
        y: SendPtr,
        batch: usize,
        post: Option<&Post>,
    ) {
        let (th, tw) = tile.tiles(self.output.h, self.output.w);
        let (c, m, xi) = (self.input.c, self.filters, tile.xi());
        let rows_total = batch * th;
        let threads = rayon::current_num_threads().max(1);
        // V (xi·c·nt) and M (xi·m·nt) of a chunk around half the L2 cache (1 MiB here), but at least 64 tiles for
        // the GEMMs' sake (measured on yolov4-tiny with F(2×2): 32 is slower, 48-96 about equal).
        let target = (crate::cpu::l2_floats() / (xi * (c + m))).max(64);
        // Each chunk reads all of U (xi·m·c) again. Where U outweighs a chunk's V and M (large layers on small
        // maps at batch > 1: 14 MB of U for yolov4-tiny's layer 35), chunks grow until the U traffic is no more
        // than the V and M traffic, i.e. at most (c + m)·tiles/(m·c) chunks.
        let max_chunks = ((c + m) * rows_total * tw).div_ceil(m * c).max(1);
        let target = target.max((rows_total * tw).div_ceil(max_chunks));
        let rows = target.div_ceil(tw).clamp(1, rows_total);
        let mut n_chunks = rows_total.div_ceil(rows);
        if n_chunks >= threads {
            // Whole rounds of chunks, so that no core idles at the end (measured: yolov4-tiny's 104×104 layer
            // had 9 chunks for 2 threads, 1.82 ms where one thread took 3.06).
            n_chunks = (n_chunks.div_ceil(threads) * threads).min(rows_total);
        }
        // Chunks this narrow (a 52×52 map at batch 1: 4 chunks of 39-52 tiles, GEMMs a fifth masked lanes) are
        // worse than the threads sharing one chunk of the whole map (measured on yolov4-tiny's 52×52 layers:
        // 1.44 → 1.20-1.29 ms and 0.50 → 0.42-0.45), as long as its V and M stay within a few L2 caches.
        let whole = xi * (c + m) * rows_total * tw * 4;
        if threads > 1 && rows_total * tw < MIN_CHUNK_TILES * n_chunks && whole <= 16 << 20 {
            n_chunks = 1;
        }
        let chunk = |i: usize| (i * rows_total / n_chunks, (i + 1) * rows_total / n_chunks);
        if n_chunks >= 2 * threads || threads == 1 {
            (0..n_chunks).into_par_iter().for_each(|i| {
                let (r0, r1) = chunk(i);
                WINO.with(|bufs| {
                    let mut bufs = bufs.borrow_mut();
                    let (v, mm) = &mut *bufs;
                    let nt = (r1 - r0) * tw;
                    grow(v, xi * c * nt);
                    grow(mm, xi * m * nt);
                    let (vp, mp) = (SendPtr(v.as_mut_ptr()), SendPtr(mm.as_mut_ptr()));
                    // SAFETY: this thread's own buffers, sized above; the chunk's output rows (all filters of
                    // tile rows r0..r1) are written by this task only.
                    unsafe {
                        self.wino_input(tile, x, vp, r0, r1, 0, c);
                        self.wino_gemm(xi, u, vp, mp, nt, 0, xi, 0, m);
                        self.wino_output(tile, mp, y, (r0, r1), (0, m), post);
                    }
                });
            });
            return;
        }
        // Few chunks: every step of a chunk is split over the threads (channels; ξ × filter blocks; filters).
        SHARED.with(|cell| {
            // Held across parallel sections: if this thread, while waiting in one, runs another network's
            // convolution (a caller that runs forwards inside rayon tasks), that one gets fresh buffers.
            let mut own = (Vec::new(), Vec::new());
            let mut shared = cell.try_borrow_mut();
            let (v, mm) = match shared.as_deref_mut() {
                Ok(bufs) => (&mut bufs.0, &mut bufs.1),
                Err(_) => (&mut own.0, &mut own.1),
            };
            let max_nt = rows_total.div_ceil(n_chunks) * tw;
            grow(v, xi * c * max_nt);
            grow(mm, xi * m * max_nt);
            let (vp, mp) = (SendPtr(v.as_mut_ptr()), SendPtr(mm.as_mut_ptr()));
            let per = |n: usize, parts: usize| n.div_ceil(parts).max(1);
            for i in 0..n_chunks {
                let (r0, r1) = chunk(i);
                let nt = (r1 - r0) * tw;
                let cb = per(c, 4 * threads);
                // SAFETY (the three loops): tasks write disjoint channel rows of V, (ξ, filter block) blocks
                // of M, filters of y; each step reads only what the step before wrote (the loops join).
                (0..c.div_ceil(cb)).into_par_iter().for_each(|j| unsafe {
                    self.wino_input(tile, x, vp, r0, r1, j * cb, ((j + 1) * cb).min(c))
                });
                let m_splits = (2 * threads).div_ceil(xi).min(m.div_ceil(32)).max(1);
                let mb = per(m, m_splits).div_ceil(MR) * MR;
                let m_splits = m.div_ceil(mb);
                (0..xi * m_splits).into_par_iter().for_each(|t| unsafe {
                    let (xj, k) = (t / m_splits, t % m_splits);
                    self.wino_gemm(xi, u, vp, mp, nt, xj, xj + 1, k * mb, ((k + 1) * mb).min(m))
                });
                let fb = per(m, 4 * threads);
                (0..m.div_ceil(fb)).into_par_iter().for_each(|j| unsafe {
                    self.wino_output(tile, mp, y, (r0, r1), (j * fb, ((j + 1) * fb).min(m)), post)
                });
            }
        });
    }

    /// `V[ξ][ci][t]` (row stride nt) for channels `c0..c1` and the batch's global tile rows `r0..r1`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn wino_input(
        &self,
        tile: Tile,
        x: &Planes,
        v: SendPtr,
        r0: usize,
        r1: usize,
        c0: usize,
        c1: usize,
    ) {
        let (c, h, w) = (self.input.c, self.input.h, self.input.w);
        let (th, tw) = tile.tiles(self.output.h, self.output.w);
        let nt = (r1 - r0) * tw;
        SCRATCH.with(|scratch| {
            let scratch = &mut *scratch.borrow_mut();
            for ci in c0..c1 {
                // The tile rows of one image at once, in groups of at most INPUT_TILES tiles.
                let mut r = r0;
                while r < r1 {
                    let (b, ty) = (r / th, r % th);
                    let re = r1.min((b + 1) * th).min(r + (INPUT_TILES / tw).max(1));
                    let plane = x.plane(b, ci);
                    let dst = v.0.add(ci * nt + (r - r0) * tw);
                    tile.input_rows(plane, h, w, self.pad, ty, re - r, tw, dst, c * nt, scratch);
                    r = re;
                }
            }
        });
    }

    /// `M[ξ][f][t] = U[ξ][f][:] · V[ξ][:][t]` for ξ in `x0..x1` and filters `f0..f1` (`xi` components in all).
    #[allow(clippy::too_many_arguments)]
    unsafe fn wino_gemm(
        &self,
        xi: usize,
        u: &[PackedA],
        v: SendPtr,
        mm: SendPtr,
        nt: usize,
        x0: usize,
        x1: usize,
        f0: usize,
        f1: usize,
    ) {
        debug_assert!(x1 <= xi);
        let (c, m) = (self.input.c, self.filters);
        for (xj, uj) in u.iter().enumerate().take(x1).skip(x0) {
            gemm::gemm(
                uj,
                f0,
                f1 - f0,
                nt,
                v.0.add(xj * c * nt),
                nt,
                mm.0.add((xj * m + f0) * nt),
                nt,
            );
        }
    }

    /// `Y = Aᵀ M A` into the output for filters `f0..f1` and global tile rows `r0..r1`, then the epilogue on
    /// the output rows they cover (written just before, so initialised).
    #[allow(clippy::too_many_arguments)]
    unsafe fn wino_output(
        &self,
        tile: Tile,
        mm: SendPtr,
        y: SendPtr,
        (r0, r1): (usize, usize),
        (f0, f1): (usize, usize),
        post: Option<&Post>,
    ) {
        let (oh, ow) = (self.output.h, self.output.w);
        let (th, tw) = tile.tiles(oh, ow);
        let (m, nt, to) = (self.filters, (r1 - r0) * tw, tile.out());
        SCRATCH.with(|scratch| {
            let scratch = &mut *scratch.borrow_mut();
            for f in f0..f1 {
                let mut r = r0;
                while r < r1 {
                    // The rows of one image in this chunk.
                    let b = r / th;
                    let re = r1.min((b + 1) * th);
                    let out = y.0.add((b * m + f) * oh * ow);
                    // The image's tile rows at once (their tiles are consecutive in M), in groups of at most
                    // OUTPUT_TILES tiles so that the transform's scratch stays in L1.
                    let group = (OUTPUT_TILES / tw).max(1);
                    let mut gr = r;
                    while gr < re {
                        let ge = re.min(gr + group);
                        let oy = to * (gr % th);
                        let n_out = (to * (ge - gr)).min(oh - oy);
                        let src = mm.0.add(f * nt + (gr - r0) * tw);
                        tile.output_rows(
                            src,
                            m * nt,
                            tw,
                            ge - gr,
                            ow,
                            n_out,
                            out.add(oy * ow),
                            scratch,
                        );
                        gr = ge;
                    }
                    let (oy0, oy1) = (to * (r % th), (to * ((re - 1) % th) + to).min(oh));
                    let rows = std::slice::from_raw_parts_mut(out.add(oy0 * ow), (oy1 - oy0) * ow);
                    activation::epilogue(rows, self.affine[f], self.activation);
                    if let Some(post) = post {
                        post.apply(f, (b * m + f) * oh * ow + oy0 * ow, rows);
                    }
                    r = re;
                }
            }
        });
    }
}
