//! Winograd F(2×2, 3×3) (Lavin & Gray 2015; see [`super`]). Per 2×2 output tile, 4×4 input patch `d`:
//! `V = Bᵀ d B`, `U = G g Gᵀ` (per filter/channel, at load, in f64), then 16 GEMMs `M_ξ = U_ξ · V_ξ` over the
//! channels and `Y = Aᵀ M A`; 16 multiplies per 4 outputs per channel instead of 36.
//!
//! Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1], Aᵀ = [1 1 1 0; 0 1 -1 -1].
//! Rounding differs from the direct sum by a few ulp of the partial sums (checked against candle's conv2d in
//! the tests of [`super::super::conv`], and against the Darknet dumps by `candle-darknet compare`).

/// `U = G g Gᵀ` for every (filter, channel), stored as 16 row-major `[filters, channels]` matrices.
pub fn transform_weights(w: &[f32], filters: usize, channels: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * filters * channels];
    for f in 0..filters {
        for c in 0..channels {
            let g: Vec<f64> = w[(f * channels + c) * 9..(f * channels + c + 1) * 9]
                .iter()
                .map(|&v| v as f64)
                .collect();
            // Gg (4×3), then (Gg)Gᵀ (4×4).
            let mut gg = [[0f64; 3]; 4];
            for j in 0..3 {
                let (a, b, cc) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = a;
                gg[1][j] = (a + b + cc) * 0.5;
                gg[2][j] = (a - b + cc) * 0.5;
                gg[3][j] = cc;
            }
            for (i, r) in gg.iter().enumerate() {
                let (a, b, cc) = (r[0], r[1], r[2]);
                let row = [a, (a + b + cc) * 0.5, (a - b + cc) * 0.5, cc];
                for (j, v) in row.iter().enumerate() {
                    u[((i * 4 + j) * filters + f) * channels + c] = *v as f32;
                }
            }
        }
    }
    u
}

/// `V = Bᵀ d B` of the 4×4 patch whose top-left input pixel is (`iy`, `ix`) (may be outside: zeros), written to
/// `v[ξ·stride]` for ξ = 0..16.
///
/// # Safety
/// `v.add(ξ·stride)` must be valid for writes for ξ = 0..16 (other threads write other elements of the buffer).
#[inline(always)]
pub unsafe fn input_tile(
    plane: &[f32],
    h: usize,
    w: usize,
    iy: isize,
    ix: isize,
    v: *mut f32,
    stride: usize,
) {
    let mut d = [[0f32; 4]; 4];
    if iy >= 0 && ix >= 0 && iy + 4 <= h as isize && ix + 4 <= w as isize {
        let (iy, ix) = (iy as usize, ix as usize);
        for (r, dr) in d.iter_mut().enumerate() {
            dr.copy_from_slice(&plane[(iy + r) * w + ix..(iy + r) * w + ix + 4]);
        }
    } else {
        for (r, dr) in d.iter_mut().enumerate() {
            let y = iy + r as isize;
            if y < 0 || y >= h as isize {
                continue;
            }
            for (cidx, dv) in dr.iter_mut().enumerate() {
                let x = ix + cidx as isize;
                if x >= 0 && x < w as isize {
                    *dv = plane[y as usize * w + x as usize];
                }
            }
        }
    }
    // t = Bᵀ d (row combinations), then V = t B (column combinations).
    let t = [
        sub4(d[0], d[2]),
        add4(d[1], d[2]),
        sub4(d[2], d[1]),
        sub4(d[1], d[3]),
    ];
    for (i, r) in t.iter().enumerate() {
        let row = [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]];
        for (j, x) in row.iter().enumerate() {
            *v.add((i * 4 + j) * stride) = *x;
        }
    }
}

/// `Y = Aᵀ M A` of one tile's 16 GEMM outputs `m[ξ·stride]`: the 2×2 outputs, row-major.
#[inline(always)]
pub fn output_tile(m: &[f32], stride: usize) -> [f32; 4] {
    let g = |i: usize| m[i * stride];
    let row = |r: usize| [g(r * 4), g(r * 4 + 1), g(r * 4 + 2), g(r * 4 + 3)];
    let (m0, m1, m2, m3) = (row(0), row(1), row(2), row(3));
    let s0 = add4(add4(m0, m1), m2);
    let s1 = sub4(sub4(m1, m2), m3);
    [
        s0[0] + s0[1] + s0[2],
        s0[1] - s0[2] - s0[3],
        s1[0] + s1[1] + s1[2],
        s1[1] - s1[2] - s1[3],
    ]
}

#[inline(always)]
fn add4(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

#[inline(always)]
fn sub4(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]]
}

crate::cpu::multiversion! {
    /// [`input_tile`] for tile rows `ty0..ty0 + rows` of one channel plane (`h`×`w`, padding `pad`), `tw` tiles
    /// each, written to `v[ξ·vstride + i·tw + tx]` (tile tx of row ty0 + i). The same additions in the same
    /// order as [`input_tile`] (so bit-identical results), arranged as contiguous loops that vectorise: the four
    /// `Bᵀ` row combinations over whole input rows, an even/odd split of them (the tiles advance by two pixels),
    /// then the four `B` column combinations — the last two over all the tiles at once, so that they fill whole
    /// vectors on small maps (13×13: 7 tiles per row).
    ///
    /// # Safety
    /// `v.add(ξ·vstride + t)` must be valid for writes for ξ < 16, t < rows·tw, and accessed by no other thread;
    /// `2·tw + 2 ≥ w + 2·pad` (true for a 3×3 stride-1 layer, whose output width is `w + 2·pad - 2`).
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
    // The Bᵀ rows of tile row i are padded input columns 0..2·tw + 2 (tile tx reads 2tx..2tx + 3), kept at
    // i·2·tw so that the even and odd columns of tile t = i·tw + tx are at 2t and 2t + 1 for every row: the last
    // two columns spill into the next row's first two and are saved (`spill`) before it overwrites them.
    let lw = 2 * tw;
    assert!(
        pad + w <= lw + 2,
        "Winograd rows: {tw} tiles cannot cover width {w} with padding {pad}"
    );
    let n = rows * tw;
    let tl = rows * lw + 2;
    // Scratch: a zero row (w), the four Bᵀ rows (4·tl), the spilled columns (8·rows), and per Bᵀ row its even,
    // odd, next even and next odd columns (16·n).
    let need = w + 4 * tl + 8 * rows + 16 * n;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (zero, rest) = scratch[..need].split_at_mut(w);
    zero.fill(0.0);
    let (t, rest) = rest.split_at_mut(4 * tl);
    let (spill, e) = rest.split_at_mut(8 * rows);
    let row = |y: usize| -> &[f32] {
        let iy = y as isize - pad as isize;
        if iy >= 0 && (iy as usize) < h {
            &plane[iy as usize * w..iy as usize * w + w]
        } else {
            &zero[..]
        }
    };
    {
        let [t0, t1, t2, t3] = super::split_mut::<4>(t, tl);
        for i in 0..rows {
            let (o, y0) = (i * lw, 2 * (ty0 + i));
            for tq in [&mut *t0, &mut *t1, &mut *t2, &mut *t3] {
                tq[o..o + pad].fill(0.0);
                tq[o + pad + w..o + lw + 2].fill(0.0);
            }
            // t = Bᵀ d over the row (the same additions as `input_tile`'s row combinations).
            let (a, b) = (o + pad, o + pad + w);
            let (q0, q1, q2, q3) = (&mut t0[a..b], &mut t1[a..b], &mut t2[a..b], &mut t3[a..b]);
            let (d0, d1, d2, d3) = (row(y0), row(y0 + 1), row(y0 + 2), row(y0 + 3));
            for x in 0..w {
                let (a, b, c, d) = (d0[x], d1[x], d2[x], d3[x]);
                q0[x] = a - c;
                q1[x] = b + c;
                q2[x] = c - b;
                q3[x] = b - d;
            }
            for (q, tq) in [&*t0, &*t1, &*t2, &*t3].into_iter().enumerate() {
                spill[(q * rows + i) * 2..(q * rows + i) * 2 + 2]
                    .copy_from_slice(&tq[o + lw..o + lw + 2]);
            }
        }
    }
    // Every row's even/odd split first, then the column combinations.
    for (q, eq) in e.chunks_exact_mut(4 * n).enumerate() {
        let [ev, od, ev1, od1] = super::split_mut::<4>(eq, n);
        super::deinterleave2(&t[q * tl..q * tl + 2 * n], [&mut *ev, &mut *od]);
        // Columns 2 and 3 of tile t are the even and odd ones of tile t + 1, but for a row's last tile the
        // spilled ones.
        let spilled = &spill[q * rows * 2..(q + 1) * rows * 2];
        super::next_tile_columns([ev, od], spilled, tw, [ev1, od1]);
    }
    for (q, eq) in e.chunks_exact(4 * n).enumerate() {
        let (ea, oa, eb, ob) = (
            &eq[..n],
            &eq[n..2 * n],
            &eq[2 * n..3 * n],
            &eq[3 * n..4 * n],
        );
        // SAFETY (caller's contract): the four rows ξ = 4q..4q+4 of V, n floats each, are ours alone.
        let vr = |j: usize| std::slice::from_raw_parts_mut(v.add((q * 4 + j) * vstride), n);
        let (v0, v1, v2, v3) = (vr(0), vr(1), vr(2), vr(3));
        // V = t B: tile t's columns are ea, oa, eb, ob.
        for t in 0..n {
            v0[t] = ea[t] - eb[t];
            v1[t] = oa[t] + eb[t];
            v2[t] = eb[t] - oa[t];
            v3[t] = oa[t] - ob[t];
        }
    }
}

crate::cpu::multiversion! {
    /// [`output_tile`] for `rows` consecutive tile rows of one image and filter (`tw` tiles each), whose GEMM
    /// outputs are `m[ξ·mstride + t]` for tile t = row·`tw` + tx, written to the `oh` output rows starting at
    /// `out` (row stride `ow`; `2·(rows - 1) < oh ≤ 2·rows`, one fewer past the bottom edge). The same additions
    /// in the same order as [`output_tile`], over all `rows·tw` tiles at once so that they fill whole vectors on
    /// small maps (a 13×13 map has 7 tiles per row: one tile row at a time, the loop ran scalar), then each
    /// output row interleaves its tiles' two pixels. `scratch` holds the four pixels of every tile.
    ///
    /// # Safety
    /// `m.add(ξ·mstride + t)` must be valid for reads for ξ < 16, t < rows·tw; `out` valid for writes of `oh·ow`
    /// floats (they may be uninitialised) and accessed by no other thread; `2·(tw - 1) < ow ≤ 2·tw`.
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
    if scratch.len() < 4 * n {
        scratch.resize(4 * n, 0.0);
    }
    // SAFETY (caller's contract): the 16 rows of M hold n values each.
    let g: [&[f32]; 16] =
        std::array::from_fn(|i| std::slice::from_raw_parts(m.add(i * mstride), n));
    let [y0, y1, y2, y3] = super::split_mut::<4>(&mut scratch[..4 * n], n);
    // Output row 2·ty from M rows 0-2 (sums), row 2·ty + 1 from rows 1-3 (differences).
    pixels::<false>(
        [g[0], g[1], g[2], g[3]],
        [g[4], g[5], g[6], g[7]],
        [g[8], g[9], g[10], g[11]],
        y0,
        y1,
    );
    pixels::<true>(
        [g[4], g[5], g[6], g[7]],
        [g[8], g[9], g[10], g[11]],
        [g[12], g[13], g[14], g[15]],
        y2,
        y3,
    );
    let y: [&[f32]; 4] = [y0, y1, y2, y3];
    for oy in 0..oh {
        let (i, r) = (oy / 2, oy % 2);
        let tiles = i * tw..(i + 1) * tw;
        // SAFETY (caller's contract): output row oy holds ow floats.
        let row = std::slice::from_raw_parts_mut(out.add(oy * ow), ow);
        super::interleave2(row, [&y[2 * r][tiles.clone()], &y[2 * r + 1][tiles]]);
    }
}

/// Column sum of three M rows: `(a + b) + c`, or `(a - b) - c` for the second output row.
#[inline(always)]
fn col<const SUB: bool>(a: f32, b: f32, c: f32) -> f32 {
    if SUB {
        (a - b) - c
    } else {
        (a + b) + c
    }
}

/// One output row's two pixels of every tile from M rows `a`, `b`, `c` (four columns j each): `s_j = col(a_j,
/// b_j, c_j)`, then `p0 = (s0 + s1) + s2` and `p1 = (s1 - s2) - s3`.
#[inline(always)]
fn pixels<const SUB: bool>(
    a: [&[f32]; 4],
    b: [&[f32]; 4],
    c: [&[f32]; 4],
    p0: &mut [f32],
    p1: &mut [f32],
) {
    let n = p0.len();
    let p1 = &mut p1[..n];
    let [a0, a1, a2, a3] = a.map(|v| &v[..n]);
    let [b0, b1, b2, b3] = b.map(|v| &v[..n]);
    let [c0, c1, c2, c3] = c.map(|v| &v[..n]);
    for t in 0..n {
        let s0 = col::<SUB>(a0[t], b0[t], c0[t]);
        let s1 = col::<SUB>(a1[t], b1[t], c1[t]);
        let s2 = col::<SUB>(a2[t], b2[t], c2[t]);
        let s3 = col::<SUB>(a3[t], b3[t], c3[t]);
        p0[t] = (s0 + s1) + s2;
        p1[t] = (s1 - s2) - s3;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_data::rand_vec;

    /// The row forms are bit-identical to the per-tile reference forms, borders and odd sizes included.
    #[test]
    fn row_transforms_equal_tile_transforms() {
        for &(h, w, pad) in &[
            (7, 7, 1),
            (8, 9, 1),
            (13, 13, 1),
            (5, 12, 2),
            (3, 4, 0),
            (26, 26, 1),
        ] {
            let plane = rand_vec(h * w, (h * 31 + w) as u64);
            let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
            let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
            let mut scratch = Vec::new();
            for ty in 0..th {
                // Input transform of tile rows ty..th at once.
                let rows = th - ty;
                let n = rows * tw;
                let mut got = vec![f32::NAN; 16 * n];
                let mut want = vec![0f32; 16 * n];
                // SAFETY: got and want hold 16·n floats (row stride n), as the transforms write.
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
                    );
                    for t in 0..n {
                        let (i, tx) = (t / tw, t % tw);
                        let (iy, ix) = (
                            (2 * (ty + i)) as isize - pad as isize,
                            (2 * tx) as isize - pad as isize,
                        );
                        input_tile(&plane, h, w, iy, ix, want.as_mut_ptr().add(t), n);
                    }
                }
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "input {h}x{w} pad {pad} rows {ty}..{th}"
                );
                // Output transform of arbitrary M over tile rows ty..th, both numbers of output rows in the last
                // of them (the bottom edge).
                let rows = th - ty;
                let n = rows * tw;
                let m = rand_vec(16 * n, ty as u64 + 7);
                for oh in 2 * rows - 1..=2 * rows {
                    let mut o = vec![f32::NAN; oh * ow];
                    // SAFETY: m holds 16·n values; o holds oh rows of ow ≤ 2·tw floats.
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
                        let r = output_tile(&m[t..], n);
                        for (k, want) in r.iter().enumerate() {
                            let (oy, ox) = (2 * i + k / 2, 2 * tx + k % 2);
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
