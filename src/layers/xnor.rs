//! `xnor=1` convolutions at inference, as `darknet detector test` runs them: `calculate_binary_weights`
//! (src/network.c) → `binary_align_weights`, `binarize_weights`, `get_mean_array` (src/convolutional_layer.c), and
//! the bit-packed branch of `forward_convolutional_layer` (`im2col_cpu_custom_bin` / `repack_input` +
//! `float_to_bit`, then `gemm_nn_custom_bin_mean_transposed` in src/gemm.c).
//!
//! Darknet packs `weight > 0` and `input > 0` into bits and counts matching bits with XNOR + popcount; the output
//! is `(2·count − K)·mean_f + bias`, `K = size²·c`, `mean_f = Σ|w|/K` of the filter (after BN was fused into the
//! weights: `detector test` fuses first). In ±1 terms that is `mean_f · Σ sgn(w)·sgn(x)` with `sgn(v) = v > 0 ?
//! 1 : −1`, where a zero-padding pixel is a 0 bit, i.e. −1 (not 0 as in the float `binarize_cpu` path used
//! for training). We compute it with a float convolution of exact small integers: `s = 2·[x > 0]` (0 or 2, and
//! the zero padding is the same 0), `Σ sgn(w)·(s − 1) = conv(sgn(w), s) − Σ sgn(w)`; every term is an integer
//! below 2²⁴, so the sum is exact and the one rounding, the product with `mean_f`, is Darknet's.
//! With `bin_output=1`, `calculate_binary_weights` sets the layer's activation to linear.
//!
//! Two Darknet quirks are reproduced: (1) when the input channels are not a multiple of 32, the input bits come
//! from `im2col_cpu_custom_bin`, which only has its AVX2 "optimized version" (stride 1, pad 1, output size =
//! input size); otherwise it prints "Error: is no non-optimized version" and leaves every input bit 0, so the
//! layer sees an all −1 input and outputs `−Σ sgn(w)·mean_f + bias` everywhere (`input_dropped`). (On a CPU
//! without AVX2+FMA Darknet takes that branch for every such layer; we mirror the AVX2 machine `detector test`
//! normally runs on.) (2) With a multiple of 32 channels `repack_input` + `im2col_cpu_custom` handle any stride.

use candle_core::{DType, Result, Tensor};

/// The binarised form of one layer's (fused) weights.
#[derive(Debug, Clone)]
pub struct XnorWeights {
    /// `sgn(w)` as ±1, `[filters, c, size, size]`.
    pub sign: Tensor,
    /// `Σ sgn(w)` over each filter, `[1, filters, 1, 1]`.
    pub sign_sum: Tensor,
    /// `mean_arr`: `Σ|w|/K` per filter (`binarize_weights`, a float running sum), `[1, filters, 1, 1]`.
    pub mean: Tensor,
    /// Darknet never fills the input bits of this layer (see the module docs): the output ignores the input.
    pub input_dropped: bool,
}

impl XnorWeights {
    /// `binarize_weights(weights, n, size, binary)` + `get_mean_array(binary, ...)` on `[filters, c, k, k]`;
    /// `input_dropped` as [`Self::drops_input`] says for the layer.
    pub fn new(weight: &Tensor, input_dropped: bool) -> Result<Self> {
        let dims = weight.dims().to_vec();
        let filters = dims[0];
        let w = weight
            .to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let k = w.len() / filters.max(1);
        let mut sign = Vec::with_capacity(w.len());
        let mut sign_sum = Vec::with_capacity(filters);
        let mut mean = Vec::with_capacity(filters);
        for f in w.chunks(k.max(1)) {
            // `mean += fabs(w)` in float, then `mean / size`.
            let mut m = 0f32;
            for &v in f {
                m += v.abs();
            }
            m /= k as f32;
            // get_mean_array reads |binary[f*k]| = |±mean| = mean.
            mean.push(m);
            // float_to_bit: bit = (binary > 0), binary = (w > 0) ? mean : -mean.
            let s: Vec<f32> = f
                .iter()
                .map(|&v| if v > 0.0 && m > 0.0 { 1.0 } else { -1.0 })
                .collect();
            sign_sum.push(s.iter().sum::<f32>());
            sign.extend(s);
        }
        let dev = weight.device();
        Ok(XnorWeights {
            sign: Tensor::from_vec(sign, dims, dev)?,
            sign_sum: Tensor::from_vec(sign_sum, (1, filters, 1, 1), dev)?,
            mean: Tensor::from_vec(mean, (1, filters, 1, 1), dev)?,
            input_dropped,
        })
    }

    /// Whether `forward_convolutional_layer` leaves the input bits empty: `c % 32 != 0` and not the case
    /// `im2col_cpu_custom_bin` implements (`out == in` size, stride 1, pad 1).
    pub fn drops_input(
        c: usize,
        in_hw: (usize, usize),
        out_hw: (usize, usize),
        stride: usize,
        pad: usize,
    ) -> bool {
        let optimized_case = in_hw == out_hw && stride == 1 && pad == 1;
        !(c.is_multiple_of(32) || optimized_case)
    }

    /// `(2·count − K)·mean` for input `x` with zero padding `pad` and `stride`.
    pub fn forward(&self, x: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
        let s = if self.input_dropped {
            x.zeros_like()?
        } else {
            (x.gt(0f32)?.to_dtype(DType::F32)? * 2.0)?
        };
        let y = s.conv2d(&self.sign, pad, stride, 1, 1)?;
        y.broadcast_sub(&self.sign_sum)?.broadcast_mul(&self.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn counts_padding_as_minus_one() {
        // One 3x3 filter of +1/-1 weights on a 1x1 input: only the centre sees the input, 8 taps see padding (-1).
        let w = Tensor::from_vec(
            vec![0.5f32, -0.5, 0.5, 0.5, 1.0, 0.5, -0.5, 0.5, 0.5],
            (1, 1, 3, 3),
            &Device::Cpu,
        )
        .unwrap();
        let x = Tensor::from_vec(vec![3.0f32], (1, 1, 1, 1), &Device::Cpu).unwrap();
        let xw = XnorWeights::new(&w, false).unwrap();
        let y = xw
            .forward(&x, 1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // Signs: 7 positive, 2 negative; padding taps: -(6 - 2) = -4 from the 8 non-centre taps, +1 at the centre.
        let mean = (0.5 * 6.0 + 1.0 + 0.5 * 2.0) / 9.0;
        assert_eq!(y, vec![(1.0 - 4.0) * mean]);
    }
}
