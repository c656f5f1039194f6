//! The direct form of [`PackedConv`]: Darknet's `im2col_cpu_ext` + `gemm` (src/im2col.c, src/gemm.c) on tiles of
//! output pixels, with the epilogue applied while each tile is in cache.

use std::ops::Range;

use rayon::prelude::*;

use super::{activation, gemm, grow, PackedConv, Planes, Post, SendPtr, COL, MR, SHARED_COL};
use crate::cpu::gemm::BRows;

impl PackedConv {
    /// Pixels per tile: the im2col tile (k × tile floats) is kept around half the L2 cache ([`crate::cpu::l2_floats`],
    /// 1 MiB here; at least 128 pixels), and the
    /// pixels are shared evenly between the tiles so that no tile is a thin remainder. When there are only a
    /// few tasks, their number is rounded up to whole rounds of `threads` (measured: layer 0 of yolov4-tiny had
    /// 5 tiles for 2 threads).
    fn tile(&self, batch: usize, threads: usize) -> usize {
        let n = self.output.h * self.output.w;
        let target = (crate::cpu::l2_floats() / self.k().max(1)).max(128);
        let mut n_tiles = n.div_ceil(target).max(1);
        let tasks = batch * n_tiles;
        if tasks >= threads && tasks < 16 * threads && n_tiles > 1 {
            n_tiles = (tasks.div_ceil(threads) * threads).div_ceil(batch);
        }
        n.div_ceil(n_tiles)
            .div_ceil(16)
            .saturating_mul(16)
            .min(n)
            .max(1)
    }

    /// Runs every (image, tile, channel block) task on `x` (`[batch, c, h, w]` contiguous) into `y`
    /// (`[batch, filters, oh, ow]`, every element written once).
    ///
    /// # Safety
    /// As [`PackedConv::run`].
    pub(super) unsafe fn run_direct(
        &self,
        x: &Planes,
        y: SendPtr,
        batch: usize,
        post: Option<&Post>,
    ) {
        let n = self.output.h * self.output.w;
        let threads = rayon::current_num_threads().max(1);
        let mut tile = self.tile(batch, threads);
        let mut n_tiles = n.div_ceil(tile);
        let mg = self.filters / self.groups;
        // Split output channels when images × tiles cannot keep every core busy (13×13 layers at batch 1).
        let want = 2 * threads;
        let m_split = |tasks: usize| {
            if tasks >= want || self.groups > 1 {
                1
            } else {
                want.div_ceil(tasks).min(mg.div_ceil(16)).max(1)
            }
        };
        // Where channels are split anyway, an im2col layer takes whole images as one tile and makes each
        // image's im2col once, shared by its channel blocks: split by pixels, every block redid the im2col of
        // its tile and read all its weights again for each tile (measured on yolov4's 512→1024 26×26 → 13×13
        // layer: 7.9 ms on 2 threads vs 11.1 on one; the weights are 19 MB).
        let shared = m_split(batch * n_tiles) > 1 && !self.is_pointwise() && self.groups == 1;
        if shared {
            (tile, n_tiles) = (n, 1);
        }
        let m_splits = m_split(batch * n_tiles);
        let m_block = mg.div_ceil(m_splits).div_ceil(MR) * MR;
        let m_splits = mg.div_ceil(m_block);
        let k = self.k();
        // The tasks, reading image b's im2col from `cols[b·k·n..]` when it is shared.
        let run = |cols: Option<&[f32]>| {
            let tasks = batch * n_tiles * m_splits;
            let run_task = |t: usize| {
                let mb = t % m_splits;
                let tile_i = (t / m_splits) % n_tiles;
                let b = t / (m_splits * n_tiles);
                let p0 = tile_i * tile;
                let np = tile.min(n - p0);
                let m0 = mb * m_block;
                let mlen = m_block.min(mg - m0);
                let col = cols.map(|c| &c[b * k * n..(b + 1) * k * n]);
                // SAFETY: tasks write disjoint (image, channel block, pixel tile) regions of y, which together
                // cover it (t ranges over every image × tile × block).
                unsafe { self.task(x, y, b, (p0, np), (m0, mlen), col, post) };
            };
            if tasks == 1 {
                run_task(0);
            } else {
                (0..tasks).into_par_iter().for_each(run_task);
            }
        };
        if !shared {
            return run(None);
        }
        SHARED_COL.with(|cell| {
            // This thread's buffer, reused across calls (zero-filled only when it grows); held across the
            // parallel sections, as the Winograd buffers are: a call nested in them gets a fresh one.
            let mut own = Vec::new();
            let mut held = cell.try_borrow_mut();
            let cols = match held.as_deref_mut() {
                Ok(v) => v,
                Err(_) => &mut own,
            };
            grow(cols, batch * k * n);
            let cols = &mut cols[..batch * k * n];
            // Each task fills one input channel's rows of one image (im2col writes every value).
            cols.par_chunks_mut(self.size * self.size * n)
                .enumerate()
                .for_each(|(i, rows)| {
                    let (b, ci) = (i / self.input.c, i % self.input.c);
                    self.im2col(x, b, 0, rows, 0, n, ci..ci + 1);
                });
            run(Some(cols));
        })
    }

    /// One task: for every group, the output channels `m0..m0+mlen` of that group over pixels `p0..p0+np` of
    /// image `b`. `shared`: the im2col of those pixels already made (one group), else the task makes it.
    #[allow(clippy::too_many_arguments)]
    unsafe fn task(
        &self,
        x: &Planes,
        y: SendPtr,
        b: usize,
        (p0, np): (usize, usize),
        (m0, mlen): (usize, usize),
        shared: Option<&[f32]>,
        post: Option<&Post>,
    ) {
        let (c, h, w) = (self.input.c, self.input.h, self.input.w);
        let n = self.output.h * self.output.w;
        let cg = c / self.groups;
        let mg = self.filters / self.groups;
        let k = self.k();
        COL.with(|col| {
            let mut col = col.borrow_mut();
            for g in 0..self.groups {
                let f0 = g * mg + m0;
                let dst = y.0.add((b * self.filters + f0) * n + p0);
                // Bias/normalisation and activation of output channel g·mg + row, applied by the GEMM to each
                // piece of a row as soon as it is final (still in L1).
                let epi = |row: usize, col: usize, rows: &mut [&mut [f32]]| {
                    let first = g * mg + row;
                    activation::epilogue_rows(
                        rows,
                        &self.affine[first..first + rows.len()],
                        self.activation,
                    );
                    if let Some(post) = post {
                        for (i, v) in rows.iter_mut().enumerate() {
                            let at = (b * self.filters + first + i) * n + p0 + col;
                            post.apply(first + i, at, v);
                        }
                    }
                };
                let wg = &self.weight[g];
                // Right operand (k × np): the input itself for 1×1 layers (rows h·w apart, or one row per
                // plane of a concatenation read in place), else the im2col tile.
                let rows: Vec<*const f32>;
                let rhs = if let Some(cols) = shared {
                    BRows::Strided(cols.as_ptr(), np)
                } else if !self.is_pointwise() {
                    if col.len() < k * np {
                        col.resize(k * np, 0.0);
                    }
                    self.im2col(x, b, g, &mut col[..k * np], p0, np, 0..cg);
                    BRows::Strided(col.as_ptr(), np)
                } else if let Some((data, image)) = x.single() {
                    BRows::Strided(data.as_ptr().add(b * image + g * cg * h * w + p0), h * w)
                } else {
                    rows = (0..cg)
                        .map(|ci| x.plane(b, g * cg + ci).as_ptr().add(p0))
                        .collect();
                    BRows::Each(&rows)
                };
                gemm::gemm_epilogue(wg, m0, mlen, np, rhs, dst, n, &epi);
            }
        });
    }

    /// `im2col_cpu_ext` of group `g` of image `b`, restricted to output pixels `p0..p0+np` and the group's
    /// input channels `chans`: `col[((ci - chans.start)·size + ky)·size + kx][p - p0]` is the input pixel read by
    /// that weight for output pixel p, 0 outside the image.
    #[allow(clippy::too_many_arguments)]
    fn im2col(
        &self,
        x: &Planes,
        b: usize,
        g: usize,
        col: &mut [f32],
        p0: usize,
        np: usize,
        chans: Range<usize>,
    ) {
        // SAFETY: `multiversion!` runs the AVX-512/AVX2 copies only on a CPU that has them.
        unsafe { im2col_isa(self, x, b, g, col, p0, np, chans) }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn im2col_generic(
        &self,
        x: &Planes,
        b: usize,
        g: usize,
        col: &mut [f32],
        p0: usize,
        np: usize,
        chans: Range<usize>,
    ) {
        let (h, w) = (self.input.h as isize, self.input.w as isize);
        let ow = self.output.w;
        let (s, d, pad, size) = (
            self.stride as isize,
            self.dilation as isize,
            self.pad as isize,
            self.size,
        );
        let cg = self.input.c / self.groups;
        for ci in chans.clone() {
            let plane = x.plane(b, g * cg + ci);
            for ky in 0..size {
                for kx in 0..size {
                    let r = ((ci - chans.start) * size + ky) * size + kx;
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

crate::cpu::multiversion! {
    unsafe fn im2col_isa(p: &PackedConv, x: &Planes, b: usize, g: usize, col: &mut [f32], p0: usize, np: usize, chans: Range<usize>) = im2col_any
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn im2col_any(
    p: &PackedConv,
    x: &Planes,
    b: usize,
    g: usize,
    col: &mut [f32],
    p0: usize,
    np: usize,
    chans: Range<usize>,
) {
    p.im2col_generic(x, b, g, col, p0, np, chans)
}
