//! Training-mode batch normalisation: `forward_batchnorm_layer` with `state.train = 1` (src/batchnorm_layer.c,
//! called from `forward_convolutional_layer`), built from candle ops so autograd reproduces
//! `backward_batchnorm_layer`.
//!
//! Forward (per channel, statistics over N·H·W; `mean_cpu`, `variance_cpu`, `normalize_cpu`):
//! `mean = Σx/(NHW)`, `var = Σ(x−mean)²/(NHW−1)` (unbiased), `y = scale·(x−mean)/sqrt(var + .00001) + bias`;
//! rolling statistics `rolling = m·rolling + (1−m)·batch_stat` with m = .9 in the CPU build
//! ([`DARKNET_CPU_ROLLING_MOMENTUM`]; the CUDA build uses .99).
//!
//! Backward: Darknet's CPU backward (`mean_delta_cpu`, `variance_delta_cpu`, `normalize_delta_cpu`) is not the
//! exact derivative of that forward in two ways, both reproduced here with stop-gradient terms of value zero:
//! the variance derivative uses the divisor NHW (`2(x−mean)/(NHW)`), and the direct term divides by
//! `sqrt(var) + .00001` instead of `sqrt(var + .00001)` (the mean term keeps `sqrt(var + .00001)`).
//! Darknet's CPU build never accumulates `bias_updates` for a batch-normalised convolution (only the CUDA build
//! does); autograd here gives the bias its gradient, as the CUDA build does.
//!
//! Summation order ([`BnSums`]): by default the statistics are candle's reductions (lane-parallel partial sums,
//! accurate). [`BnSums::DarknetCpu`] gives the forward *values* of the mean and variance exactly as the
//! reference build of Darknet computes them, for the training-loop parity runs (docs/training.md): gcc keeps
//! `mean_cpu` and `variance_cpu` sequential even at `-Ofast -mavx2` (the store to `mean[i]` / `variance[i]`
//! in the loop body blocks vectorising the reduction), so each channel is one float accumulator walked in
//! (batch, spatial) order; over 10^5 values with many equal ones its rounding error is systematic (3e-4
//! relative on the unit test's gray-filled channel).

use candle_core::{bail, Result, Tensor, D};

/// `.00001f` of `normalize_cpu`.
pub const DARKNET_BN_EPS: f64 = 0.00001;
/// `scal_cpu(.9, rolling); axpy_cpu(.1, mean, rolling)` in `forward_batchnorm_layer`.
pub const DARKNET_CPU_ROLLING_MOMENTUM: f64 = 0.9;

/// How [`batchnorm_train_with`] sums the mini-batch mean and variance (the forward values only; the gradient
/// is the same in both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BnSums {
    /// candle's reductions: fast and accurate.
    #[default]
    Candle,
    /// Darknet's CPU `mean_cpu` / `variance_cpu` (src/blas.c) bit for bit as built by gcc 12 with Darknet's
    /// `AVX=1 -Ofast` and `AVX=0 -O2` flags alike (both keep the loops sequential): see
    /// [`darknet_mean_variance`]. Pulls the activations to the host; meant for parity runs.
    DarknetCpu,
}

/// Darknet's `mean_cpu` and `variance_cpu` (src/blas.c, 59596d7) on `x` laid out as (batch, filters, spatial),
/// in the order and rounding of its compiled code (disassembly of the `AVX=1 -Ofast` build: scalar `vaddss`
/// for the mean; `vsubss`, `vcvtss2sd`, `vmulsd`, `vaddsd`, `vcvtsd2ss` for the variance):
/// per channel `acc: f32 += x` over j in 0..batch, k in 0..spatial, then `mean = acc * (float)(1./(batch·spatial))`;
/// `acc = (float)((double)acc + (double)(x − mean)²)` in the same order (`pow(d, 2)` is `d·d` in double, exact
/// for a float `d`), then `variance = acc * (float)(1./(batch·spatial − 1))`.
pub fn darknet_mean_variance(
    x: &[f32],
    batch: usize,
    filters: usize,
    spatial: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    use rayon::prelude::*;
    if x.len() != batch * filters * spatial || batch * spatial < 2 {
        bail!(
            "darknet_mean_variance: {} values for batch {batch} × filters {filters} × spatial {spatial} \
             (and at least 2 per channel)",
            x.len()
        );
    }
    let mean_scale = (1.0f64 / (batch * spatial) as f64) as f32;
    let var_scale = (1.0f64 / (batch * spatial - 1) as f64) as f32;
    // Channels are independent (each has its own accumulator), so they may run in parallel.
    Ok((0..filters)
        .into_par_iter()
        .map(|i| {
            let rows = || (0..batch).map(move |j| &x[(j * filters + i) * spatial..][..spatial]);
            let mut acc = 0f32;
            for row in rows() {
                for &v in row {
                    acc += v;
                }
            }
            let mean = acc * mean_scale;
            let mut acc = 0f32;
            for row in rows() {
                for &v in row {
                    let d = (v - mean) as f64;
                    acc = (acc as f64 + d * d) as f32;
                }
            }
            (mean, acc * var_scale)
        })
        .unzip())
}

/// Output of [`batchnorm_train`].
pub struct BatchNormTrain {
    /// Normalised, scaled and shifted output, shape of `x`.
    pub y: Tensor,
    /// Batch statistics (`l.mean`, `l.variance`), shape (C), detached.
    pub mean: Tensor,
    pub variance: Tensor,
    /// Updated `l.rolling_mean`, `l.rolling_variance`, shape (C), detached.
    pub rolling_mean: Tensor,
    pub rolling_variance: Tensor,
}

/// Training-mode batch norm of `x` (N, C, H, W) with per-channel `scales`, `biases`, `rolling_mean`,
/// `rolling_variance` (each (C)); `momentum` is the rolling factor (Darknet CPU: 0.9). The statistics are
/// candle's sums ([`BnSums::Candle`]); [`batchnorm_train_with`] chooses.
pub fn batchnorm_train(
    x: &Tensor,
    scales: &Tensor,
    biases: &Tensor,
    rolling_mean: &Tensor,
    rolling_variance: &Tensor,
    momentum: f64,
) -> Result<BatchNormTrain> {
    batchnorm_train_with(
        x,
        scales,
        biases,
        rolling_mean,
        rolling_variance,
        momentum,
        BnSums::Candle,
    )
}

/// [`batchnorm_train`] with the statistics summed as `sums` says. With [`BnSums::DarknetCpu`] only the values
/// of the mean and variance change (they are Darknet's, and everything downstream — the normalisation, the
/// rolling statistics, the backward's `mean`/`variance` — uses them, as `forward_batchnorm_layer` and
/// `backward_batchnorm_layer` use `l.mean` / `l.variance`); their gradients are still taken through candle's
/// sums, whose values differ from them by rounding only.
pub fn batchnorm_train_with(
    x: &Tensor,
    scales: &Tensor,
    biases: &Tensor,
    rolling_mean: &Tensor,
    rolling_variance: &Tensor,
    momentum: f64,
    sums: BnSums,
) -> Result<BatchNormTrain> {
    let (n, c, h, w) = x.dims4()?;
    for (name, t) in [
        ("scales", scales),
        ("biases", biases),
        ("rolling_mean", rolling_mean),
        ("rolling_variance", rolling_variance),
    ] {
        if t.dims() != [c] {
            bail!(
                "batchnorm_train: {name} has shape {:?}, expected [{c}]",
                t.dims()
            );
        }
    }
    let count = n * h * w;
    if count < 2 {
        bail!(
            "batchnorm_train: {count} value(s) per channel; the unbiased variance needs at least 2"
        );
    }
    let per_channel = |t: &Tensor| t.reshape((1, c, 1, 1));
    // (C, N·H·W) view for the statistics.
    let xc_flat = x.transpose(0, 1)?.reshape((c, count))?;
    let mean_candle = (xc_flat.sum(D::Minus1)? / count as f64)?;
    // Darknet's values, if asked for: they replace the values of candle's mean and variance while the
    // zero-valued (t − t.detach()) keeps candle's graph for the gradient.
    let darknet = match sums {
        BnSums::Candle => None,
        BnSums::DarknetCpu => {
            let host = x
                .to_device(&candle_core::Device::Cpu)?
                .to_dtype(candle_core::DType::F32)?;
            let (m, v) = darknet_mean_variance(&host.flatten_all()?.to_vec1()?, n, c, h * w)?;
            let on_device = |v: Vec<f32>| Tensor::from_vec(v, c, x.device())?.to_dtype(x.dtype());
            Some((on_device(m)?, on_device(v)?))
        }
    };
    let mean = match &darknet {
        None => mean_candle,
        Some((m, _)) => (m + (&mean_candle - mean_candle.detach())?)?,
    };
    let centred = x.broadcast_sub(&per_channel(&mean)?)?;
    let sq_sum = centred
        .sqr()?
        .transpose(0, 1)?
        .reshape((c, count))?
        .sum(D::Minus1)?;
    let var_biased = (&sq_sum / count as f64)?;
    let var_unbiased = match darknet {
        None => (&sq_sum / (count - 1) as f64)?,
        Some((_, v)) => v,
    };
    // Value: the unbiased variance (exactly: the zero-valued term adds no rounding); gradient: that of the
    // biased one (Darknet's variance_delta · 2(x−mean)/NHW).
    let var = (&var_unbiased.detach() + (&var_biased - var_biased.detach())?)?;
    let inv_std = (var + DARKNET_BN_EPS)?.sqrt()?.recip()?;
    // Direct path scaled by 1/(sqrt(var) + eps) as normalize_delta_cpu does; the zero-valued terms
    // (x − x.detach()) and (mean − mean.detach()) carry the direct and the mean gradients.
    let inv_direct = (var_unbiased.sqrt()? + DARKNET_BN_EPS)?.recip()?.detach();
    let inv_detached = inv_std.detach();
    let x_det = x.detach();
    let mean_det = mean.detach();
    let through_var = x_det
        .broadcast_sub(&per_channel(&mean_det)?)?
        .broadcast_mul(&per_channel(&inv_std)?)?;
    let direct = (x - &x_det)?.broadcast_mul(&per_channel(&inv_direct)?)?;
    let through_mean = (&mean - &mean_det)?.mul(&inv_detached)?;
    let x_norm = (through_var + direct)?.broadcast_sub(&per_channel(&through_mean)?)?;
    let y = x_norm
        .broadcast_mul(&per_channel(scales)?)?
        .broadcast_add(&per_channel(biases)?)?;
    let new_mean =
        (rolling_mean.affine(momentum, 0.0)? + mean_det.affine(1.0 - momentum, 0.0)?)?.detach();
    let var_det = var_unbiased.detach();
    let new_var =
        (rolling_variance.affine(momentum, 0.0)? + var_det.affine(1.0 - momentum, 0.0)?)?.detach();
    Ok(BatchNormTrain {
        y,
        mean: mean_det,
        variance: var_det,
        rolling_mean: new_mean,
        rolling_variance: new_var,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn vals(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The input of tools/bn_sums_ref/harness.c (`value`), generated the same way.
    fn harness_input() -> (usize, usize, usize, Vec<f32>) {
        let (batch, filters, spatial) = (4usize, 4usize, 208 * 208);
        let mut state = 12345u32;
        let mut u01 = || {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 8) as f32 * (1.0 / 16777216.0)
        };
        let mut x = vec![0f32; batch * filters * spatial];
        for b in 0..batch {
            for f in 0..filters {
                for k in 0..spatial {
                    x[(b * filters + f) * spatial + k] = match f {
                        0 => {
                            if u01() < 0.7 {
                                0.3712
                            } else {
                                u01() * 4.0 - 2.0
                            }
                        }
                        1 => 100.0 + u01() * 8.0,
                        2 => {
                            let t = u01();
                            t * t * t * 50.0
                        }
                        _ => {
                            let t = u01() * 2.0 - 1.0;
                            if t > 0.0 {
                                t
                            } else {
                                t * 0.1
                            }
                        }
                    };
                }
            }
        }
        (batch, filters, spatial, x)
    }

    /// `name` line of a harness output: the float bits per channel.
    fn harness_line(text: &str, name: &str) -> Vec<f32> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line"));
        line.split_whitespace()
            .skip(1)
            .map(|h| f32::from_bits(u32::from_str_radix(h, 16).unwrap()))
            .collect()
    }

    /// [`BnSums::DarknetCpu`] against Darknet's own `mean_cpu` / `variance_cpu` / rolling update, compiled
    /// with the reference build's flags and with the baseline's (tools/bn_sums_ref): bit for bit.
    #[test]
    fn darknet_sums_match_darknet_blas() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/layers/testdata/bn_sums");
        let (batch, filters, spatial, x) = harness_input();
        let (mean, var) = darknet_mean_variance(&x, batch, filters, spatial).unwrap();
        let dev = Device::Cpu;
        let xt = Tensor::from_vec(x.clone(), (batch, filters, 208, 208), &dev).unwrap();
        let rm = Tensor::new(&[0.5f32, 90.0, 3.0, 0.1], &dev).unwrap();
        let rv = Tensor::new(&[1.5f32, 4.0, 200.0, 0.2], &dev).unwrap();
        let ones = Tensor::ones(filters, candle_core::DType::F32, &dev).unwrap();
        let zeros = Tensor::zeros(filters, candle_core::DType::F32, &dev).unwrap();
        let out =
            batchnorm_train_with(&xt, &ones, &zeros, &rm, &rv, 0.9, BnSums::DarknetCpu).unwrap();
        for file in ["darknet_Ofast_avx.txt", "darknet_O2.txt"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert_eq!(harness_line(&text, "mean"), mean, "{file}: mean");
            assert_eq!(harness_line(&text, "variance"), var, "{file}: variance");
            for (key, got) in [
                ("mean", &out.mean),
                ("variance", &out.variance),
                ("rolling_mean", &out.rolling_mean),
                ("rolling_variance", &out.rolling_variance),
            ] {
                assert_eq!(
                    harness_line(&text, key),
                    vals(got),
                    "{file}: batchnorm_train_with {key}"
                );
            }
        }
        // The input is one where the order matters: candle's sums differ from Darknet's (so the test above
        // could not pass with them), and Darknet's differ from the exact statistics by far more than an ulp.
        let candle = batchnorm_train(&xt, &ones, &zeros, &rm, &rv, 0.9).unwrap();
        let rel = |a: f32, b: f64| (a as f64 - b).abs() / b.abs();
        let exact: Vec<(f64, f64)> = (0..filters)
            .map(|f| {
                let v: Vec<f64> = (0..batch)
                    .flat_map(|b| {
                        x[(b * filters + f) * spatial..][..spatial]
                            .iter()
                            .map(|&v| v as f64)
                    })
                    .collect();
                let m = v.iter().sum::<f64>() / v.len() as f64;
                let q = v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / (v.len() - 1) as f64;
                (m, q)
            })
            .collect();
        let cm = vals(&candle.mean);
        let cv = vals(&candle.variance);
        for f in 0..filters {
            eprintln!(
                "channel {f}: darknet mean rel {:.2e} var rel {:.2e}; candle mean rel {:.2e} var rel {:.2e}",
                rel(mean[f], exact[f].0),
                rel(var[f], exact[f].1),
                rel(cm[f], exact[f].0),
                rel(cv[f], exact[f].1)
            );
        }
        assert_ne!(
            cv, var,
            "candle's variance equals Darknet's: the input does not test the order"
        );
    }

    #[test]
    fn darknet_sums_reject_a_wrong_layout() {
        assert!(darknet_mean_variance(&[1.0; 7], 1, 2, 4).is_err());
        assert!(darknet_mean_variance(&[1.0; 2], 1, 2, 1).is_err());
        let (m, v) = darknet_mean_variance(&[1.0, 3.0, 2.0, 2.0], 1, 2, 2).unwrap();
        assert_eq!((m, v), (vec![2.0, 2.0], vec![2.0, 0.0]));
    }

    #[test]
    fn forward_hand_computed() {
        let dev = Device::Cpu;
        // N=1, C=2, H=1, W=4. Channel 0: 1,2,3,4 (mean 2.5, unbiased var 5/3); channel 1: 0,0,0,4 (mean 1, var 4).
        let x = Tensor::new(&[1.0f32, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 4.0], &dev)
            .unwrap()
            .reshape((1, 2, 1, 4))
            .unwrap();
        let scales = Tensor::new(&[2.0f32, 0.5], &dev).unwrap();
        let biases = Tensor::new(&[0.1f32, -1.0], &dev).unwrap();
        let rm = Tensor::new(&[1.0f32, 0.0], &dev).unwrap();
        let rv = Tensor::new(&[1.0f32, 2.0], &dev).unwrap();
        let out = batchnorm_train(&x, &scales, &biases, &rm, &rv, 0.9).unwrap();
        let s0 = (5.0f64 / 3.0 + 1e-5).sqrt();
        let s1 = (4.0f64 + 1e-5).sqrt();
        let expect = [
            2.0 * (-1.5 / s0) + 0.1,
            2.0 * (-0.5 / s0) + 0.1,
            2.0 * (0.5 / s0) + 0.1,
            2.0 * (1.5 / s0) + 0.1,
            0.5 * (-1.0 / s1) - 1.0,
            0.5 * (-1.0 / s1) - 1.0,
            0.5 * (-1.0 / s1) - 1.0,
            0.5 * (3.0 / s1) - 1.0,
        ];
        for (a, e) in vals(&out.y).iter().zip(expect) {
            assert!((*a as f64 - e).abs() < 1e-6, "{a} vs {e}");
        }
        let m = vals(&out.rolling_mean);
        assert!((m[0] - (0.9 + 0.25)).abs() < 1e-6 && (m[1] - 0.1).abs() < 1e-6);
        let v = vals(&out.rolling_variance);
        assert!((v[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6 && (v[1] - (1.8 + 0.4)).abs() < 1e-6);
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn backward_matches_darknet_formulas() {
        let dev = Device::Cpu;
        let (n, c, h, w) = (2usize, 3usize, 2usize, 3usize);
        let xv = Var::from_tensor(&Tensor::randn(0f32, 2.0, (n, c, h, w), &dev).unwrap()).unwrap();
        let scales = Var::from_tensor(&Tensor::new(&[1.5f32, 0.7, -0.3], &dev).unwrap()).unwrap();
        let biases = Var::from_tensor(&Tensor::new(&[0.2f32, 0.0, -0.1], &dev).unwrap()).unwrap();
        let zeros = Tensor::zeros(c, candle_core::DType::F32, &dev).unwrap();
        let ones = Tensor::ones(c, candle_core::DType::F32, &dev).unwrap();
        let out = batchnorm_train(
            xv.as_tensor(),
            scales.as_tensor(),
            biases.as_tensor(),
            &zeros,
            &ones,
            0.9,
        )
        .unwrap();
        // Upstream gradient g = dL/dy; L = sum(g * y).
        let g = Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap();
        let grads = (&out.y * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gx = vals(grads.get(xv.as_tensor()).unwrap());

        // Darknet: delta = g*scale; mean_delta, variance_delta, normalize_delta (CPU formulas).
        let x = vals(xv.as_tensor());
        let gv = vals(&g);
        let sc = vals(scales.as_tensor());
        let sp = h * w;
        let m = (n * sp) as f64;
        for f in 0..c {
            let idx: Vec<usize> = (0..n)
                .flat_map(|b| (0..sp).map(move |k| b * c * sp + f * sp + k))
                .collect();
            let mean: f64 = idx.iter().map(|&i| x[i] as f64).sum::<f64>() / m;
            let var: f64 = idx
                .iter()
                .map(|&i| (x[i] as f64 - mean).powi(2))
                .sum::<f64>()
                / (m - 1.0);
            let d: Vec<f64> = idx.iter().map(|&i| gv[i] as f64 * sc[f] as f64).collect();
            let mean_delta = d.iter().sum::<f64>() * (-1.0 / (var + 1e-5).sqrt());
            let var_delta = idx
                .iter()
                .zip(&d)
                .map(|(&i, dd)| dd * (x[i] as f64 - mean))
                .sum::<f64>()
                * -0.5
                * (var + 1e-5).powf(-1.5);
            for (k, &i) in idx.iter().enumerate() {
                let e = d[k] / (var.sqrt() + 1e-5)
                    + var_delta * 2.0 * (x[i] as f64 - mean) / m
                    + mean_delta / m;
                assert!(
                    (gx[i] as f64 - e).abs() < 1e-5 * (1.0 + e.abs()),
                    "channel {f}: {} vs {e}",
                    gx[i]
                );
            }
        }
        // Bias gradient = sum(g) per channel, scale gradient = sum(g * x_norm).
        let gb = vals(grads.get(biases.as_tensor()).unwrap());
        let g0: f32 = (0..n)
            .flat_map(|b| (0..sp).map(move |k| b * c * sp + k))
            .map(|i| gv[i])
            .sum();
        assert!((gb[0] - g0).abs() < 1e-5);
    }
}
