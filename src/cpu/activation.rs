//! Vectorisable activation kernels for the CPU convolution epilogue: `activate_array` (src/activations.c) and its
//! mish/swish variants (`activate_array_mish`, `activate_array_swish`), applied in place to a row of outputs
//! right after the GEMM wrote it (so the tile is still in cache), after `add_bias` / `normalize_cpu` +
//! `scale_bias`.
//!
//! Formulas are Darknet's (src/activations.h):
//! - leaky `x > 0 ? x : .1f*x`
//! - logistic `1/(1 + expf(-x))`
//! - swish `x * logistic(x)`
//! - mish `x * tanh_activate(softplus_activate(x, 20))`, softplus `x > 20 → x`, `x < -20 → expf(x)`, else
//!   `logf(expf(x) + 1)`, and Darknet's tanh `2/(1 + expf(-2x)) - 1`.
//!
//! Deliberate differences: `expf`/`logf` are branch-free Cephes-style polynomials ([`exp`], [`ln`]; relative
//! error about 1e-7, i.e. 1-2 ulp, instead of glibc's correctly rounded results) so that LLVM vectorises the
//! loops; mish is evaluated in closed form ([`mish`]: within 1.4e-6 of Darknet's chain). The kernels are
//! compiled for AVX-512, AVX2+FMA and the baseline target, chosen at run time (`crate::cpu::multiversion!`).

// Cephes' coefficients as published (more digits than an f32 holds).
#![allow(clippy::excessive_precision)]

use crate::cfg::Activation;

/// Activations that the epilogue applies itself; the others are applied afterwards with the candle ops of
/// [`crate::layers::activation::activate`].
pub fn supported(act: Activation) -> bool {
    matches!(
        act,
        Activation::Linear
            | Activation::Leaky
            | Activation::Relu
            | Activation::Logistic
            | Activation::Swish
            | Activation::Mish
    )
}

/// Per-output-channel affine step applied before the activation.
#[derive(Debug, Clone, Copy)]
pub enum Affine {
    /// `add_bias`: `y + b`.
    Bias(f32),
    /// `normalize_cpu` then `scale_bias` then `add_bias`: `(y - mean) / std * scale + b`, where
    /// `std = sqrtf(var + .00001f)`; evaluated as `(y - mean)·(scale/std) + b` with one FMA.
    BatchNorm {
        mean: f32,
        std: f32,
        scale: f32,
        bias: f32,
    },
}

/// Applies `affine` then `act` to `row` in place (one output channel's pixels).
pub fn epilogue(row: &mut [f32], affine: Affine, act: Activation) {
    // SAFETY: `multiversion!` runs the AVX-512/AVX2 copies only on a CPU that has them (checked at run time).
    unsafe { epilogue_isa(row, affine, act) }
}

/// [`epilogue`] on several rows, `affine[i]` for `rows[i]` (one instruction-set dispatch for them all).
pub fn epilogue_rows(rows: &mut [&mut [f32]], affine: &[Affine], act: Activation) {
    assert_eq!(rows.len(), affine.len(), "one affine step per row");
    // SAFETY: `multiversion!` runs the AVX-512/AVX2 copies only on a CPU that has them (checked at run time).
    unsafe { epilogue_rows_isa(rows, affine, act) }
}

/// Applies `act` alone to `row` in place (`activate_array`; a `[shortcut]`'s activation after its sums).
pub fn activate(row: &mut [f32], act: Activation) {
    // SAFETY: `multiversion!` runs the AVX-512/AVX2 copies only on a CPU that has them (checked at run time).
    unsafe { activate_isa(row, act) }
}

crate::cpu::multiversion! {
    unsafe fn epilogue_isa(row: &mut [f32], affine: Affine, act: Activation) = epilogue_generic
}

crate::cpu::multiversion! {
    unsafe fn activate_isa(row: &mut [f32], act: Activation) = activate_generic
}

crate::cpu::multiversion! {
    unsafe fn epilogue_rows_isa(rows: &mut [&mut [f32]], affine: &[Affine], act: Activation) = epilogue_rows_generic
}

#[inline(always)]
fn epilogue_rows_generic(rows: &mut [&mut [f32]], affine: &[Affine], act: Activation) {
    for (row, &a) in rows.iter_mut().zip(affine) {
        epilogue_generic(row, a, act);
    }
}

// Plain loops over inline(always) scalar functions, no closures: LLVM only vectorises what it inlines, and it
// does not inline a closure as large as mish into the loop (measured: a scalar call per element).
#[inline(always)]
fn epilogue_generic(row: &mut [f32], affine: Affine, act: Activation) {
    match affine {
        Affine::Bias(b) => {
            for v in row.iter_mut() {
                *v += b;
            }
        }
        Affine::BatchNorm {
            mean,
            std,
            scale,
            bias,
        } => {
            // One FMA per value with scale/std folded, as Darknet's own `fuse_conv_batchnorm` folds it into the
            // weights at inference (the unfused chain's division was ~1.5 times the cost of the whole leaky
            // epilogue): it differs from `normalize_cpu` + `scale_bias` + `add_bias` by rounding only.
            let a = scale / std;
            for v in row.iter_mut() {
                *v = (*v - mean).mul_add(a, bias);
            }
        }
    }
    activate_generic(row, act)
}

#[inline(always)]
fn activate_generic(row: &mut [f32], act: Activation) {
    match act {
        Activation::Leaky => {
            for v in row.iter_mut() {
                *v = leaky(*v);
            }
        }
        Activation::Relu => {
            for v in row.iter_mut() {
                *v = relu(*v);
            }
        }
        Activation::Logistic => {
            for v in row.iter_mut() {
                *v = logistic(*v);
            }
        }
        Activation::Swish => {
            for v in row.iter_mut() {
                *v *= logistic(*v);
            }
        }
        Activation::Mish => {
            for v in row.iter_mut() {
                *v = mish(*v);
            }
        }
        // Linear, and the activations applied afterwards by the caller.
        _ => {}
    }
}

#[inline(always)]
pub fn leaky(x: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        0.1 * x
    }
}

#[inline(always)]
pub fn relu(x: f32) -> f32 {
    // relu_activate: x*(x>0).
    if x > 0.0 {
        x
    } else {
        0.0
    }
}

#[inline(always)]
pub fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `softplus_activate(x, 20)`.
#[inline(always)]
pub fn softplus(x: f32) -> f32 {
    let e = exp(x);
    let mid = ln(e + 1.0);
    if x > 20.0 {
        x
    } else if x < -20.0 {
        e
    } else {
        mid
    }
}

/// `mish`: x · tanh_activate(softplus(x)), in closed form (a deliberate difference in rounding only). With
/// n = eˣ, softplus = ln(1 + n) and tanh(ln(1 + n)) = ((1+n)² − 1)/((1+n)² + 1) = n(n+2)/(n(n+2) + 2): one
/// exp and one division instead of Darknet's exp, log, exp and division (mish was 16% of a yolov4 forward).
/// Darknet's threshold 20 stays: above it softplus is x and `tanh_activate(x)` is exactly 1 in f32, so the
/// result is x. Below −20 Darknet takes softplus = eˣ, whose tanh is eˣ to f32 precision, as the closed form
/// gives. Between about −16.6 and −20 Darknet's `logf(expf(x) + 1)` rounds to 0, where the closed form gives
/// x·eˣ (|x·eˣ| < 1e-6). Over all of f32 the two differ by at most 1.4e-6 absolute (near x = −8.65, where
/// Darknet's `logf(expf(x) + 1)` loses digits; the closed form is 6.8e-7 from the exact mish, Darknet's
/// 1.4e-6), tested against the formula with libm.
#[inline(always)]
pub fn mish(x: f32) -> f32 {
    // The clamp keeps n·n finite; above 20 the result is x anyway.
    let n = exp(x.min(20.0));
    let t = n * (n + 2.0);
    let m = x * (t / (t + 2.0));
    if x > 20.0 {
        x
    } else {
        m
    }
}

/// 1.5·2^23: adding it rounds a float with |t| < 2^22 to the nearest integer, which then sits in the low
/// mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `expf` without branches or libm calls (Cephes' `expf` polynomial, range reduction by round-to-nearest).
/// Inputs are clamped to [-87.3, 88.3]: below that the result is ≈ 1e-38 instead of a denormal or 0, above it
/// ≈ 2e38 instead of inf; every use here (`1/(1+e)`, `log(e+1)`, Darknet's thresholds at ±20) is unaffected.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let t = x * std::f32::consts::LOG2_E;
    let biased = t + ROUND_MAGIC;
    let n = biased - ROUND_MAGIC;
    let ni = (biased.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    // ln 2 split in two so that n·ln2 is subtracted exactly (Cephes C1, C2). Fused multiply-adds throughout:
    // 19 operations instead of 27 (mish, which is mostly this exp, was ~8% of a yolov4 forward), and the same
    // result on every instruction set.
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let z = r * r;
    let p = 1.987_569_1e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 5.000_000_1e-1);
    let y = p.mul_add(z, r) + 1.0;
    let pow2 = f32::from_bits(((ni + 127) << 23) as u32);
    y * pow2
}

/// `logf` for positive normal inputs without branches or libm calls (Cephes' `logf` polynomial).
#[inline(always)]
pub fn ln(v: f32) -> f32 {
    let bits = v.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    // Mantissa in [0.5, 1).
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    e -= small as i32;
    let x = if small { m + m - 1.0 } else { m - 1.0 };
    let e = e as f32;
    let z = x * x;
    let mut y = ((((((((7.037_683_6e-2 * x - 1.151_461e-1) * x + 1.167_699_9e-1) * x
        - 1.242_014_1e-1)
        * x
        + 1.424_932_3e-1)
        * x
        - 1.666_805_8e-1)
        * x
        + 2.000_071_4e-1)
        * x
        - 2.499_999_4e-1)
        * x
        + 3.333_333e-1)
        * x
        * z;
    y += e * -2.121_944_4e-4;
    y += -0.5 * z;
    x + y + e * 0.693_359_4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xs() -> Vec<f32> {
        let mut v: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.05).collect();
        v.extend([
            -90.0, -87.0, -25.0, -20.5, -20.0, -19.99, 19.99, 20.0, 20.01, 50.0, 88.0,
        ]);
        v
    }

    #[test]
    fn exp_and_log_match_libm() {
        for x in xs() {
            if !(-87.0..=88.3).contains(&x) {
                continue;
            }
            let (g, w) = (exp(x), x.exp());
            assert!((g - w).abs() <= 3e-7 * w.abs(), "exp({x}) = {g}, libm {w}");
            let v = x.abs() + 1e-3;
            let (g, w) = (ln(v), v.ln());
            assert!(
                (g - w).abs() <= 3e-7 * w.abs().max(1.0),
                "ln({v}) = {g}, libm {w}"
            );
        }
    }

    /// Each epilogue activation against Darknet's scalar formula written with libm (src/activations.h).
    #[test]
    fn epilogue_matches_darknet_formulas() {
        let lexp = |x: f32| x.exp();
        let tanh = |x: f32| 2.0 / (1.0 + lexp(-2.0 * x)) - 1.0;
        let logi = |x: f32| 1.0 / (1.0 + lexp(-x));
        let softplus = |x: f32| {
            if x > 20.0 {
                x
            } else if x < -20.0 {
                lexp(x)
            } else {
                (lexp(x) + 1.0).ln()
            }
        };
        type Formula<'a> = Box<dyn Fn(f32) -> f32 + 'a>;
        let cases: Vec<(Activation, Formula<'_>)> = vec![
            (
                Activation::Leaky,
                Box::new(|x| if x > 0.0 { x } else { 0.1 * x }),
            ),
            (
                Activation::Relu,
                Box::new(|x| x * ((x > 0.0) as i32 as f32)),
            ),
            (Activation::Linear, Box::new(|x| x)),
            (Activation::Logistic, Box::new(logi)),
            (Activation::Swish, Box::new(move |x| x * logi(x))),
            (Activation::Mish, Box::new(move |x| x * tanh(softplus(x)))),
        ];
        let bias = 0.25f32;
        for (act, f) in cases {
            let mut row = xs();
            epilogue(&mut row, Affine::Bias(bias), act);
            let mut row2 = xs();
            epilogue_generic(&mut row2, Affine::Bias(bias), act);
            for ((x, g), g2) in xs().into_iter().zip(&row).zip(&row2) {
                let want = f(x + bias);
                // mish's closed form differs from Darknet's chain by up to 1.4e-6 absolute (near x = -8.65,
                // where Darknet's `logf(expf(x) + 1)` loses digits; the closed form is the closer to exact).
                let atol = if act == Activation::Mish { 2e-6 } else { 1e-6 };
                assert!(
                    (g - want).abs() <= atol + 1e-6 * want.abs(),
                    "{act:?}({x}+{bias}) = {g}, Darknet {want}"
                );
                assert!(
                    (g - g2).abs() <= 1e-6 + 1e-6 * want.abs(),
                    "avx2 vs generic"
                );
            }
        }
    }
}
