//! The training path's convolution: `im2col_cpu` + `gemm` (src/im2col.c, src/gemm.c, as
//! `forward_convolutional_layer` runs them) written with candle ops, so that autograd's backward is two matrix
//! products (candle's own `conv2d` backward is a slow direct `conv_transpose2d` on the CPU).

use candle_core::{Result, Tensor};

/// Convolution as one matrix product over an im2col matrix built from candle ops (`im2col_cpu` + `gemm`, as
/// Darknet's `forward_convolutional_layer`), so that autograd's backward is two matrix products too:
/// candle's own `conv2d` backward goes through a slow direct `conv_transpose2d` on the CPU.
/// Layout: the columns are `[c·size·size, batch·out_h·out_w]` (Darknet's row order `c, ky, kx`).
pub fn conv_im2col(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (f, wc, k, k2) = w.dims4()?;
    if wc != c || k != k2 || stride == 0 || h + 2 * pad < k || wd + 2 * pad < k {
        candle_core::bail!(
            "conv_im2col: input {:?} and weight {:?} (pad {pad}, stride {stride}) do not fit",
            x.dims(),
            w.dims()
        );
    }
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (wd + 2 * pad - k) / stride + 1;
    let wm = w.reshape((f, c * k * k))?;
    // Channel-major input: [c, n, h, w].
    let xc = x.transpose(0, 1)?.contiguous()?;
    let col = if k == 1 && stride == 1 && pad == 0 {
        xc.reshape((c, n * h * wd))?
    } else {
        let xp = xc
            .pad_with_zeros(2, pad, pad)?
            .pad_with_zeros(3, pad, pad)?;
        let span_h = stride * (oh - 1) + 1;
        let span_w = stride * (ow - 1) + 1;
        let index = |len: usize| -> Result<Tensor> {
            let v: Vec<u32> = (0..len).map(|i| (i * stride) as u32).collect();
            Tensor::new(v.as_slice(), x.device())
        };
        let (rows, cols_idx) = (index(oh)?, index(ow)?);
        let mut parts = Vec::with_capacity(k * k);
        for ky in 0..k {
            for kx in 0..k {
                let mut p = xp.narrow(2, ky, span_h)?.narrow(3, kx, span_w)?;
                if stride > 1 {
                    p = p
                        .contiguous()?
                        .index_select(&rows, 2)?
                        .contiguous()?
                        .index_select(&cols_idx, 3)?;
                }
                parts.push(p);
            }
        }
        // [c, k·k, n, oh, ow] -> [c·k·k, n·oh·ow]
        Tensor::stack(&parts, 1)?.reshape((c * k * k, n * oh * ow))?
    };
    wm.matmul(&col)?
        .reshape((f, n, oh, ow))?
        .transpose(0, 1)?
        .contiguous()
}

#[cfg(test)]
mod im2col_tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn conv_im2col_matches_conv2d_forward_and_backward() {
        let dev = Device::Cpu;
        for &(c, f, k, stride, pad, h, w) in &[
            (3usize, 4usize, 3usize, 1usize, 1usize, 7usize, 6usize),
            (3, 5, 3, 2, 1, 9, 11),
            (4, 2, 1, 1, 0, 5, 5),
            (2, 3, 5, 1, 2, 6, 7),
        ] {
            let x = candle_core::Var::from_tensor(
                &Tensor::randn(0f32, 1.0, (2, c, h, w), &dev).unwrap(),
            )
            .unwrap();
            let wt = candle_core::Var::from_tensor(
                &Tensor::randn(0f32, 1.0, (f, c, k, k), &dev).unwrap(),
            )
            .unwrap();
            let a = conv_im2col(x.as_tensor(), wt.as_tensor(), pad, stride).unwrap();
            let b = x
                .as_tensor()
                .conv2d(wt.as_tensor(), pad, stride, 1, 1)
                .unwrap();
            assert_eq!(a.dims(), b.dims());
            let g = Tensor::randn(0f32, 1.0, a.dims(), &dev).unwrap();
            let ga = (&a * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&b * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let maxdiff = |p: &Tensor, q: &Tensor| -> f32 {
                (p - q)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar()
                    .unwrap()
            };
            assert!(maxdiff(&a, &b) < 1e-4);
            assert!(
                maxdiff(
                    ga.get(x.as_tensor()).unwrap(),
                    gb.get(x.as_tensor()).unwrap()
                ) < 1e-4
            );
            assert!(
                maxdiff(
                    ga.get(wt.as_tensor()).unwrap(),
                    gb.get(wt.as_tensor()).unwrap()
                ) < 1e-3
            );
        }
    }
}
