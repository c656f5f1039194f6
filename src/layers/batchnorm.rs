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

use candle_core::{bail, Result, Tensor, D};

/// `.00001f` of `normalize_cpu`.
pub const DARKNET_BN_EPS: f64 = 0.00001;
/// `scal_cpu(.9, rolling); axpy_cpu(.1, mean, rolling)` in `forward_batchnorm_layer`.
pub const DARKNET_CPU_ROLLING_MOMENTUM: f64 = 0.9;

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
/// `rolling_variance` (each (C)); `momentum` is the rolling factor (Darknet CPU: 0.9).
pub fn batchnorm_train(
    x: &Tensor,
    scales: &Tensor,
    biases: &Tensor,
    rolling_mean: &Tensor,
    rolling_variance: &Tensor,
    momentum: f64,
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
    let mean = (xc_flat.sum(D::Minus1)? / count as f64)?;
    let centred = x.broadcast_sub(&per_channel(&mean)?)?;
    let sq_sum = centred
        .sqr()?
        .transpose(0, 1)?
        .reshape((c, count))?
        .sum(D::Minus1)?;
    let var_biased = (&sq_sum / count as f64)?;
    let var_unbiased = (&sq_sum / (count - 1) as f64)?;
    // Value: the unbiased variance; gradient: that of the biased one (Darknet's variance_delta · 2(x−mean)/NHW).
    let var = (&var_biased + (&var_unbiased - &var_biased)?.detach())?;
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
