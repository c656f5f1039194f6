//! Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions (groups 1, dilation 1) on the CPU: the same result as
//! Darknet's `im2col_cpu_ext` + `gemm` in `forward_convolutional_layer` up to rounding (Lavin & Gray 2015; OpenCV
//! DNN uses Winograd for these layers by default too). Per 2×2 output tile, 4×4 input patch `d`:
//! `V = Bᵀ d B`, `U = G g Gᵀ` (per filter/channel, at load, in f64), then 16 GEMMs `M_ξ = U_ξ · V_ξ` over the
//! channels and `Y = Aᵀ M A`; 16 multiplies per 4 outputs per channel instead of 36.
//!
//! Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1], Aᵀ = [1 1 1 0; 0 1 -1 -1].
//! Rounding differs from the direct sum by a few ulp of the partial sums (checked against candle's conv2d in
//! the tests of [`super::conv`], and against the Darknet dumps by `candle-darknet compare`).

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
