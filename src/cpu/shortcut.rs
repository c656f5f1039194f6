//! CPU `[shortcut]` forward for `from` layers of the layer's own shape: `shortcut_multilayer_cpu` (src/blas.c)
//! without weights, `out[i] = in[i]`, then `out[i] += from_k[i]` for each `from` layer in order, then
//! `activate_array` on the result — the same sums in the same order, so bit-identical to the candle form.
//!
//! Why not candle's `+`: candle runs element-wise ops on its own thread pool, whose worker spins for about a
//! millisecond after each op before it sleeps; on a 2-core machine that spinning thread takes a core from the
//! convolution that follows (measured on yolov4 416, 2 threads: every 1×1 convolution after a shortcut ran at
//! one core's speed, 0.76 ms instead of 0.45 for 128×52×52; the forward took 4-5% longer). The chunks here run
//! on rayon, like the other CPU kernels.

use candle_core::{CpuStorage, Device, Result, Storage, Tensor};
use rayon::prelude::*;

use super::activation;
use crate::cfg::Activation;

/// Floats per parallel task: small enough to spread a 13×13 map over the cores, large enough that the
/// scheduling stays negligible.
const CHUNK: usize = 1 << 14;

/// `activate(x + from_1 + … + from_n)` for CPU f32 tensors that all have `x`'s shape (no gradient), or `None`
/// when some input is not one (the caller then uses the candle form). `act` must be one that
/// [`activation::supported`] accepts.
pub fn forward(x: &Tensor, from: &[&Tensor], act: Activation) -> Result<Option<Tensor>> {
    if !activation::supported(act) || from.iter().any(|f| f.dims() != x.dims()) {
        return Ok(None);
    }
    let inputs: Vec<Tensor> = std::iter::once(x)
        .chain(from.iter().copied())
        .map(|t| t.contiguous())
        .collect::<Result<_>>()?;
    let guards: Vec<_> = inputs.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        let (Storage::Cpu(CpuStorage::F32(v)), Some((a, z))) =
            (&**storage, layout.contiguous_offsets())
        else {
            return Ok(None);
        };
        slices.push(&v[a..z]);
    }
    let len = x.elem_count();
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, dst)| {
            let range = i * CHUNK..i * CHUNK + dst.len();
            let first = &slices[0][range.clone()];
            for (d, v) in dst.iter_mut().zip(first) {
                d.write(*v);
            }
            // SAFETY: every element of `dst` was written just above.
            let dst = unsafe { &mut *(dst as *mut [_] as *mut [f32]) };
            for add in &slices[1..] {
                for (d, v) in dst.iter_mut().zip(&add[range.clone()]) {
                    *d += *v;
                }
            }
            activation::activate(dst, act);
        });
    // SAFETY: the chunks cover the first `len` floats of the capacity and each task wrote all of its chunk.
    unsafe { out.set_len(len) };
    drop(guards);
    Tensor::from_vec(out, x.shape(), &Device::Cpu).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_data::rand_vec;

    /// The same values as the candle form (`x + f1 + f2`, then the activation) exactly, for sizes around the
    /// chunk size, one and two `from` layers.
    #[test]
    fn matches_candle_sums() {
        for &(c, hw) in &[(1, 7), (3, 13 * 13), (2, CHUNK + 5), (5, 4096)] {
            let shape = (1, c, hw, 1);
            let t = |seed| Tensor::from_vec(rand_vec(c * hw, seed), shape, &Device::Cpu).unwrap();
            let (x, f1, f2) = (t(1), t(2), t(3));
            for from in [vec![&f1], vec![&f1, &f2]] {
                for act in [Activation::Linear, Activation::Leaky] {
                    let got = forward(&x, &from, act).unwrap().expect("same shapes");
                    let mut want = x.clone();
                    for f in &from {
                        want = (want + *f).unwrap();
                    }
                    let want = crate::layers::activation::activate(&want, act).unwrap();
                    let (g, w) = (
                        got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                        want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    );
                    assert_eq!(g, w, "c {c} hw {hw} from {} {act:?}", from.len());
                }
            }
        }
    }

    /// Another shape (Darknet's flat-index form) or an activation the kernels lack is left to the caller.
    #[test]
    fn declines_what_it_does_not_do() {
        let x = Tensor::zeros((1, 2, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let small = Tensor::zeros((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(forward(&x, &[&small], Activation::Linear)
            .unwrap()
            .is_none());
        assert!(forward(&x, &[&x], Activation::Elu).unwrap().is_none());
    }
}
