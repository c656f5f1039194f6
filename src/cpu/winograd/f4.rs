//! Winograd F(4×4, 3×3) (Lavin & Gray 2015, interpolation points 0, ±1, ±2, ∞; the form ncnn and NNPACK use):
//! per 4×4 output tile and 6×6 input patch `d`, `V = Bᵀ d B`, `U = G g Gᵀ` (at load, in f64), 36 GEMMs
//! `M_ξ = U_ξ · V_ξ` over the channels, then `Y = Aᵀ M A`: 36 multiplies per 16 outputs per channel, against
//! 64 for F(2×2) and 144 for the direct sum (Darknet's im2col + gemm).
//!
//! ```text
//! Bᵀ = [4  0 -5  0 1 0]    G = [ 1/4     0     0 ]    Aᵀ = [1 1  1 1  1 0]
//!      [0 -4 -4  1 1 0]        [-1/6  -1/6  -1/6 ]         [0 1 -1 2 -2 0]
//!      [0  4 -4 -1 1 0]        [-1/6   1/6  -1/6 ]         [0 1  1 4  4 0]
//!      [0 -2 -1  2 1 0]        [1/24  1/12   1/6 ]         [0 1 -1 8 -8 1]
//!      [0  2 -1 -2 1 0]        [1/24 -1/12   1/6 ]
//!      [0  4  0 -5 0 1]        [ 0      0     1  ]
//! ```
//!
//! The larger transform constants round more than F(2×2)'s: measured against the direct sum the error is a
//! few times larger (docs/cpu-inference.md gives the worst layer error per tile size on every reference), still
//! well inside the parity tolerance.
//!
//! The row forms ([`input_rows`], [`output_rows`]) perform exactly the additions and multiplications of the
//! per-tile reference forms ([`input_tile`], [`output_tile`]) in the same order, so they are bit-identical to
//! them (unit test), arranged as contiguous loops over the tiles of a row that LLVM vectorises.

/// `U = G g Gᵀ` for every (filter, channel), stored as 36 row-major `[filters, channels]` matrices.
pub fn transform_weights(w: &[f32], filters: usize, channels: usize) -> Vec<f32> {
    let mut u = vec![0f32; 36 * filters * channels];
    for f in 0..filters {
        for c in 0..channels {
            let g = &w[(f * channels + c) * 9..(f * channels + c + 1) * 9];
            let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
            // Gg (6×3), then (Gg)Gᵀ (6×6).
            let mut gg = [[0f64; 3]; 6];
            for j in 0..3 {
                let col = g_times([g[j], g[3 + j], g[6 + j]]);
                for (i, v) in col.iter().enumerate() {
                    gg[i][j] = *v;
                }
            }
            for (i, r) in gg.iter().enumerate() {
                for (j, v) in g_times(*r).iter().enumerate() {
                    u[((i * 6 + j) * filters + f) * channels + c] = *v as f32;
                }
            }
        }
    }
    u
}

/// `G · (a, b, c)ᵀ` in f64.
fn g_times([a, b, c]: [f64; 3]) -> [f64; 6] {
    [
        a / 4.0,
        -(a + b + c) / 6.0,
        -(a - b + c) / 6.0,
        a / 24.0 + b / 12.0 + c / 6.0,
        a / 24.0 - b / 12.0 + c / 6.0,
        c,
    ]
}

/// `Bᵀ · (d0..d5)`: the six input-transform combinations, shared by the row and column passes (and by the row
/// and tile forms, which therefore round identically).
#[inline(always)]
fn bt(d0: f32, d1: f32, d2: f32, d3: f32, d4: f32, d5: f32) -> [f32; 6] {
    [
        (4.0 * d0 - 5.0 * d2) + d4,
        (d3 + d4) - 4.0 * (d1 + d2),
        (d4 - d3) + 4.0 * (d1 - d2),
        (d4 - d2) - 2.0 * (d1 - d3),
        (d4 - d2) + 2.0 * (d1 - d3),
        (4.0 * d1 - 5.0 * d3) + d5,
    ]
}

/// `Aᵀ · (m0..m5)`: the four output-transform combinations.
#[inline(always)]
fn at(m0: f32, m1: f32, m2: f32, m3: f32, m4: f32, m5: f32) -> [f32; 4] {
    let (a, b, c, d) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [(m0 + a) + c, b + 2.0 * d, a + 4.0 * c, (b + 8.0 * d) + m5]
}

/// `V = Bᵀ d B` of the 6×6 patch whose top-left input pixel is (`iy`, `ix`) (zeros outside the plane), written to
/// `v[ξ·stride]` for ξ = 0..36. The per-tile reference form of [`input_rows`].
#[cfg(test)]
#[allow(clippy::needless_range_loop)] // t is filled column by column: a transposition, clearer with indices
fn input_tile(
    plane: &[f32],
    h: usize,
    w: usize,
    iy: isize,
    ix: isize,
    v: &mut [f32],
    stride: usize,
) {
    let px = |y: isize, x: isize| {
        if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
            plane[y as usize * w + x as usize]
        } else {
            0.0
        }
    };
    // t = Bᵀ d: column by column.
    let mut t = [[0f32; 6]; 6];
    for x in 0..6 {
        let d: Vec<f32> = (0..6).map(|r| px(iy + r, ix + x as isize)).collect();
        for (i, v) in bt(d[0], d[1], d[2], d[3], d[4], d[5]).iter().enumerate() {
            t[i][x] = *v;
        }
    }
    for (i, r) in t.iter().enumerate() {
        for (j, x) in bt(r[0], r[1], r[2], r[3], r[4], r[5]).iter().enumerate() {
            v[(i * 6 + j) * stride] = *x;
        }
    }
}

/// `Y = Aᵀ M A` of one tile's 36 GEMM outputs `m[ξ·stride]`: the 4×4 outputs, row-major. The per-tile reference
/// form of [`output_rows`].
#[cfg(test)]
#[allow(clippy::needless_range_loop)] // s is filled column by column: a transposition, clearer with indices
fn output_tile(m: &[f32], stride: usize) -> [[f32; 4]; 4] {
    let g = |i: usize, j: usize| m[(i * 6 + j) * stride];
    let mut s = [[0f32; 6]; 4];
    for j in 0..6 {
        let col = at(g(0, j), g(1, j), g(2, j), g(3, j), g(4, j), g(5, j));
        for r in 0..4 {
            s[r][j] = col[r];
        }
    }
    s.map(|r| at(r[0], r[1], r[2], r[3], r[4], r[5]))
}

crate::cpu::multiversion! {
    /// `V` of the `rows·tw` tiles of tile rows `ty0..ty0 + rows` of one channel plane (`h`×`w`, padding `pad`),
    /// written to `v[ξ·vstride + i·tw + tx]` (tile tx of row ty0 + i): the six `Bᵀ` row combinations over whole
    /// padded input rows, a split of them into their four column phases (the tiles advance by four pixels), then
    /// the six `B` column combinations — the last two steps over all the tiles at once, so that they fill whole
    /// vectors on small maps (26×26: 7 tiles per row).
    ///
    /// # Safety
    /// `v.add(ξ·vstride + t)` must be valid for writes for ξ < 36, t < rows·tw, and no other thread may access
    /// them.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn input_rows(
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
    ) = input_rows_generic
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn input_rows_generic(
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
    // The Bᵀ rows of tile row i are padded input columns 0..4·tw + 2 (tile tx reads 4tx..4tx + 5); they are kept
    // at i·4·tw, so that column phase j of tile t = i·tw + tx is at 4t + j for every row: the last two columns
    // spill into the next row's first two and are saved (`spill`) before it overwrites them.
    let lw = 4 * tw;
    assert!(
        pad + w <= lw + 2,
        "Winograd F4 rows: {tw} tiles cannot cover width {w} with padding {pad}"
    );
    let n = rows * tw;
    let tl = rows * lw + 2;
    // Scratch: a zero row (w), the six Bᵀ rows (6·tl), the spilled columns (12·rows), the six phase arrays of
    // each of the six Bᵀ rows (36·n).
    let need = w + 6 * tl + 12 * rows + 36 * n;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (zero, rest) = scratch[..need].split_at_mut(w);
    zero.fill(0.0);
    let (t, rest) = rest.split_at_mut(6 * tl);
    let (spill, e) = rest.split_at_mut(12 * rows);
    let row = |i: usize| -> &[f32] {
        let iy = i as isize - pad as isize;
        if iy >= 0 && (iy as usize) < h {
            &plane[iy as usize * w..iy as usize * w + w]
        } else {
            &zero[..]
        }
    };
    {
        let [t0, t1, t2, t3, t4, t5] = super::split_mut::<6>(t, tl);
        for i in 0..rows {
            let (o, y0) = (i * lw, 4 * (ty0 + i));
            for tq in [&mut *t0, &mut *t1, &mut *t2, &mut *t3, &mut *t4, &mut *t5] {
                tq[o..o + pad].fill(0.0);
                tq[o + pad + w..o + lw + 2].fill(0.0);
            }
            let (a, b) = (o + pad, o + pad + w);
            bt_each(
                [
                    row(y0),
                    row(y0 + 1),
                    row(y0 + 2),
                    row(y0 + 3),
                    row(y0 + 4),
                    row(y0 + 5),
                ],
                [
                    &mut t0[a..b],
                    &mut t1[a..b],
                    &mut t2[a..b],
                    &mut t3[a..b],
                    &mut t4[a..b],
                    &mut t5[a..b],
                ],
            );
            for (q, tq) in [&*t0, &*t1, &*t2, &*t3, &*t4, &*t5].into_iter().enumerate() {
                spill[(q * rows + i) * 2..(q * rows + i) * 2 + 2]
                    .copy_from_slice(&tq[o + lw..o + lw + 2]);
            }
        }
    }
    // Every row's phases first, then the column combinations (vector loads of values just stored by scalar
    // stores stall).
    for (q, eq) in e.chunks_exact_mut(6 * n).enumerate() {
        let [e0, e1, e2, e3, e4, e5] = super::split_mut::<6>(eq, n);
        super::deinterleave4(
            &t[q * tl..q * tl + 4 * n],
            [&mut *e0, &mut *e1, &mut *e2, &mut *e3],
        );
        // Columns 4 and 5 of tile t are phases 0 and 1 of tile t + 1, but for a row's last tile the spilled ones.
        let spilled = &spill[q * rows * 2..(q + 1) * rows * 2];
        super::next_tile_columns([e0, e1], spilled, tw, [e4, e5]);
    }
    for (q, eq) in e.chunks_exact(6 * n).enumerate() {
        let a: [&[f32]; 6] = std::array::from_fn(|j| &eq[j * n..(j + 1) * n]);
        // SAFETY (caller's contract): the six rows ξ = 6q..6q+6 of V, n floats each, are ours alone.
        let vr = |j: usize| std::slice::from_raw_parts_mut(v.add((q * 6 + j) * vstride), n);
        bt_each(a, [vr(0), vr(1), vr(2), vr(3), vr(4), vr(5)]);
    }
}

/// `o_r[t] = (Bᵀ (a_0[t] … a_5[t]))_r` for every t: the row combinations over whole input rows, and the
/// column combinations over the tiles (tile t's six columns in `a_0[t] … a_5[t]`).
#[inline(always)]
fn bt_each(a: [&[f32]; 6], v: [&mut [f32]; 6]) {
    let [v0, v1, v2, v3, v4, v5] = v;
    let n = v0.len();
    let [a0, a1, a2, a3, b0, b1] = a.map(|x| &x[..n]);
    let (v1, v2, v3, v4, v5) = (
        &mut v1[..n],
        &mut v2[..n],
        &mut v3[..n],
        &mut v4[..n],
        &mut v5[..n],
    );
    for t in 0..n {
        let r = bt(a0[t], a1[t], a2[t], a3[t], b0[t], b1[t]);
        v0[t] = r[0];
        v1[t] = r[1];
        v2[t] = r[2];
        v3[t] = r[3];
        v4[t] = r[4];
        v5[t] = r[5];
    }
}

crate::cpu::multiversion! {
    /// `Y = Aᵀ M A` of `rows` consecutive tile rows of one image and filter (`tw` tiles each), whose GEMM outputs
    /// are `m[ξ·mstride + t]` for tile t = row·`tw` + tx, written to the `oh` output rows starting at `out` (row
    /// stride `ow`; `4·(rows - 1) < oh ≤ 4·rows`, fewer than `4·rows` past the bottom edge). Both stages run over
    /// all `rows·tw` tiles at once, so that they fill whole vectors on small maps (a 26×26 map has 7 tiles per
    /// row), then each output row interleaves its tiles' four pixels. `scratch` holds the stages' 40 rows of
    /// `rows·tw`.
    ///
    /// # Safety
    /// `m.add(ξ·mstride + t)` must be valid for reads for ξ < 36, t < rows·tw; `out` valid for writes of
    /// `oh·ow` floats (they may be uninitialised) and accessed by no other thread; `4·(tw - 1) < ow ≤ 4·tw`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn output_rows(
        m: *const f32,
        mstride: usize,
        tw: usize,
        rows: usize,
        ow: usize,
        oh: usize,
        out: *mut f32,
        scratch: &mut Vec<f32>,
    ) = output_rows_generic
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_rows_generic(
    m: *const f32,
    mstride: usize,
    tw: usize,
    rows: usize,
    ow: usize,
    oh: usize,
    out: *mut f32,
    scratch: &mut Vec<f32>,
) {
    let n = rows * tw;
    if scratch.len() < 40 * n {
        scratch.resize(40 * n, 0.0);
    }
    let (s, y) = scratch[..40 * n].split_at_mut(24 * n);
    // First stage: s[(R·6 + j)·n + t] = (Aᵀ M_{·j})_R for the six columns j of every tile.
    for j in 0..6 {
        // SAFETY (caller's contract): the 36 rows of M hold n values each.
        let g: [&[f32]; 6] =
            std::array::from_fn(|i| std::slice::from_raw_parts(m.add((i * 6 + j) * mstride), n));
        let [s0, s1, s2, s3] = super::split_mut::<4>(s, 6 * n);
        at_rows(
            g,
            [
                &mut s0[j * n..(j + 1) * n],
                &mut s1[j * n..(j + 1) * n],
                &mut s2[j * n..(j + 1) * n],
                &mut s3[j * n..(j + 1) * n],
            ],
        );
    }
    // Second stage: y[(R·4 + q)·n + t] = (Aᵀ s_R)_q, the pixel (R, q) of every tile.
    for r in 0..4 {
        let sr = &s[r * 6 * n..(r + 1) * 6 * n];
        let g: [&[f32]; 6] = std::array::from_fn(|j| &sr[j * n..(j + 1) * n]);
        at_rows(
            g,
            super::split_mut::<4>(&mut y[r * 4 * n..(r + 1) * 4 * n], n),
        );
    }
    for oy in 0..oh {
        let (i, r) = (oy / 4, oy % 4);
        let q: [&[f32]; 4] =
            std::array::from_fn(|q| &y[(r * 4 + q) * n + i * tw..(r * 4 + q) * n + (i + 1) * tw]);
        // SAFETY (caller's contract): output row oy holds ow floats.
        super::interleave4(std::slice::from_raw_parts_mut(out.add(oy * ow), ow), q);
    }
}

/// `Aᵀ · (g_0[t] … g_5[t])` for every t, its four values to `o_0[t] … o_3[t]`.
#[inline(always)]
fn at_rows(g: [&[f32]; 6], o: [&mut [f32]; 4]) {
    let [o0, o1, o2, o3] = o;
    let n = o0.len();
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    let (g0, g1, g2) = (&g[0][..n], &g[1][..n], &g[2][..n]);
    let (g3, g4, g5) = (&g[3][..n], &g[4][..n], &g[5][..n]);
    for t in 0..n {
        let y = at(g0[t], g1[t], g2[t], g3[t], g4[t], g5[t]);
        o0[t] = y[0];
        o1[t] = y[1];
        o2[t] = y[2];
        o3[t] = y[3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_data::rand_vec;

    /// One tile through U, V, the 36 products and Y equals the direct 3×3 sum (in f64) to f32 rounding.
    #[test]
    fn tile_equals_direct_convolution() {
        let d = rand_vec(36, 1);
        let g = rand_vec(9, 2);
        let u = transform_weights(&g, 1, 1);
        let mut v = vec![0f32; 36];
        input_tile(&d, 6, 6, 0, 0, &mut v, 1);
        let prod: Vec<f32> = u.iter().zip(&v).map(|(a, b)| a * b).collect();
        let y = output_tile(&prod, 1);
        for (oy, row) in y.iter().enumerate() {
            for (ox, got) in row.iter().enumerate() {
                let mut want = 0f64;
                for ky in 0..3 {
                    for kx in 0..3 {
                        want += d[(oy + ky) * 6 + ox + kx] as f64 * g[ky * 3 + kx] as f64;
                    }
                }
                assert!(
                    (*got as f64 - want).abs() < 1e-5,
                    "({oy},{ox}): {got} vs {want}"
                );
            }
        }
    }

    /// The row forms are bit-identical to the per-tile reference forms, borders and odd sizes included.
    #[test]
    fn row_transforms_equal_tile_transforms() {
        for &(h, w, pad) in &[
            (7, 7, 1),
            (8, 9, 1),
            (13, 13, 1),
            (5, 12, 2),
            (6, 4, 0),
            (26, 26, 1),
            (11, 30, 1),
        ] {
            let plane = rand_vec(h * w, (h * 31 + w) as u64);
            let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
            let (th, tw) = (oh.div_ceil(4), ow.div_ceil(4));
            let mut scratch = Vec::new();
            for ty in 0..th {
                // Input transform of tile rows ty..th at once.
                let rows = th - ty;
                let n = rows * tw;
                let mut got = vec![f32::NAN; 36 * n];
                let mut want = vec![0f32; 36 * n];
                // SAFETY: got holds 36·n floats (row stride n), as input_rows writes.
                unsafe {
                    input_rows(
                        &plane,
                        h,
                        w,
                        pad,
                        ty,
                        rows,
                        tw,
                        got.as_mut_ptr(),
                        n,
                        &mut scratch,
                    )
                };
                for t in 0..n {
                    let (i, tx) = (t / tw, t % tw);
                    let (iy, ix) = (
                        (4 * (ty + i)) as isize - pad as isize,
                        (4 * tx) as isize - pad as isize,
                    );
                    input_tile(&plane, h, w, iy, ix, &mut want[t..], n);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "input {h}x{w} pad {pad} rows {ty}..{th}"
                );
                // Output transform of arbitrary M over tile rows ty..th, every number of output rows in the
                // last of them (the bottom edge).
                let rows = th - ty;
                let n = rows * tw;
                let m = rand_vec(36 * n, ty as u64 + 7);
                for oh in 4 * (rows - 1) + 1..=4 * rows {
                    let mut o = vec![f32::NAN; oh * ow];
                    // SAFETY: m holds 36·n values; o holds oh rows of ow ≤ 4·tw floats.
                    unsafe {
                        output_rows(
                            m.as_ptr(),
                            n,
                            tw,
                            rows,
                            ow,
                            oh,
                            o.as_mut_ptr(),
                            &mut scratch,
                        )
                    };
                    for t in 0..n {
                        let (i, tx) = (t / tw, t % tw);
                        let y = output_tile(&m[t..], n);
                        for (r, yr) in y.iter().enumerate() {
                            for (q, want) in yr.iter().enumerate() {
                                let (oy, ox) = (4 * i + r, 4 * tx + q);
                                if oy < oh && ox < ow {
                                    assert_eq!(
                                        o[oy * ow + ox].to_bits(),
                                        want.to_bits(),
                                        "({oy}, {ox})"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
